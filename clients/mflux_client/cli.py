"""`mflux-client "a prompt" -o out.jpg --n 4`: generate images on an mflux-server from the shell.

Submits n tasks (seeds s, s+1, …), shows a progress bar per image with its queue position, step and ETA,
writes the files and prints their paths. Ctrl-C cancels the tasks on the server before exiting.
`--model NAME` picks the model for these tasks only; `--list-models` lists what the server offers.
`--image PATH` starts from a picture (img2img, an edit's references when repeated, an upscale's input), `--mask PATH`
says what to repaint of it (white = repaint), `--strength X` how much of it to keep.
Exit codes: 0 all written, 1 a server error or a task that failed, 2 bad arguments, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from mflux_client.client import DEFAULT_URL, MAX_SEED, MfluxClient
from mflux_client.errors import MfluxError, MfluxServerError
from mflux_client.models import ModelEntry, Submission, TaskStatus, next_poll_delay

FORMAT_OF_SUFFIX = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
SUFFIX_OF_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mflux-client",
        description="Generate images on an mflux-server and write them to files.",
        epilog="With --n > 1, out.jpg becomes out-1.jpg, out-2.jpg, …; or name them with {n} and {seed}, "
        'e.g. -o "shot-{seed}.png".',
    )
    parser.add_argument("prompt", nargs="?", help="what to draw")
    parser.add_argument("-o", "--output", help="output file (default: mflux-{seed}.jpg); its suffix sets the format")
    parser.add_argument("--width", type=int,
                        help="pixels, rounded down to the model's step (default: the --image's or 1024)")  # fmt: skip
    parser.add_argument("--height", type=int,
                        help="pixels, rounded down to the model's step (default: the --image's or 1024)")  # fmt: skip
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--seed", type=int, help="seed of the first image, the next get seed+1, … (default: random)")
    parser.add_argument("-n", "--n", type=int, default=1, dest="n", help="number of images (default 1)")
    parser.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    parser.add_argument("--negative-prompt", help="for models that support it")
    parser.add_argument("--model", help="model name or alias, see --list-models (default: the server's default)")
    parser.add_argument("--quantize", type=int, metavar="BITS", help="quantize the model to this many bits")
    parser.add_argument("--image", action="append", metavar="PATH", dest="images", default=[],
                        help="a picture to start from (PNG/JPEG/WEBP); repeated: an edit's references")  # fmt: skip
    parser.add_argument("--mask", metavar="PATH",
                        help="what to repaint of the first --image: white = repaint, black = keep")  # fmt: skip
    parser.add_argument("--strength", type=float, metavar="X",
                        help="how much of the --image to keep, 0 to 1 (default 0.4; text-to-image models)")  # fmt: skip
    parser.add_argument("--resize", choices=["stretch", "crop", "fill"],
                        help="how an --image of another shape meets --width x --height (default stretch)")  # fmt: skip
    parser.add_argument("--list-models", action="store_true",
                        help="list the server's models, their defaults and switch costs, and exit")  # fmt: skip
    parser.add_argument("--format", type=str.upper, choices=["JPEG", "JPG", "PNG", "WEBP"],
                        help="image format (default: from the -o suffix, else JPEG)")  # fmt: skip
    parser.add_argument("--quality", type=int, help="JPEG/WEBP quality 1-100 (server default 85)")
    parser.add_argument("--priority", action="store_true", help="go ahead of the normal waiting tasks")
    parser.add_argument("--server", default=os.environ.get("MFLUX_SERVER_URL", DEFAULT_URL),
                        help="server URL (default: $MFLUX_SERVER_URL or %(default)s)")  # fmt: skip
    parser.add_argument("--api-key", default=os.environ.get("MFLUX_API_KEY"),
                        help="sent as 'Authorization: Bearer' (default: $MFLUX_API_KEY)")  # fmt: skip
    parser.add_argument("--timeout", type=float, help="give up (and cancel) after this many seconds (default: none)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only the written paths")
    args = parser.parse_args(argv)

    if args.list_models:
        return args
    if not args.prompt:
        parser.error("the prompt is required (or --list-models)")
    if args.n < 1:
        parser.error("--n must be at least 1")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be between 0 and {MAX_SEED}")
    if args.strength is not None and not 0 <= args.strength <= 1:
        parser.error("--strength must be between 0 and 1 (the share of the image kept)")
    if (args.mask or args.strength is not None) and not args.images:
        parser.error("--mask and --strength apply to an --image: give one")
    for path in [*args.images, *([args.mask] if args.mask else [])]:
        if not Path(path).is_file():
            parser.error(f"no such image file: {path}")
    given = {"JPG": "JPEG"}.get(args.format, args.format)
    from_suffix = FORMAT_OF_SUFFIX.get(Path(args.output).suffix.lower()) if args.output else None
    if args.output and from_suffix is None and given is None:
        parser.error(f"cannot tell the image format from {args.output!r}; name it .jpg/.png/.webp or use --format")
    if given and from_suffix and given != from_suffix:
        print(f"mflux-client: warning: writing {given} data to {args.output}", file=sys.stderr)
    args.format = given or from_suffix or "JPEG"
    if args.output is None:
        args.output = "mflux-{seed}" + SUFFIX_OF_FORMAT[args.format]
    try:
        args.output.format(n=1, seed=0)
    except (KeyError, IndexError, ValueError):
        parser.error(f"-o {args.output!r}: only {{n}} and {{seed}} can be filled in")
    return args


def output_paths(template: str, seeds: Sequence[int]) -> list[Path]:
    """out.jpg → [out.jpg] for one image, [out-1.jpg, out-2.jpg, …] for several; `{n}`/`{seed}` are filled in."""
    if "{" in template:
        paths = [Path(template.format(n=i + 1, seed=seed)) for i, seed in enumerate(seeds)]
        if len(set(paths)) == len(paths):
            return paths
        template = paths[0].as_posix()  # e.g. "{seed}" with a repeated seed: number them instead
    path = Path(template)
    if len(seeds) == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i + 1}{path.suffix}") for i in range(len(seeds))]


@dataclass
class Job:
    """One image of the batch: its task on the server, its bar, and how it ended."""

    submission: Submission
    path: Path
    bar: tqdm
    status: TaskStatus | None = None
    error: str | None = None
    written: bool = False

    @property
    def pending(self) -> bool:
        return not self.written and self.error is None


@dataclass
class Batch:
    client: MfluxClient
    args: argparse.Namespace
    jobs: list[Job] = field(default_factory=list)

    def submit(self) -> None:
        params = {"width": self.args.width, "height": self.args.height, "steps": self.args.steps,
                  "guidance": self.args.guidance, "format": self.args.format, "quality": self.args.quality,
                  "priority": self.args.priority, "negative_prompt": self.args.negative_prompt,
                  "model": self.args.model, "quantize": self.args.quantize, "resize": self.args.resize,
                  "image_strength": self.args.strength}  # fmt: skip
        images = [Path(path).read_bytes() for path in self.args.images]  # read once for all n tasks
        if images:
            params |= {"init_image": images[0], "init_images": images[1:] or None}
        if self.args.mask:
            params["mask"] = Path(self.args.mask).read_bytes()
        for i in range(self.args.n):
            seed = self.args.seed if i == 0 else (self.jobs[0].submission.seed + i) % (MAX_SEED + 1)
            submission = self.client.submit(self.args.prompt, seed=seed, **params)
            self.jobs.append(self._job(submission, i))  # at once, so that Ctrl-C from here on cancels it
        paths = output_paths(self.args.output, [job.submission.seed for job in self.jobs])
        for job, path in zip(self.jobs, paths, strict=True):
            job.path = path

    def _job(self, submission: Submission, index: int) -> Job:
        bar = tqdm(
            total=submission.steps,
            position=index,
            desc=f"{index + 1}/{self.args.n} seed {submission.seed}",
            unit="step",
            leave=True,
            dynamic_ncols=True,
            disable=self.args.quiet,
            bar_format=BAR_FORMAT,
        )
        bar.set_postfix_str(f"queued, ETA {submission.expected_time_seconds:.0f}s")
        return Job(submission, Path(), bar)

    def follow(self, timeout: float | None) -> None:
        """Poll every pending task, at the pace the most urgent forecast suggests, until none is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending := [job for job in self.jobs if job.pending]:
            statuses = [self._update(job) for job in pending]
            delays = [next_poll_delay(status) for status in statuses if not status.is_final]
            if not delays:
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                for job in self.jobs:
                    if job.pending:
                        job.error = f"not done after {timeout:g} s; cancelled"
                        job.bar.set_postfix_str("timed out", refresh=True)
                self.cancel_unfinished()
                return
            time.sleep(min(delays) if left is None else min(*delays, left))

    def _update(self, job: Job) -> TaskStatus:
        status = job.status = self.client.status(job.submission.task_id)
        bar = job.bar
        if status.status == "done":
            job.path.write_bytes(self.client.image(job.submission.task_id, as_bytes=True))
            job.written = True
            bar.n = bar.total
            bar.set_postfix_str(f"saved {job.path}", refresh=False)
        elif status.status == "failed":
            job.error = f"failed: {status.error or 'no reason given'}"
            bar.set_postfix_str(job.error, refresh=False)
        elif status.status == "cancelled":
            job.error = "cancelled on the server"
            bar.set_postfix_str("cancelled", refresh=False)
        elif status.loading_model:  # being loaded for it, or to be loaded when its turn comes
            what = f"{'waiting, then ' if status.status == 'waiting' else ''}loading {status.loading_model}"
            bar.set_postfix_str(f"{what}, ETA {status.wait_remaining:.0f}s", refresh=False)
        elif status.status == "running" and status.progress:
            bar.n = status.progress.step
            eta = f"ETA {status.wait_remaining:.0f}s"
            bar.set_postfix_str(f"step {status.progress.step}/{status.progress.steps}, {eta}", refresh=False)
        else:
            ahead = "next" if status.pos == 0 else f"{status.pos} ahead"
            bar.set_postfix_str(f"{status.status}, {ahead}, ETA {status.wait_remaining:.0f}s", refresh=False)
        if status.is_final and not bar.disable:
            # Freeze its clock. Closing it now would make tqdm redraw the bars below it out of place.
            elapsed = tqdm.format_interval(bar.format_dict["elapsed"])
            bar.bar_format = BAR_FORMAT.replace("{elapsed}", elapsed)
        bar.refresh()
        return status

    def cancel_unfinished(self) -> int:
        """Cancel this batch's tasks that have not ended on the server; how many were still going."""
        cancelled = 0
        for job in self.jobs:
            if job.written or (job.status is not None and job.status.is_final):
                continue
            try:
                cancelled += bool(self.client.cancel(job.submission.task_id).get("cancelled"))
            except MfluxServerError:
                pass  # gone already, or the server is down: nothing left to stop there
        return cancelled

    def close_bars(self) -> None:
        for job in self.jobs:
            job.bar.close()


