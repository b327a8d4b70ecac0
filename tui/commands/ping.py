"""``qms-panel ping``: can the MCP server be reached from the host and from each agent container?

Runs :func:`core.doctor.run_doctor`: a TCP connect and the transport's handshake from the host,
and at the same time a probe inside every running agent container of this project (the engine
listed once). Exit 1 if any check fails.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from core.safe_text import safe_line
from tui.cli_common import EXIT_FAILED, EXIT_OK, print_json, settings_from_args
from tui.commands._timeout import add_timeout_argument

if TYPE_CHECKING:
    from core.doctor import DoctorReport, ProbeResult

NAME = "ping"
HELP = ("check the MCP server is reachable from the host, through the gateway, and from inside each agent "
        "container")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_timeout_argument(parser, 5.0, "per check")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _line(result: ProbeResult) -> str:
    """A check in one line (two when it failed: the diagnosis, which may quote a container's output)."""
    took = f"{result.latency_ms:.0f} ms" if result.latency_ms is not None else "-"
    via = f" via {result.tool}" if result.tool else ""
    verdict = "ok" if result.ok else "FAILED"
    head = f"{safe_line(result.where):<12} {verdict:<7} {took:>8}  {safe_line(result.target)} ({result.transport}{via})"
    return head if result.ok else f"{head}\n{'':<12} {safe_line(result.diagnosis or '')}"


def _print(report: DoctorReport) -> None:
    print(_line(report.host))
    gateway = report.gateway
    if gateway is not None and gateway.running:
        verdict = "ok" if gateway.ok else "FAILED"
        agents = ", ".join(gateway.agents) or "none"
        print(f"{'gateway':<12} {verdict:<7} {'':>8}  {safe_line(gateway.listen)} -> {safe_line(gateway.upstream)} "
              f"(upstream {gateway.upstream_state}; agents connected: {safe_line(agents)})")
        if not gateway.ok:
            print(f"{'':<12} {safe_line(gateway.diagnosis)}")
        if report.upstream is not None:
            print(_line(report.upstream.model_copy(update={"where": "upstream"})))
    elif gateway is not None:
        print(f"{'gateway':<12} {'none':<7} {'':>8}  {safe_line(gateway.diagnosis)}")
    for result in report.containers:
        print(_line(result))
    if report.engine_error:
        print(f"{'containers':<12} FAILED  {report.engine_error}")
    elif not report.containers:
        print(f"{'containers':<12} none running")
    if report.container_reach:
        print(f"{'containers':<12} WARNING  {safe_line(report.container_reach)}")


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
