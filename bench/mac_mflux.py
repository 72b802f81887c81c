"""Benchmark 5: real mflux on Apple Silicon, plain `generate_image` in a loop against the same images served.

For users with a Mac (M1 or later) and mflux installed (`pip install -e '.[mflux]'`), with the model's
weights in the Hugging Face cache (or `--path`):

    python -m bench.mac_mflux --model schnell -q 8            # ~10 minutes with schnell at 8 bits
    python -m bench.mac_mflux --dry-run                       # anywhere: the same procedure on the demo engine

1. Plain mflux, in a child process: the model is built exactly as the server's worker builds it (through
   worker/engines/mflux/engine.py, so the same weights, quantization and LoRAs), then with no callbacks of
   ours, one warm-up image, then `generate_image` for each task in a loop, timed.
2. The same tasks (prompts, seeds, sizes, steps) through the server (`server.py --engine mflux ...`): one
   warm-up task, then the tasks submitted so that two always wait (the GPU never runs dry), with the
   forecasts sampled as in benchmark 3 (bench/workload.py).
Reported: the server's wall time from the first task's start to the last image stored against the plain
loop's total (target: < 2 % overhead), the time each image held the engine, and the forecast error.

It needs the Mac's memory for one model at a time: the plain half exits before the server starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import json
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import running_server
from bench.machine import this_machine
from bench.report import Section, Table, Verdict, print_section
from bench.stats import Summary, percent
from bench.workload import Accuracy, Driver, TaskSpec, mixed_workload
from core.engines import EngineConfig
from core.models import Variant
from core.tasks import GenerationParams
from worker.engines.base import EngineLoadError, ModelLoadError, engine_catalog, load_engine

ROOT = Path(__file__).resolve().parents[1]
TARGET_OVERHEAD = 0.02


@dataclass(frozen=True)
class Config:
    model: str = "schnell"
    quantize: int | None = 8
    path: str | None = None
    images: int = 8
    sides: tuple[int, ...] = (512, 768, 1024)
    steps: tuple[int, int] = (2, 4)
    seed: int = 11
    dry_run: bool = False
    demo_speed: float = 3.0  # dry run: a 1024x1024 4-step image then takes ~3 s

    @property
    def engine(self) -> EngineConfig:
        if self.dry_run:
            return EngineConfig(engine="demo", demo_speed=self.demo_speed)
        return EngineConfig(engine="mflux", model=self.model, quantize=self.quantize, path=self.path)

    def server_args(self) -> list[str]:
        if self.dry_run:
            return []
        args = ["--model", self.model]
        if self.quantize:
            args += ["--quantize", str(self.quantize)]
        if self.path:
            args += ["--path", self.path]
        return args


SMOKE = Config(images=3, sides=(256, 384), steps=(1, 2), dry_run=True, demo_speed=50.0)


def tasks(config: Config) -> list[TaskSpec]:
    return mixed_workload(config.images, config.seed, sides=config.sides, steps=config.steps, priority_share=0.0,
                          cancel_one=False)  # fmt: skip


def warm_up_task(config: Config) -> TaskSpec:
    return TaskSpec(-1, "warm-up: a plain grey square", 1, config.sides[0], config.sides[0], config.steps[0])


# -- 1. plain mflux (or the demo engine), in a child process ----------------------------------------------


class _NoProgress:
    """What the demo engine reports to when nobody listens (plain mflux has no callbacks of ours at all)."""

    cancelled = False

    def loop_started(self, steps: int) -> None:
        pass

    def step_done(self, step: int, preview=None) -> None:
        pass


def plain_loop(config: Config) -> list[float]:
    """Seconds of each image, generated directly by the engine's library (run in a child process)."""
    catalog = engine_catalog(config.engine)
    info = catalog.default_model
    variant = Variant(info.name, config.engine.quantize, path=config.engine.path)
    loaded = load_engine(config.engine).load(variant)  # EngineLoadError/ModelLoadError say what is missing
    if config.dry_run:

        def generate(params: GenerationParams) -> None:
            loaded.generate(params, _NoProgress())
    else:
        model = loaded.model
        model.callbacks = type(model.callbacks)()  # a fresh registry: plain mflux, none of the server's hooks

        def generate(params: GenerationParams) -> None:
            result = model.generate_image(
                seed=params.seed,
                prompt=params.prompt,
                num_inference_steps=params.steps,
                height=params.height,
                width=params.width,
                guidance=params.guidance,
            )
            _ = result.image  # the PIL image, as the server's worker takes it

    def params(spec: TaskSpec) -> GenerationParams:
        side = info.round_size
        return GenerationParams(spec.prompt, spec.seed, side(spec.width), side(spec.height), spec.steps,
                                info.default_guidance)  # fmt: skip

    generate(params(warm_up_task(config)))
    seconds = []
    for spec in tasks(config):
        began = time.perf_counter()
        generate(params(spec))
        seconds.append(time.perf_counter() - began)
    return seconds


