"""`mflux-client "a prompt" -o out.jpg --n 4`: generate images on an mflux-server from the shell.

Submits n tasks (seeds s, s+1, …), shows a progress bar per image with its queue position, step and ETA,
writes the files and prints their paths. Ctrl-C cancels the tasks on the server before exiting.
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
from mflux_client.models import Submission, TaskStatus, next_poll_delay

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
    parser.add_argument("prompt", help="what to draw")
    parser.add_argument("-o", "--output", help="output file (default: mflux-{seed}.jpg); its suffix sets the format")
    parser.add_argument("--width", type=int, help="pixels, rounded down to a multiple of 16 (server default 1024)")
    parser.add_argument("--height", type=int, help="pixels, rounded down to a multiple of 16 (server default 1024)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--seed", type=int, help="seed of the first image, the next get seed+1, … (default: random)")
    parser.add_argument("-n", "--n", type=int, default=1, dest="n", help="number of images (default 1)")
    parser.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    parser.add_argument("--negative-prompt", help="for models that support it")
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

    if args.n < 1:
        parser.error("--n must be at least 1")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be between 0 and {MAX_SEED}")
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
                  "priority": self.args.priority, "negative_prompt": self.args.negative_prompt}  # fmt: skip
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
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
