"""mflux-server: queue text-to-image tasks over HTTP and run them one at a time on this machine's GPU."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import logging.config
import os
import signal
import sys
from pathlib import Path

import platformdirs
import waitress

from api import create_app
from api.auth import exposure_warning
from api.serving import waitress_options
from core import rules
from core.engines import EngineConfig
from core.rules import Limits
from taskqueue.assembly import build_service
from taskqueue.housekeeping import StorageLimits
from taskqueue.settings import ServiceSettings
from worker.engines.base import ENGINE_NAMES

log = logging.getLogger("mflux_server")

MFLUX_MISSING = """The mflux engine needs the mflux package, which is not installed in this Python environment.
  On a Mac with Apple Silicon:  pip install -e '.[mflux]'   (or: pip install mflux)
  On Linux, for CPU MLX:        python scripts/install_mflux.py
  To try the server without a model, run it with --engine demo (procedural test images)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    add("--port", type=int, default=4030, help="port to listen on (0: any free port)")
    add("--engine", choices=ENGINE_NAMES, default="mflux", help="mflux: the real model; demo: procedural test images")
    add("--model", "-m", default="schnell", help="mflux model name, as for mflux-generate")
    add("--quantize", "-q", type=int, choices=[3, 4, 5, 6, 8], default=None, help="quantize to this many bits")
    add("--path", default=None, help="local directory with the model's weights (instead of the Hugging Face cache)")
    add("--lora-paths", nargs="+", default=[], help="LoRA adapter files to apply")
    add("--lora-scales", nargs="+", type=float, default=[], help="one scale per LoRA adapter")
    add("--demo-speed", type=float, default=1.0, help="demo engine: divide its modelled durations by this")
    add("--data-dir", type=Path, default=Path(platformdirs.user_data_dir("mflux-server")), help="tasks and images")
    add("--threads", type=int, default=16, help="HTTP worker threads")
    add("--api-key", default=None, help="require this key on /api, /v1, /sdapi (better: env MFLUX_SERVER_API_KEY)")
    add("--cors-origins", default="*", help="origins browsers may call the API from, space or comma separated")
    for limit in rules.options():  # every limit a request is judged by: core/rules.py declares them
        add(
            f"--{limit.name.replace('_', '-')}",
            type=type(limit.default),
            default=limit.default,
            help=limit.metadata["help"],
        )
    add("--retention-hours", type=float, default=24.0, help="forget unfetched images and finished tasks after this")
    add("--max-stored-images", type=int, default=1000, help="most unfetched images kept; the oldest go first")
    add("--max-stored-mb", type=float, default=2048, help="most megabytes of unfetched images kept (0: no limit)")
    add("--housekeeping-seconds", type=float, default=60, help="how often expired tasks and images are removed")
    add("--no-previews", dest="previews", action="store_false", help="do not render previews of running tasks")
    add("--log-prompts", action="store_true", help="log prompt text (by default only its length)")
    add("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="how much to log")
    return parser


def configure_logging(level: str) -> None:
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"task": {"()": TaskIdFilter}},
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)-7s %(name)s [%(task_id)s] %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["task"]}},
        "root": {"level": level, "handlers": ["stderr"]},
    })  # fmt: skip


class TaskIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.task_id = getattr(record, "task_id", None) or "-"
        return True


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # waitress leaves its loop on KeyboardInterrupt; we then shut down in order


def _already_stopping(signum: int, frame: object) -> None:
    log.warning("already shutting down; the running task is abandoned at its next step")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    if args.engine == "mflux" and importlib.util.find_spec("mflux") is None:
        print(MFLUX_MISSING, file=sys.stderr)
        return 2
    engine = EngineConfig(
        args.engine, args.model, args.quantize, args.path, tuple(args.lora_paths), tuple(args.lora_scales),
        args.demo_speed,
    )  # fmt: skip
    limits = Limits(**{limit.name: getattr(args, limit.name) for limit in rules.options()})
    storage = StorageLimits(
        retention_seconds=args.retention_hours * 3600,
        max_stored_images=args.max_stored_images,
        max_stored_bytes=round(args.max_stored_mb * 1e6) if args.max_stored_mb > 0 else None,
    )
    settings = ServiceSettings(
        data_dir=args.data_dir, engine=engine, limits=limits, storage=storage, previews=args.previews,
        log_prompts=args.log_prompts, housekeeping_interval=args.housekeeping_seconds,
    )  # fmt: skip
    try:
        service = build_service(settings)
    except (OSError, ValueError) as error:
        log.error("cannot start: %s", error)
        return 2
    api_key = args.api_key or os.environ.get("MFLUX_SERVER_API_KEY") or None
    config = {
        "MFLUX_API_KEY": api_key,
        "MFLUX_CORS_ORIGINS": args.cors_origins,
        # Event streams and blocking OpenAI/A1111 calls each hold a thread: keep a few for everything else.
        "MFLUX_MAX_HELD_REQUESTS": max(1, args.threads - 4),
    }
    app = create_app(config, service=service)
    # Limits and timeouts against slow and stuck clients, each explained in api/serving.py.
    options = waitress_options(args.threads, app.config["MAX_CONTENT_LENGTH"])
    server = waitress.create_server(app, host=args.host, port=args.port, **options)
    service.start()
    log.info("engine: %s; data in %s", service.info.label, args.data_dir)
    log.info("listening on http://%s:%s (pid %d)", args.host, server.effective_port, os.getpid())
    if api_key:
        log.info("an API key is required on /api, /v1 and /sdapi")
    elif warning := exposure_warning(args.host, api_key):
        log.warning("%s", warning)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not break the orderly shutdown
        signal.signal(signum, _already_stopping)
    log.info("shutting down: waiting for the worker")
    server.close()
    service.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