def _plain_in_child(config: Config) -> list[float]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.mac_mflux", "--plain-half", json.dumps(dataclasses.asdict(config))],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"plain generation failed:\n{done.stderr.strip()[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- 2. the same tasks through the server -----------------------------------------------------------------


def run(config: Config = Config()) -> Section:
    began_run = time.monotonic()
    plain = _plain_in_child(config)
    specs = tasks(config)
    start_timeout = 60.0 if config.dry_run else 1800.0  # a first run may download weights for a long time
    with running_server(engine=config.engine.engine, demo_speed=config.demo_speed, args=config.server_args(),
                        start_timeout=start_timeout) as server:  # fmt: skip
        driver = Driver(server.url)
        warm = driver.submit(warm_up_task(config))
        driver.api.wait_until([warm.task_id], ("done",), timeout=start_timeout, interval=0.1)
        driver.submitted.clear()
        driver.start_sampling()
        driver.keep_fed(specs, waiting=2)
        driver.wait_all(timeout=600 + 60 * sum(plain))
        driver.stop()
        outcomes = driver.outcomes()
    outcomes.sort(key=lambda o: o.started)
    served_wall = max(o.ended for o in outcomes) - min(o.started for o in outcomes)
    plain_total = sum(plain)
    overhead = served_wall / plain_total - 1
    engine = [o.engine_seconds or 0.0 for o in sorted(outcomes, key=lambda o: o.spec.index)]
    gaps = [b.started - a.rendered for a, b in itertools.pairwise(outcomes) if a.rendered]

    label = "demo engine (dry run)" if config.dry_run else engine_catalog(config.engine).default_model.label
    per_image = Table(["#", "size", "steps", "plain", "held the engine, served", "difference"],
                      caption="Each image: plain loop against the time it held the engine in the server")  # fmt: skip
    for spec, alone, served in zip(specs, plain, engine, strict=True):
        per_image.add(spec.index, f"{spec.width}×{spec.height}", spec.steps, f"{alone:.2f} s", f"{served:.2f} s",
                      f"{(served / alone - 1) * 100:+.1f} %")  # fmt: skip
    totals = Table(["Measure", "value"])
    totals.add("plain loop, sum of the images", f"{plain_total:.2f} s")
    totals.add("served: first start to last image stored", f"{served_wall:.2f} s")
    totals.add("overhead of serving", f"{overhead * 100:+.2f} %")
    totals.add(
        "engine idle between tasks (sum; p50, max)",
        f"{sum(gaps) * 1000:.1f} ms; {Summary.of(gaps).p50 * 1000:.1f} ms, {max(gaps, default=0) * 1000:.1f} ms",
    )
    accuracy = Table(["Tasks", "n", "expected_time MAPE", "wait_remaining MAPE"], caption="Forecasts")
    for name, group in (("first 5", outcomes[:5]), ("the rest", outcomes[5:]), ("all", outcomes)):
        acc = Accuracy.of(group)
        accuracy.add(name, acc.tasks, percent(acc.expected_mape), percent(acc.remaining_mape))

    measured = f"{overhead * 100:+.2f} % ({label})"
    met = overhead < TARGET_OVERHEAD
    mac = "serving overhead, mflux on Apple Silicon"
    if config.dry_run:
        verdicts = [
            Verdict(mac, "< 2 %", "needs a Mac: run the command above", None),
            Verdict("serving overhead, same procedure (dry run)", "< 2 %", measured, met),
        ]
    else:
        verdicts = [Verdict(mac, "< 2 %", measured, met)]
    command = "python -m bench.mac_mflux " + ("--dry-run" if config.dry_run else " ".join(config.server_args()))
    return Section(
        key="mac_mflux",
        title="5. Real mflux on a Mac" + (" (dry run on the demo engine)" if config.dry_run else ""),
        setup=f"""
`{command}` on {this_machine().describe()}. {config.images} images (seed {config.seed}): sides from
{", ".join(map(str, config.sides))}, {config.steps[0]}–{config.steps[1]} steps, with {label}. The plain half builds
the model as the server's worker does and calls the engine directly in a loop; the served half submits the same
tasks so that two always wait. On a Mac: `python -m bench.mac_mflux --model schnell -q 8` (needs mflux and the
weights; it stops with the reason and the fix if either is missing). `--dry-run` runs the same code on the demo
engine, which is what the smoke test and this report exercise here.
""",
        tables=[totals, per_image, accuracy],
        verdicts=verdicts,
        data={
            "plain": plain,
            "served_wall": served_wall,
            "overhead": overhead,
            "engine": engine,
            "gaps": gaps,
            "forecast": dataclasses.asdict(Accuracy.of(outcomes)),
        },
        seconds=time.monotonic() - began_run,
    )


def preflight(config: Config) -> str | None:
    """Why this cannot run here, or None. (The dry run can run anywhere.)"""
    if config.dry_run:
        return None
    if importlib.util.find_spec("mflux") is None:
        from worker.options import MFLUX_MISSING

        return MFLUX_MISSING
    if sys.platform != "darwin" or platform.machine() != "arm64":
        return (
            f"This benchmark is meant for Apple Silicon (this is {platform.system()} {platform.machine()}): "
            "mflux runs on MLX's Metal GPU there. Use --dry-run to try the procedure on the demo engine."
        )
    try:
        engine_catalog(config.engine)
    except EngineLoadError as error:
        return str(error)
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", default=Config.model, help="mflux model name, as for the server")
    parser.add_argument("--quantize", "-q", type=int, default=Config.quantize, help="bits (3, 4, 5, 6, 8)")
    parser.add_argument("--path", default=None, help="local weights directory, as the server's --path")
    parser.add_argument("--images", type=int, default=Config.images)
    parser.add_argument("--seed", type=int, default=Config.seed)
    parser.add_argument("--dry-run", action="store_true", help="the same procedure on the demo engine")
    parser.add_argument("--json", action="store_true", help="print the section as JSON, not Markdown")
    parser.add_argument("--plain-half", metavar="CONFIG", help=argparse.SUPPRESS)  # the child process's entry
    args = parser.parse_args(argv)
    if args.plain_half:
        fields = json.loads(args.plain_half)
        config = Config(**fields | {"sides": tuple(fields["sides"]), "steps": tuple(fields["steps"])})
        try:
            print(json.dumps(plain_loop(config)))
        except (EngineLoadError, ModelLoadError) as error:
            raise SystemExit(f"cannot load the model: {error}") from None
        return
    config = Config(model=args.model, quantize=args.quantize, path=args.path, images=args.images, seed=args.seed,
                    dry_run=args.dry_run)  # fmt: skip
    if problem := preflight(config):
        raise SystemExit(problem)
    print_section(run(config), args.json)


if __name__ == "__main__":
    main()
