"""The status bar: the MCP link (where, and its state), the Docker engine, the gateway (where agents
reach it, and its upstream), any feed that is down, and the project root; one line where it fits,
wrapped where it does not. URLs arrive redacted (``LinkState.url``, ``GatewayState.upstream``)."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from core.container_board import EngineView
from core.gateway.calls_board import GatewayView
from core.link_state import LinkState
from tui.formats import clock_time, short


def where(url: str, width: int = 40) -> str:
    """A URL as the header says it: without ``http://``, on one safe line (credentials are
    already ``***``)."""
    return short(url.removeprefix("http://"), width)


def link_text(link: LinkState | None) -> Text:
    """``127.0.0.1:8000/sse ● connected sse 12 ms`` from a LinkState (None: not started)."""
    if link is None:
        return Text.assemble(("● ", "dim"), ("starting", "dim"))
    status = link.status
    colour = {"connected": "green", "connecting": "yellow", "down": "red"}.get(status, "dim")
    parts: list[tuple[str, str] | str] = [(f"{where(link.url)} ", "") if link.url else "",
                                          (f"● {status}", f"bold {colour}")]
    if link.transport and not link.url:
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
    """``● 172.17.0.1:8000 → 127.0.0.1:8001/mcp up · 3 agents`` from the gateway's feed: where
    agents reach it, and the server behind it (redacted by the gateway)."""
    state = gateway.state
    if feed_down or state is None:
        return Text("● not running" if state is None else "● feed down", style="dim" if state is None else "bold red")
    colour = {"up": "green", "down": "red"}.get(state.upstream_state, "yellow")
    agents = len(state.agents)
    return Text.assemble(("● ", f"bold {colour}"), (short(state.listen, 40), ""), (" → ", "dim"), (where(state.upstream) if state.upstream else "upstream", ""),
                         (f" {state.upstream_state}", f"bold {colour}"),
                         (f" · {agents} agent{'s' if agents != 1 else ''}", "dim"))


class StatusBar(Widget):
    """At the top: ``MCP … │ Docker … │ Gateway … │ [feeds down │] root``."""

    DEFAULT_CSS = """
    StatusBar {
        height: auto;
        max-height: 3;
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
        width = self.content_region.width
        root = short(self.project_root, 200)
        room = width - line.cell_len  # the root takes what is left of the line, the clock what is left then
        if len(root) > room and room >= 12:
            root = "…" + root[-(room - 1):]  # its end says which project
        line.append(root)
        if clock and width > line.cell_len + len(clock) + 1:
            line.append(" " * (width - line.cell_len - len(clock)))
            line.append(clock, style="dim")
        return line
