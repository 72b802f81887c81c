"""The command line: `python -m mflux_mcp --server URL [--api-key KEY]` (installed as `mflux-server-mcp`).

An MCP client (Claude Desktop, an agent framework, …) starts this process and talks MCP over its stdin and
stdout; so nothing here may print to stdout, and all logging goes to stderr, which clients keep in their logs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from mflux_mcp.backend import probe_info
from mflux_mcp.errors import explain
from mflux_mcp.settings import DEFAULT_URL, DEFAULT_WAIT_SECONDS, ServerInfo, Settings

log = logging.getLogger("mflux_mcp")


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="mflux-server-mcp",
        description="A Model Context Protocol server (stdio) that generates images on a running mflux-server.",
    )
    parser.add_argument(
        "--server",
        metavar="URL",
        default=os.environ.get("MFLUX_SERVER_URL") or DEFAULT_URL,
        help=f"the mflux-server's base URL (default: env MFLUX_SERVER_URL, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        default=os.environ.get("MFLUX_SERVER_API_KEY") or None,
        help="the server's API key (better: env MFLUX_SERVER_API_KEY, since command lines are visible to all users)",
    )
    parser.add_argument(
        "--wait-seconds",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        help="how long generate_image waits for an image before returning a task handle instead, unless the "
        f"call says otherwise (default {DEFAULT_WAIT_SECONDS:g}; keep it below the MCP client's tool timeout)",
    )
    parser.add_argument(
        "--http-timeout",
        metavar="SECONDS",
        type=float,
        default=30.0,
        help="seconds allowed for each HTTP request to the server (default 30)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="how much to log to stderr (default INFO; MCP clients keep it in their logs)",
    )
    args = parser.parse_args(argv)
    if not args.server.startswith(("http://", "https://")):
        parser.error(f"--server must be an http:// or https:// URL, not {args.server!r}")
    if args.wait_seconds < 0 or args.http_timeout <= 0:
        parser.error("--wait-seconds must be >= 0 and --http-timeout > 0")
    return Settings(
        server_url=args.server.rstrip("/"),
        api_key=args.api_key,
        wait_seconds=args.wait_seconds,
        http_timeout=args.http_timeout,
        log_level=args.log_level,
    )


def main(argv: Sequence[str] | None = None) -> None:
    settings = parse_args(argv)
    try:  # here, not at the top: the SDK is an optional dependency (the `mcp` extra), so say how to get it
        from mflux_mcp.server import build_server
    except ModuleNotFoundError as error:
        if error.name != "mcp" and not (error.name or "").startswith("mcp."):
            raise
        sys.exit("mflux-server-mcp needs the MCP SDK: pip install 'mflux-server[mcp]' (or 'mcp>=2.3,<3')")
    probed = probe_info(settings)
    server = build_server(settings, probed if isinstance(probed, ServerInfo) else None)
    if isinstance(probed, ServerInfo):
        log.info("mflux-server-mcp: serving %s (model %s)", settings.server_url, probed.model)
    else:
        # Not fatal: MCP clients start their servers when they start, maybe before the mflux-server is up.
        log.warning("mflux-server-mcp: %s Tools will report this until it answers.",
                    explain(probed, settings.server_url, bool(settings.api_key)))  # fmt: skip
    try:
        server.run()  # stdio
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
