"""A server whose data directory is a small tmpfs of its own, to fill and free as a full disk would be.

Running as root, permissions stop nothing, so a full or read-only disk is made for real in a private mount
namespace (Linux, root, `unshare` and `nsenter`); `mounts_allowed()` says whether this machine permits it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


def in_private_mounts(shell: str, *paths: Path) -> list[str]:
    """A command prefix: run `shell` (with $1, $2... = paths) as root in a private mount namespace, then exec."""
    return ["unshare", "--mount", "sh", "-c", f'{shell} && shift {len(paths)} && exec "$@"', "sh", *map(str, paths)]


def on_small_tmpfs(directory: Path, megabytes: float) -> list[str]:
    """A command prefix: `directory` becomes a tmpfs of `megabytes` that only the command sees."""
    return in_private_mounts(f'mount -t tmpfs -o size={int(megabytes * 1024)}k tmpfs "$1"', directory)


def mounts_allowed() -> str | None:
    """None if private mount namespaces work here, else why not."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs Linux and root for a private mount namespace"
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "needs unshare and nsenter (util-linux)"
    with tempfile.TemporaryDirectory(prefix="mount-probe-") as probe:
        result = subprocess.run([*on_small_tmpfs(Path(probe), 0.0625), "true"], check=False, capture_output=True)
    return None if result.returncode == 0 else "mounting in a private namespace is not permitted here"


def inside(pid: int, *command: str) -> subprocess.CompletedProcess:
    """Run a command in process `pid`'s mount namespace (where its tmpfs is)."""
    return subprocess.run(["nsenter", "--target", str(pid), "--mount", *command],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def fill(pid: int, directory: Path, name: str = "filler") -> None:
    """Fill the tmpfs under `directory` to the last byte, as seen by process `pid`."""
    inside(pid, "sh", "-c", f'dd if=/dev/zero of="{directory / name}" bs=64k 2>/dev/null; true')


def free(pid: int, directory: Path, name: str = "filler") -> None:
    inside(pid, "rm", "-f", str(directory / name))


@contextlib.contextmanager
def tmpfs_mounted(directory: Path, megabytes: float) -> Iterator[Path]:
    """Mount a tmpfs of `megabytes` on `directory` in this process's own namespace (the soak inspects it after
    the server has gone), and unmount it afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(megabytes * 1024)}k", "tmpfs", str(directory)],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield directory
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=False, capture_output=True)


def fill_here(directory: Path, name: str = "filler") -> None:
    """Fill the file system under `directory` (mounted in this namespace) to the last byte."""
    with open(directory / name, "wb", buffering=0) as handle:
        for chunk in (2**20, 2**12, 1):
            try:
                while True:
                    handle.write(b"\0" * chunk)
            except OSError:
                continue


def free_here(directory: Path, name: str = "filler") -> None:
    (directory / name).unlink(missing_ok=True)
