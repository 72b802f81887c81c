"""The machine a benchmark ran on, and what its processes used: CPU time, memory, competing load.

Linux reads /proc; macOS (for bench/mac_mflux.py) falls back to sysctl and ps. Where a figure cannot be had it
is reported as unknown rather than guessed.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    memory_gb: float
    os: str
    python: str

    def describe(self) -> str:
        return f"{self.cpu}, {self.cores} cores, {self.memory_gb:.0f} GB RAM; {self.os}; Python {self.python}"


def this_machine() -> Machine:
    return Machine(_cpu_model(), os.cpu_count() or 0, _memory_bytes() / 1e9, _os_name(), platform.python_version())


def _cpu_model() -> str:
    if sys.platform == "darwin":
        return _sysctl("machdep.cpu.brand_string") or platform.processor() or "unknown CPU"
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    names = re.findall(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    hypervisor = " (virtual machine)" if re.search(r"^flags\s*:.*\bhypervisor\b", text, re.MULTILINE) else ""
    return (names[0].strip() if names else platform.processor() or "unknown CPU") + hypervisor


def _memory_bytes() -> int:
    if sys.platform == "darwin":
        return int(_sysctl("hw.memsize") or 0)
    try:
        match = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    except OSError:
        return 0
    return int(match.group(1)) * 1024 if match else 0


def _os_name() -> str:
    if sys.platform == "darwin":
        return f"macOS {platform.mac_ver()[0]} ({platform.machine()})"
    try:
        release = Path("/etc/os-release").read_text()
        match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', release, re.MULTILINE)
        distro = match.group(1) if match else "Linux"
    except OSError:
        distro = platform.system()
    return f"{distro}, kernel {platform.release()} ({platform.machine()})"


def _sysctl(name: str) -> str | None:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


# -- processes --------------------------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads); None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process, or None if it cannot be read."""
    try:
        match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
        return int(match.group(1)) * 1024 if match else None
    except OSError:
        pass
    try:  # macOS
        out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True, check=True)
        return int(out.stdout.strip()) * 1024
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None


def _machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    return (sum(values[:8]) - values[3] - values[4]) / CLOCK_TICKS


@dataclass(frozen=True)
class CpuUsage:
    """Average cores used over an interval: by the machine, by each named process, and by everything else."""

    seconds: float
    machine: float | None
    processes: dict[str, float] = field(default_factory=dict)

    @property
    def others(self) -> float | None:
        """Cores used by processes that are not part of the benchmark (other users of a shared machine)."""
        if self.machine is None:
            return None
        return max(self.machine - sum(self.processes.values()), 0.0)

    def describe(self) -> str:
        if self.machine is None:
            return "CPU use not measured on this OS"
        parts = ", ".join(f"{name} {cores:.2f}" for name, cores in self.processes.items())
        return (
            f"cores busy on average: {self.machine:.2f} of {os.cpu_count()} ({parts}; "
            f"everything else on the machine {self.others:.2f})"
        )


class CpuMeter:
    """Measures CpuUsage between `start()` and `stop()`; processes are given as name -> pid.

    The benchmark's own process is always included ("benchmark driver"). Child processes that report their
    own CPU time (the load generator) are added with `add`.
    """

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid}
        self._began = 0.0
        self._machine = None
        self._processes: dict[str, float | None] = {}
        self._driver = 0.0
        self._extra: dict[str, float] = {}

    def start(self) -> CpuMeter:
        self._began = time.monotonic()
        self._machine = _machine_busy_seconds()
        self._processes = {name: process_cpu_seconds(pid) for name, pid in self._pids.items()}
        self._driver = sum(os.times()[:2])
        return self

    def add(self, name: str, cpu_seconds: float) -> None:
        self._extra[name] = self._extra.get(name, 0.0) + cpu_seconds

    def stop(self) -> CpuUsage:
        elapsed = max(time.monotonic() - self._began, 1e-9)
        machine_now = _machine_busy_seconds()
        machine = None if machine_now is None or self._machine is None else (machine_now - self._machine) / elapsed
        used: dict[str, float] = {}
        for name, pid in self._pids.items():
            before, after = self._processes.get(name), process_cpu_seconds(pid)
            if before is not None and after is not None:
                used[name] = (after - before) / elapsed
        used["benchmark driver"] = (sum(os.times()[:2]) - self._driver) / elapsed
        for name, seconds in self._extra.items():
            used[name] = seconds / elapsed
        return CpuUsage(elapsed, machine, used)
