#!/usr/bin/env bash
# Install everything the test suite needs and run it. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet -e '.[test]'
# mflux with CPU MLX on Linux (a plain `pip install mflux` would pull CUDA); the plain package on macOS.
.venv/bin/python scripts/install_mflux.py

# The Gradio app is tested from its own environment: gradio pins pillow<13, mflux needs pillow>=13.
[ -x .venv-gradio/bin/python ] || python3 -m venv .venv-gradio
.venv-gradio/bin/python -m pip install --quiet 'gradio>=5,<7' 'requests>=2.31'

# Headless Chromium for the web UI tests (Debian's package; Playwright drives it).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q chromium chromium-driver >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }
    else
        echo "warning: chromium is not installed; the browser tests will be skipped" >&2
    fi
fi

# Redis for the scale-out tests (they start redis-server themselves, on a free loopback port).
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q redis-server >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; }
        systemctl disable --now redis-server >/dev/null 2>&1 || true  # the package starts one; the tests start their own
    elif command -v brew >/dev/null 2>&1; then
        brew install redis >/dev/null
    else
        echo "warning: redis-server is not installed; the scale-out tests will be skipped" >&2
    fi
fi

exec .venv/bin/python -m pytest "$@"
