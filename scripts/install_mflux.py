"""Install mflux into the running interpreter's environment, with CPU MLX on Linux instead of CUDA.

Run it with the project's interpreter: `.venv/bin/python scripts/install_mflux.py`.

On macOS this is just `pip install mflux==MFLUX_VERSION`. On Linux a plain install pulls `mlx[cuda13]` and
gigabytes of NVIDIA libraries, after which `import mlx.core` fails on machines without `libcuda.so.1`. So:
  1. install torch and `mlx[cpu]` first (torch resolves to the CPU wheel, meeting mflux's torch requirement),
  2. install mflux itself without dependencies,
  3. install mflux's other requirements, read from its own metadata, skipping `mlx` (met by step 1).
Nothing CUDA-related is ever requested. Running it again when everything is in place does nothing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import shlex
import subprocess
import sys
import time

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # a bare venv: pip always carries its own copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

MFLUX_VERSION = "0.24.0"
MLX_VERSION = "0.32.2"  # the version mflux 0.24.0 pins on Linux
TORCH_VERSION = "2.13.0"

# Distributions whose presence means a CUDA build slipped in after all.
CUDA_PREFIXES = ("mlx-cuda", "nvidia-")


def pip_install(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "install", *args]
    print("+", shlex.join(command), flush=True)
    subprocess.run(command, check=True)


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def mflux_requirements() -> list[Requirement]:
    """mflux's own requirements that apply here (markers evaluated, no extras), except `mlx`."""
    wanted = []
    for line in importlib.metadata.requires("mflux") or []:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        if canonicalize_name(requirement.name) == "mlx":
            continue
        wanted.append(requirement)
    return wanted


def unmet(requirements: list[Requirement]) -> list[Requirement]:
    missing = []
    for requirement in requirements:
        version = installed_version(requirement.name)
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            missing.append(requirement)
    return missing


def as_pip_argument(requirement: Requirement) -> str:
    """The requirement without its marker (already evaluated), as pip takes it on the command line."""
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    if requirement.url:
        return f"{requirement.name}{extras} @ {requirement.url}"
    return f"{requirement.name}{extras}{requirement.specifier}"


def cuda_distributions() -> list[str]:
    names = {canonicalize_name(dist.metadata["Name"] or "") for dist in importlib.metadata.distributions()}
    return sorted(name for name in names if name.startswith(CUDA_PREFIXES))


def already_installed() -> bool:
    """True when mflux imports and every version we install is the one in place."""
    if installed_version("mflux") != MFLUX_VERSION:
        return False
    if sys.platform == "linux" and (
        installed_version("mlx") != MLX_VERSION or installed_version("mlx-cpu") != MLX_VERSION
    ):
        return False
    if unmet(mflux_requirements()):
        return False
    # A subprocess, so a half-installed package cannot leave this interpreter in a strange state.
    probe = subprocess.run([sys.executable, "-c", "import mflux, mlx.core"], capture_output=True)
    return probe.returncode == 0


def install_linux() -> None:
    pip_install(f"torch=={TORCH_VERSION}", f"mlx[cpu]=={MLX_VERSION}")
    pip_install("--no-deps", f"mflux=={MFLUX_VERSION}")
    importlib.invalidate_caches()  # pip just wrote new metadata under sys.path
    missing = unmet(mflux_requirements())
    if missing:
        pip_install(*(as_pip_argument(requirement) for requirement in missing))
    stray = cuda_distributions()
    if stray:
        sys.exit(f"CUDA packages were installed after all: {', '.join(stray)}; please uninstall them.")


def main() -> int:
    started = time.monotonic()
    if already_installed():
        print(f"mflux {MFLUX_VERSION} is already installed in {sys.prefix}; nothing to do.")
        return 0
    if sys.platform == "darwin":
        pip_install(f"mflux=={MFLUX_VERSION}")
    elif sys.platform == "linux":
        install_linux()
    else:
        sys.exit(f"mflux needs MLX, which supports macOS and Linux only, not {sys.platform}.")
    check = "import mflux, mlx.core as mx; print('mflux ready, MLX device:', mx.default_device())"
    subprocess.run([sys.executable, "-c", check], check=True)
    print(f"Done in {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
