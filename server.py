"""mflux-server: queue text-to-image tasks over HTTP and run them one at a time on this machine's GPU."""

from __future__ import annotations

import argparse
import ctypes
import logging
import logging.config
import os
import signal
import sys
from pathlib import Path

import platformdirs
import waitress

from api import create_app, waitress_errors
from api.auth import exposure_warning
from api.config import DefaultConfig
from api.serving import GIL_SWITCH_MS, set_gil_switch_interval, waitress_options
from core import rules
from core.keys import KeysFileError, load_keys
from core.rules import Limits
from taskqueue.assembly import StartupError, build_service
from taskqueue.housekeeping import StorageLimits
from taskqueue.planner import Fairness
from taskqueue.settings import ServiceSettings
from taskqueue.webhooks import WebhookSettings, default_base_url
from worker.options import add_engine_options, engine_config, engine_missing

log = logging.getLogger("mflux_server")


def positive_number(text: str) -> float:
    """An argparse type: a finite number above 0 (argparse names the option in its error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    add("--port", type=int, default=4030, help="port to listen on (0: any free port)")
    add_engine_options(parser)
    add("--max-overtakes", type=int, default=8, help="most later tasks that may run before a task to save a switch")
    add("--max-overtake-seconds", type=float, default=300, help="most seconds of later tasks' work likewise")
    add("--broker", default=os.environ.get("MFLUX_SERVER_BROKER"), help="redis://[user:password@]host:port/db "
        "(rediss:// for TLS): workers on other machines (mflux-server-worker) take tasks too (or env "
        "MFLUX_SERVER_BROKER)")  # fmt: skip
    add("--no-local-worker", dest="local_worker", action="store_false", help="run no worker here (an API-only "
        "host; needs --broker)")  # fmt: skip
    add("--hung-after-seconds", type=float, default=60, help="a worker that makes no progress for three times "
        "what the forecast expects of its current phase plus this long is hung: killed and started again")  # fmt: skip
    add("--data-dir", type=Path, default=Path(platformdirs.user_data_dir("mflux-server")), help="tasks and images")
    add("--threads", type=int, default=16, help="HTTP worker threads")
    add(
        "--admitted-requests",
        type=int,
        default=DefaultConfig.MFLUX_ADMITTED_REQUESTS,
        metavar="N",
        help="requests that run the app's Python at once, the others waiting their turn (api/slots.py); 0: no limit",
    )
    add("--gil-switch-ms", type=positive_number, default=GIL_SWITCH_MS, metavar="MS", help="most milliseconds a "
        "thread runs Python while another waits for the GIL (api/serving.py; Python's default: 5)")  # fmt: skip
    add("--api-key", default=None, help="require this key on /api, /v1, /sdapi (better: env MFLUX_SERVER_API_KEY); "
        "an admin key")  # fmt: skip
    add("--api-keys-file", type=Path, default=os.environ.get("MFLUX_SERVER_API_KEYS_FILE"), help="named API keys, "
        "TOML or JSON (see README): user keys see and manage only their own tasks, admin keys all (or env "
        "MFLUX_SERVER_API_KEYS_FILE)")  # fmt: skip
    add("--cors-origins", default="*", help="origins browsers may call the API from, space or comma separated")
    add("--public-url", default=None, help="the server's address as clients reach it, the base of the links it "
        "gives (webhook calls, OpenAI url answers), never the Host header (default: http://HOST:PORT as it "
        "listens)")  # fmt: skip
    add("--webhook-secret", default=None, help="sign webhook calls with this secret (better: env "
        "MFLUX_SERVER_WEBHOOK_SECRET)")  # fmt: skip
    add("--allow-private-webhooks", action="store_true", help="let webhooks go to loopback, private and link-local "
        "addresses (a home network)")  # fmt: skip
    add("--webhook-timeout", type=float, default=10, help="seconds a webhook receiver has to answer")
    add("--webhook-retry-seconds", type=float, default=10, help="delay before a failed webhook call is retried; it "
        "doubles with each retry, up to an hour")  # fmt: skip
    add("--webhook-retry-hours", type=float, default=24, help="give up a webhook call still failing this long "
        "after its task ended")  # fmt: skip
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


def webhook_settings(args: argparse.Namespace) -> WebhookSettings:
    return WebhookSettings(
        secret=args.webhook_secret or os.environ.get("MFLUX_SERVER_WEBHOOK_SECRET") or None,
        allow_private=args.allow_private_webhooks,
        timeout_seconds=args.webhook_timeout,
        connect_timeout_seconds=min(5.0, args.webhook_timeout),
        first_retry_seconds=args.webhook_retry_seconds,
        retry_for_seconds=args.webhook_retry_hours * 3600,
    )


# Our own loggers: they log a prompt's length, its text only with --log-prompts (the worker's come as "worker").
OWN_LOGGERS = ("mflux_server", "api", "taskqueue", "worker", "core", "webui")


def configure_logging(level: str, log_prompts: bool = False) -> None:
    """Libraries log at DEBUG what passes through them, prompts included (Pillow: every EXIF tag it writes, the
    image's description is the prompt; PNG text chunks). No filter can recognise a prompt in their messages
    (escaped, truncated, inside a repr of bytes), so below INFO only our own loggers speak, unless --log-prompts.
    The worker process mirrors these levels (taskqueue/assembly.py)."""
    libraries = level if log_prompts else max(logging.getLevelName(level), logging.INFO)
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"task": {"()": TaskIdFilter}},
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)-7s %(name)s [%(task_id)s] %(message)s"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["task"]}},
        "loggers": {name: {"level": level} for name in OWN_LOGGERS},
        "root": {"level": libraries, "handlers": ["stderr"]},
    })  # fmt: skip


class TaskIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.task_id = getattr(record, "task_id", None) or "-"
        return True


MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas before the threads start. glibc gives each thread that meets contention an
    arena of its own (up to 8 per core); with 16 HTTP threads the API's RSS crept from 64 to 108 MB over 20,000
    tasks while the Python heap stayed flat (tracemalloc) and malloc_trim gave nothing back: freed memory kept in
    many arenas. Two arenas hold it at about 72 MB (BENCHMARKS.md, "API memory"). Not glibc: nothing to do."""
    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return False  # the operator's own setting wins
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False  # another C library (musl): it has no arenas to cap


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # waitress leaves its loop on KeyboardInterrupt; we then shut down in order


def _already_stopping(signum: int, frame: object) -> None:
    log.warning("already shutting down; the running task is abandoned at its next step")


def main(argv: list[str] | None = None) -> int:
    cap_malloc_arenas()
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_prompts)
    set_gil_switch_interval(args.gil_switch_ms)
    engine = engine_config(args)
    if args.local_worker and (missing := engine_missing(engine)):
        print(missing, file=sys.stderr)
        return 2
    limits = Limits(**{limit.name: getattr(args, limit.name) for limit in rules.options()})
    storage = StorageLimits(
        retention_seconds=args.retention_hours * 3600,
        max_stored_images=args.max_stored_images,
        max_stored_bytes=round(args.max_stored_mb * 1e6) if args.max_stored_mb > 0 else None,
    )
    settings = ServiceSettings(
        data_dir=args.data_dir, engine=engine, limits=limits, storage=storage, previews=args.previews,
        log_prompts=args.log_prompts, housekeeping_interval=args.housekeeping_seconds,
        fairness=Fairness(args.max_overtakes, args.max_overtake_seconds), webhooks=webhook_settings(args),
        broker_url=args.broker or None, local_worker=args.local_worker, hung_after_seconds=args.hung_after_seconds,
    )  # fmt: skip
    if not args.local_worker and not args.broker:
        log.error("cannot start: --no-local-worker needs --broker (workers on other machines)")
        return 2
    api_key = args.api_key or os.environ.get("MFLUX_SERVER_API_KEY") or None
    try:
        named_keys = load_keys(Path(args.api_keys_file)) if args.api_keys_file else ()
    except KeysFileError as error:
        log.error("cannot start: %s", error)
        return 2
    if api_key and any(key.secret == api_key for key in named_keys):
        log.error("cannot start: the --api-key is also a key of the keys file; give each its own")
        return 2
    try:
        service = build_service(settings)
    except (OSError, ValueError, StartupError) as error:
        log.error("cannot start: %s", error)
        return 2
    config = {
        "MFLUX_API_KEY": api_key,
        "MFLUX_API_KEYS": named_keys,
        "MFLUX_CORS_ORIGINS": args.cors_origins,
        # Event streams and blocking OpenAI/A1111 calls each hold a thread: keep a few for everything else.
        "MFLUX_MAX_HELD_REQUESTS": max(1, args.threads - 4),
        "MFLUX_ADMITTED_REQUESTS": args.admitted_requests,
    }
    app = create_app(config, service=service)
    # Limits and timeouts against slow and stuck clients, each explained in api/serving.py.
    options = waitress_options(args.threads, max(app.config["MAX_CONTENT_LENGTH"], service.limits.max_body_bytes))
    server = waitress.create_server(app, host=args.host, port=args.port, **options)
    waitress_errors.install(server, app)  # what waitress refuses itself is JSON too, in the asking API's shape
    public_url = args.public_url or default_base_url(args.host, server.effective_port)
    app.config["MFLUX_PUBLIC_URL"] = public_url  # known once the port is: links name it (api/public_url.py)
    service.start(public_url)
    log.info("engine: %s; default model %s; data in %s", service.engine, service.default_variant.key, args.data_dir)
    log.info("listening on http://%s:%s (pid %d)", args.host, server.effective_port, os.getpid())
    if named_keys:
        admins = sum(key.admin for key in named_keys)
        log.info("%d named API key(s) (%d admin) from %s; a key is required on /api, /v1 and /sdapi",
                 len(named_keys), admins, args.api_keys_file)  # fmt: skip
    elif api_key:
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
