#!/usr/bin/env bash
# Install mflux-server into .venv and run it. Extra arguments go to mflux-server (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
if [ "$(uname -s)-$(uname -m)" = "Darwin-arm64" ]; then
    .venv/bin/python -m pip install --quiet -e '.[mflux]'
    exec .venv/bin/mflux-server "$@"
fi
.venv/bin/python -m pip install --quiet -e .
echo "This is not a Mac with Apple Silicon: starting the demo engine (procedural test images, not a model)." >&2
echo "For the real mflux engine on this CPU: .venv/bin/python scripts/install_mflux.py, then pass --engine mflux." >&2
exec .venv/bin/mflux-server --engine demo "$@"
