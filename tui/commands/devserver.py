"""`qms-panel devserver`: run the QMS MCP development server on a project, or make the sample project."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.devserver.sample import init_project
from core.devserver.server import DEFAULT_IDENTITY_TTL, TRANSPORTS, run as run_server
from core.errors import ProjectError
from tui.cli_common import EXIT_OK, EXIT_USAGE, print_json
from tui.cli_output import report_error

NAME = "devserver"
HELP = "run a QMS MCP development server (or create a sample project with --init)"
USES_SETTINGS = False


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535; 0 picks a free one)")
    return value


def add_arguments(parser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--project-root", type=Path, metavar="PATH", help="the project to serve (must contain QMS/)")
    target.add_argument("--init", type=Path, metavar="PATH", help="create the sample project in PATH and exit")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1; 0.0.0.0 for containers)")
    parser.add_argument("--port", type=_port, default=8000, help="port (default: 8000; 0: a free one)")
    parser.add_argument("--transport", choices=TRANSPORTS, default="sse", help="sse (GET /sse) or streamable-http (/mcp)")
    parser.add_argument("--identity-ttl", type=_positive, default=DEFAULT_IDENTITY_TTL, metavar="SECONDS",
                        help=f"how long an enforced identity stays locked (default: {DEFAULT_IDENTITY_TTL:g})")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    if args.init:
        init_project(args.init)  # ProjectError: refused, exit 1
        root = args.init.resolve()
        if args.json:
            print_json({"ok": True, "project_root": str(root)})
        else:
            print(f"qms devserver: sample project created in {root}")
        return EXIT_OK

    def announce(url: str) -> None:
        if args.json:
            print_json({"transport": args.transport, "url": url, "project_root": str(args.project_root.resolve())})
        else:
            print(f"qms devserver: {args.transport} on {url} (project {args.project_root.resolve()})", flush=True)

    try:
        run_server(args.project_root, args.host, args.port, args.transport, args.identity_ttl, announce=announce)
    except ProjectError as err:  # a bad project root is a usage error (exit 2)
        return report_error(err, as_json=args.json, code=EXIT_USAGE)
    return EXIT_OK
