"""Fault injection for the test suite: a prompt containing "[demo-fault:<point>]" makes the demo engine kill its
own worker process (SIGKILL, like the OOM killer) at that point, or raise at "raise".

Points: before-loop, step-<n>, after-loop, encoding, raise, hang-step-<n> (stop making progress: a hung GPU).
Loading has no prompt: MFLUX_DEMO_FAULT=load-crash in the server's environment makes every worker SIGKILL itself
while loading the engine (the supervisor must halt rather than respawn forever: tests/test_faults.py), and
MFLUX_DEMO_FAULT=load-fail:<model> makes loading that model fail (a model whose weights are broken).
"""

from __future__ import annotations

import os
import re
import signal
import time

from core.tasks import GenerationParams

FAULT_MARKER = re.compile(r"\[demo-fault:([a-z0-9-]+)\]")
FAULT_ENV = "MFLUX_DEMO_FAULT"


def fault_point(params: GenerationParams, point: str) -> None:
    """Crash, raise or hang here if the prompt asks for it."""
    wanted = FAULT_MARKER.findall(params.prompt)
    if point in wanted:
        os.kill(os.getpid(), signal.SIGKILL)
    if point == "before-loop" and "raise" in wanted:
        raise RuntimeError("demo fault injected: the engine raised")
    if f"hang-{point}" in wanted:
        while True:  # a GPU driver hang or a deadlock: no step, no exception, forever
            time.sleep(3600)


def engine_fault() -> str:
    return os.environ.get(FAULT_ENV, "")


def crash_if_asked_while_loading_engine() -> None:
    if engine_fault() == "load-crash":
        os.kill(os.getpid(), signal.SIGKILL)


def model_load_refused(model: str) -> bool:
    fault = engine_fault()
    return fault.startswith("load-fail:") and model in fault.removeprefix("load-fail:").split(",")
