"""``python -m core.devserver``: serve a project, or make the sample project (``--init``).

Prints one line once it listens (``qms devserver: sse on http://127.0.0.1:8000/sse (project /x)``).
Errors are one line on stderr: exit 2 for a bad project root, 1 for a refusal (port in use).
"""

import argparse
import sys
from pathlib import Path

from core.devserver.sample import init_project
from core.devserver.server import DEFAULT_IDENTITY_TTL, TRANSPORTS, run
from core.errors import ProjectError, QmsPanelError


def listening_line(transport: str, url: str, project_root: Path) -> str:
    return f"qms devserver: {transport} on {url} (project {Path(project_root).resolve()})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.devserver", description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--project-root", type=Path, help="the project to serve (must contain QMS/)")
    target.add_argument("--init", type=Path, metavar="PATH", help="create the sample project in PATH and exit")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--transport", choices=TRANSPORTS, default="sse")
    parser.add_argument("--identity-ttl", type=float, default=DEFAULT_IDENTITY_TTL, metavar="SECONDS")
    parser.add_argument("--stateful", action="store_true", help="streamable HTTP with MCP sessions (the real "
                        "server is stateless)")
    args = parser.parse_args(argv)
    try:
        if args.init:
            init_project(args.init)
            print(f"qms devserver: sample project created in {args.init.resolve()}")
            return 0
        run(args.project_root, args.host, args.port, args.transport, args.identity_ttl,
            announce=lambda url: print(listening_line(args.transport, url, args.project_root), flush=True),
            stateful=args.stateful)
        return 0
    except ProjectError as err:
        print(f"qms devserver: {err}", file=sys.stderr)
        return 1 if args.init else 2
    except QmsPanelError as err:
        print(f"qms devserver: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