def model_lines(models: Sequence[ModelEntry]) -> list[str]:
    """One line per model: name (* for the server's default), kind, default steps, state, label."""
    width = max((len(m.name) for m in models), default=0)
    lines = []
    for m in models:
        if m.load_error:
            state = f"cannot load: {m.load_error}"
        elif m.loaded:
            state = "loaded"
        elif m.loading:
            state = "loading"
        else:
            seconds = "<1 s" if m.switch_seconds < 1 else f"~{m.switch_seconds:.0f} s"
            state = f"switch {seconds}" + ("" if m.present else ", downloads first")
        mark = "*" if m.default else " "
        lines.append(f"{mark} {m.name:<{width}}  {m.kind:<13}  {m.default_steps:>3} steps  {state:<16}  {m.label}")
    return lines


def list_models(client: MfluxClient) -> int:
    try:
        models = client.models()
    except MfluxError as error:
        message = error.message if isinstance(error, MfluxServerError) else str(error)
        print(f"mflux-client: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    for line in model_lines(models):
        print(line)
    print("* the server's default model (for tasks that name none)", file=sys.stderr)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_models:
        with MfluxClient(args.server, api_key=args.api_key) as client:
            return list_models(client)
    code = EXIT_OK
    with MfluxClient(args.server, api_key=args.api_key) as client:
        batch = Batch(client, args)
        try:
            batch.submit()
            batch.follow(args.timeout)
        except KeyboardInterrupt:
            batch.close_bars()
            cancelled = batch.cancel_unfinished()
            print(f"mflux-client: interrupted; cancelled {cancelled} task(s) on the server", file=sys.stderr)
            code = EXIT_INTERRUPTED
        except (MfluxError, OSError) as error:
            batch.close_bars()
            batch.cancel_unfinished()
            message = error.message if isinstance(error, MfluxServerError) else str(error)
            print(f"mflux-client: error: {message}", file=sys.stderr)
            code = EXIT_ERROR
        finally:
            batch.close_bars()
    for job in batch.jobs:
        if job.written:
            print(job.path)
        elif job.error is not None:
            print(f"mflux-client: seed {job.submission.seed}: {job.error}", file=sys.stderr)
            code = code or EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
