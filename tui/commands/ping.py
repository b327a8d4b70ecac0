"""``qms-panel ping``: can the MCP server be reached from the host and from each agent container?

Runs :func:`core.doctor.run_doctor`: a TCP connect and the transport's handshake from the host,
then a probe inside every running agent container. Exit 1 if any check fails.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tui.cli_common import EXIT_FAILED, EXIT_OK, print_json, settings_from_args

if TYPE_CHECKING:
    from core.doctor import DoctorReport, ProbeResult

NAME = "ping"
HELP = "check the MCP server is reachable from the host and from inside each agent container"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="per check (default: 5)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _line(result: ProbeResult) -> str:
    took = f"{result.latency_ms:.0f} ms" if result.latency_ms is not None else "-"
    via = f" via {result.tool}" if result.tool else ""
    verdict = "ok" if result.ok else "FAILED"
    head = f"{result.where:<12} {verdict:<7} {took:>8}  {result.target} ({result.transport}{via})"
    return head if result.ok else f"{head}\n{'':<12} {result.diagnosis}"


def _print(report: DoctorReport) -> None:
    print(_line(report.host))
    for result in report.containers:
        print(_line(result))
    if report.engine_error:
        print(f"{'containers':<12} FAILED  {report.engine_error}")
    elif not report.containers:
        print(f"{'containers':<12} none running")


def run(args: argparse.Namespace) -> int:
    import anyio

    from core.services import build_services
    from core.doctor import run_doctor

    settings = settings_from_args(args)
    report = anyio.run(lambda: run_doctor(settings, build_services(settings).containers, timeout=args.timeout))
    if args.json:
        print_json(report)
    else:
        _print(report)
    return EXIT_OK if report.ok else EXIT_FAILED
