"""The status bar: the MCP link, the Docker engine, any feed that is down, and the project root, on one line."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from core.container_board import EngineView
from core.gateway.calls_board import GatewayView
from core.link_state import LinkState
from tui.formats import clock_time, short


def link_text(link: LinkState | None) -> Text:
    """``● connected sse 12 ms`` from a LinkState (None: not started)."""
    if link is None:
        return Text.assemble(("● ", "dim"), ("starting", "dim"))
    status = link.status
    colour = {"connected": "green", "connecting": "yellow", "down": "red"}.get(status, "dim")
    parts: list[tuple[str, str] | str] = [(f"● {status}", f"bold {colour}")]
    if link.transport:
        parts.append(f" {link.transport}")
    if status == "connected" and link.latency_ms is not None:
        parts.append(f" {link.latency_ms:.0f} ms")
    if status == "down" and link.reason:
        parts.append((f" {short(link.reason, 48)}", colour))
    if status == "connecting" and link.attempt:
        parts.append((f" attempt {link.attempt}", "dim"))
    return Text.assemble(*parts)


def engine_text(engine: EngineView) -> Text:
    if engine.status == "up":
        return Text.assemble(("● up", "bold green"), (f" {short(engine.version, 24)}" if engine.version else "", ""))
    if engine.status == "down":
        retry = f", retry in {engine.retry_in:.0f} s" if engine.retry_in else ""
        return Text.assemble(("● unreachable", "bold red"), (f"{retry}", "red"))
    return Text("● checking", style="dim")


def gateway_text(gateway: GatewayView, feed_down: bool) -> Text:
    """``● 172.17.0.1:8000 → up · 3 agents`` from the gateway's feed (the upstream's URL is in
    ``qms-panel ping``; the header has one line)."""
    state = gateway.state
    if feed_down or state is None:
        return Text("● not running" if state is None else "● feed down", style="dim" if state is None else "bold red")
    colour = {"up": "green", "down": "red"}.get(state.upstream_state, "yellow")
    agents = len(state.agents)
    return Text.assemble(("● ", f"bold {colour}"), (short(state.listen, 40), ""), (" → upstream", "dim"),
                         (f" {state.upstream_state}", f"bold {colour}"),
                         (f" · {agents} agent{'s' if agents != 1 else ''}", "dim"))


class StatusBar(Widget):
    """One line at the top: ``qms-panel │ MCP … │ Docker … │ [feeds down │] root``."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        dock: top;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    """

    link: reactive[LinkState | None] = reactive(None)
    engine: reactive[EngineView] = reactive(EngineView)
    feeds_down: reactive[tuple[str, ...]] = reactive(tuple)  # names of the live feeds that are down
    high_drift: reactive[tuple[str, ...]] = reactive(tuple)  # containers with a high-severity audit finding
    project_root: reactive[str] = reactive("")
    gateway: reactive[GatewayView] = reactive(GatewayView)
    now: reactive[datetime | None] = reactive(None)

    def render(self) -> Text:
        sep = (" │ ", "dim")
        clock = clock_time(self.now, self.now.tzinfo if self.now else None)
        line = Text.assemble(
            ("qms-panel", "bold"), sep,
            ("MCP ", "bold"), link_text(self.link), sep,
            ("Docker ", "bold"), engine_text(self.engine), sep,
            ("Gateway ", "bold"), gateway_text(self.gateway, "gateway feed" in self.feeds_down), sep,
        )
        down = [name for name in self.feeds_down if name != "gateway feed"]  # said in the gateway's part
        if down:
            line.append_text(Text.assemble((f"⚠ down: {', '.join(down)}", "bold red"), sep))
        if self.high_drift:
            names = ", ".join(short(name, 40) for name in self.high_drift)
            line.append_text(Text.assemble((f"⚠ HIGH drift: {names}", "bold white on red"), sep))
        line.append(short(self.project_root, 200))
        width = self.content_region.width
        if clock and width > line.cell_len + len(clock) + 1:
            line.append(" " * (width - line.cell_len - len(clock)))
            line.append(clock, style="dim")
        return line
