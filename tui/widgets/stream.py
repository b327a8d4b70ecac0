"""The live stream: the agents' calls and activity, MCP messages, Docker events and QMS audit
activity, one line each.

Lines arrive in bursts (a busy link sends a thousand messages a second), so the view draws only
the rows on screen (the Line API) from a bounded buffer, and the pane hands it lines in batches:
:meth:`StreamPane.push` queues a line and schedules one flush for all that queued meanwhile, at
most ``FLUSHES_PER_SECOND`` times a second (a quiet stream shows a line at once).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Iterable, Literal

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.cache import LRUCache
from textual.containers import Vertical
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Input, Static

from core.action_log import ActionRecord, SkippedLine
from core.safe_text import safe_line
from core.engine_events import EngineBack, EngineEvent, EngineLost
from core.gateway.events import ActivityEvent as AgentEvent
from core.gateway.events import FeedGap, GatewayState, McpEvent, PeerEvent, event_line, event_who, who_name
from core.mcp_stream import StreamEvent
from core.qms_watch import ActivityEvent
from tui.actions import bindings
from tui.formats import clock_time, short

Source = Literal["agents", "mcp", "docker", "qms", "ops", "beat", "activity"]
SOURCES: tuple[Source, ...] = ("agents", "mcp", "docker", "qms", "beat", "activity")  # the toggle keys 1..6
OPS: Source = "ops"  # the operator's actions, from the action log (shown; no toggle key yet)
HIDDEN: frozenset[str] = frozenset({"beat"})  # the panel's own link heartbeats: shown with their key
SOURCE_WIDTH = max(len(s) for s in (*SOURCES, OPS)) + 1  # the source column
DEFAULT_MAXLEN = 5000
FLUSHES_PER_SECOND = 20


@dataclass(frozen=True, slots=True)
class StreamLine:
    """One line of the stream; ``payload`` is what the detail view shows in full."""

    seq: int
    time: datetime
    source: Source
    agent: str
    summary: str
    payload: Any = None
    level: Literal["quiet", "info", "warning", "error"] = "info"

    def matches(self, needle: str) -> bool:
        return needle in self.summary.casefold() or needle in self.agent.casefold()

    def payload_text(self) -> str:
        if isinstance(self.payload, str):
            return self.payload
        return json.dumps(self.payload, indent=2, ensure_ascii=False, default=str)


# --- from core events to lines ------------------------------------------------------------


class LineMaker:
    """Turns core events into :class:`StreamLine`; remembers which agent each MCP request was for,
    so that its response carries the same agent."""

    def __init__(self) -> None:
        self._seq = 0
        self._request_agent: dict[Any, str] = {}

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def mcp(self, ev: StreamEvent) -> StreamLine:
        """From :class:`core.mcp_stream.StreamEvent`."""
        agent = "panel"
        payload = ev.payload
        if ev.kind == "request" and isinstance(payload, dict):
            user = ((payload.get("params") or {}).get("arguments") or {}).get("user")
            if user:
                agent = str(user)
                self._request_agent[ev.id] = agent
                if len(self._request_agent) > 1000:
                    self._request_agent.pop(next(iter(self._request_agent)))
        elif ev.kind in ("response", "error") and ev.id is not None:
            agent = self._request_agent.pop(ev.id, agent)
        elif ev.kind == "request" and ev.method == "ping":
            self._request_agent[ev.id] = "beat"
        arrow = "→" if ev.direction == "out" else "←"
        level = ("error" if ev.kind in ("error", "http-error", "transport-error")
                 else "quiet" if ev.kind.startswith("sse-") else "info")
        if isinstance(payload, dict) and (payload.get("result") or {}).get("isError"):
            level = "warning"
        beat = agent == "beat" or ev.method == "ping" or ev.kind.startswith("sse-")
        return StreamLine(self._next(), ev.time, "beat" if beat else "mcp", "panel" if beat else agent,
                          f"{arrow} {ev.summary}", payload, level)

    def gateway(self, ev: McpEvent | PeerEvent | GatewayState | AgentEvent | FeedGap | None) -> StreamLine | None:
        """From the gateway's feed: an agent's call (its answer carries the request), a peer, what an
        agent said about itself (:meth:`activity`), the gateway's state or a gap; None for what the
        answer line already says (the request)."""
        if isinstance(ev, AgentEvent):
            return self.activity(ev)
        if ev is None or (isinstance(ev, McpEvent) and (ev.direction == "in" or ev.outcome is None)):
            return None
        payload = ev.model_dump(mode="json")
        if isinstance(ev, (McpEvent, PeerEvent)):
            name = event_who(ev)
            text = event_line(ev)[len(name):].lstrip()
            failed = (isinstance(ev, McpEvent) and ev.outcome != "ok") or (isinstance(ev, PeerEvent)
                                                                           and ev.state == "refused")
            return StreamLine(self._next(), ev.time, "agents", safe_line(name), safe_line(text), payload,
                              "warning" if failed else "info")
        level = "warning" if isinstance(ev, FeedGap) or ev.upstream_state == "down" else "info"
        return StreamLine(self._next(), ev.time, "agents", "gateway", safe_line(event_line(ev)), payload, level)

    def activity(self, ev: AgentEvent) -> StreamLine:
        """From a :class:`core.gateway.events.ActivityEvent` (telemetry or a hook): its own source,
        the agent first; a warning for an API error or a permission prompt."""
        name = who_name(ev.who)
        kind = ev.attributes.get("notification_type", "")
        warn = "error" in ev.name.casefold() or kind == "permission_prompt"
        return StreamLine(self._next(), ev.time, "activity", safe_line(name), safe_line(event_line(ev)[len(name):].lstrip()),
                          ev.model_dump(mode="json"), "warning" if warn else "info")

    def docker(self, ev: EngineEvent) -> StreamLine:
        """From a :mod:`core.engine_events` event (container event, engine lost, engine back)."""
        payload = ev.model_dump(mode="json")
        if isinstance(ev, EngineLost):
            retry = f"; retry in {ev.retry_in:.0f} s" if ev.retry_in else ""
            return StreamLine(self._next(), ev.time, "docker", "engine",
                              f"engine unreachable: {ev.reason}{retry}", payload, "error")
        if isinstance(ev, EngineBack):
            return StreamLine(self._next(), ev.time, "docker", "engine",
                              f"engine back: {len(ev.containers)} container(s)", payload)
        action, code = ev.action, ev.exit_code
        text = f"{action} {ev.name}" + (f" (exit {code})" if code is not None else "")
        level = "error" if action in ("die", "oom") else "warning" if action == "kill" else "info"
        return StreamLine(self._next(), ev.time, "docker", ev.agent or "—", text, payload, level)

    def qms(self, ev: ActivityEvent) -> StreamLine:
        """From :class:`core.qms_watch.ActivityEvent` (one audit-trail line)."""
        payload = ev.model_dump(mode="json")
        text = f"{ev.event} {ev.doc_id}" + (f" v{ev.version}" if ev.version else "")
        return StreamLine(self._next(), ev.time, "qms", ev.user or "—", text, payload)

    def action(self, ev: ActionRecord | SkippedLine, when: datetime | None = None) -> StreamLine:
        """From :meth:`core.action_log.ActionLog.follow`: an operator's action (its intent, then its
        result), or a line of the log that is not a record (``when``: the clock's now, for those)."""
        if isinstance(ev, SkippedLine):
            return StreamLine(self._next(), when or datetime.now().astimezone(), OPS, "panel",
                              safe_line(f"action log {ev.path}: {ev.reason}"), ev.model_dump(mode="json"), "warning")
        payload = ev.model_dump(mode="json")
        if ev.phase == "intent":
            why = f" (reason: {ev.reason})" if ev.reason else ""
            text, level = f"{ev.operator.label()}: {ev.subject()}{why}", "info"
        else:
            said = f"{ev.result}: {ev.detail}" if ev.detail and ev.result != "ok" else ev.result
            level = ("info" if ev.result == "ok" else "warning" if ev.result in ("refused", "identity-locked")
                     else "error")
            text = f"{ev.subject()}: {said}"
        return StreamLine(self._next(), ev.ts, OPS, safe_line(ev.agent or "—"), safe_line(text), payload,
                          level)  # type: ignore[arg-type]

    def note(self, when: datetime, source: Source, agent: str, text: str, level: str = "info") -> StreamLine:
        return StreamLine(self._next(), when, source, agent, text, None, level)  # type: ignore[arg-type]


# --- the view -----------------------------------------------------------------------------


class StreamView(ScrollView, can_focus=True):
    """The lines that pass the filter, drawn a screen at a time; a cursor selects one."""

    BINDINGS = bindings("stream")

    COMPONENT_CLASSES = {
        "stream--time", "stream--agents", "stream--activity", "stream--mcp", "stream--docker", "stream--qms", "stream--ops", "stream--beat",
        "stream--agent",
        "stream--cursor", "stream--quiet", "stream--warning", "stream--error",
    }

    DEFAULT_CSS = """
    StreamView { height: 1fr; overflow-x: hidden; background: transparent; padding: 0 1; }
    StreamView > .stream--time { color: $text-muted; }
    StreamView > .stream--agents { color: $warning-lighten-1; text-style: bold; }
    StreamView > .stream--activity { color: $secondary-lighten-2; text-style: bold; }
    StreamView > .stream--mcp { color: $accent; text-style: bold; }
    StreamView > .stream--beat { color: $text-muted; }
    StreamView > .stream--docker { color: $primary; text-style: bold; }
    StreamView > .stream--qms { color: $success; text-style: bold; }
    StreamView > .stream--ops { color: $secondary; text-style: bold; }
    StreamView > .stream--agent { color: $foreground; }
    StreamView > .stream--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    StreamView > .stream--quiet { color: $text-muted; }
    StreamView > .stream--warning { color: $warning; }
    StreamView > .stream--error { color: $error; }
    """

    @dataclass
    class PayloadRequested(Message):
        line: StreamLine

    @dataclass
    class SourceToggled(Message):
        source: Source

    @dataclass
    class FilterCleared(Message):
        pass

    def __init__(self, maxlen: int = DEFAULT_MAXLEN, **kwargs) -> None:
        super().__init__(**kwargs)
        self.maxlen = maxlen
        self._all: deque[StreamLine] = deque(maxlen=maxlen)
        self._visible: deque[StreamLine] = deque(maxlen=maxlen)
        self._needle = ""
        self._sources: frozenset[str] = frozenset((*SOURCES, OPS)) - HIDDEN
        self.cursor = -1  # index in the visible lines; -1: none yet
        self.following = True  # the cursor sits on the newest line and moves with it
        self.tz: tzinfo | None = None
        self._cache: LRUCache[tuple, Strip] = LRUCache(1024)
        self._styles: dict[str, Style] = {}

    # --- content ---

    @property
    def total(self) -> int:
        return len(self._all)

    @property
    def shown(self) -> int:
        return len(self._visible)

    @property
    def selected(self) -> StreamLine | None:
        return self._visible[self.cursor] if 0 <= self.cursor < len(self._visible) else None

    def lines(self) -> list[StreamLine]:
        """The visible lines, oldest first."""
        return list(self._visible)

    def _passes(self, line: StreamLine) -> bool:
        return line.source in self._sources and (not self._needle or line.matches(self._needle))

    def add(self, lines: Iterable[StreamLine]) -> None:
        before = len(self._visible)
        passed = 0
        for line in lines:
            self._all.append(line)
            if self._passes(line):
                self._visible.append(line)
                passed += 1
        if not passed:
            return
        if self.following:
            self.cursor = len(self._visible) - 1
        else:
            dropped = before + passed - len(self._visible)  # fell off the front: the cursor moves up
            if dropped:
                self.cursor = max(0, self.cursor - dropped)
                self.scroll_to(y=max(0, self.scroll_offset.y - dropped), animate=False, immediate=True)
        self._resize()
        if self.following:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)
            self.call_after_refresh(self._follow_end)  # the new size may not be laid out yet
        self.refresh()

    def _follow_end(self) -> None:
        if self.following:
            self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)

    def set_filter(self, needle: str | None = None, sources: Iterable[str] | None = None) -> None:
        if needle is not None:
            self._needle = needle.strip().casefold()
        if sources is not None:
            self._sources = frozenset(sources)
        keep = self.selected
        self._visible = deque((line for line in self._all if self._passes(line)), maxlen=self.maxlen)
        self.cursor = len(self._visible) - 1
        if keep is not None and not self.following:
            found = next((i for i, line in enumerate(self._visible) if line.seq == keep.seq), None)
            if found is not None:
                self.cursor = found
        self._resize()
        self._show_cursor()
        self.refresh()

    @property
    def needle(self) -> str:
        return self._needle

    @property
    def sources(self) -> frozenset[str]:
        return self._sources

    def _resize(self) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width, len(self._visible))

    def on_resize(self) -> None:
        self._cache.clear()
        self._resize()

    # --- drawing ---

    def render_line(self, y: int) -> Strip:
        index = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        if not 0 <= index < len(self._visible):
            return Strip.blank(width, self.rich_style)
        line = self._visible[index]
        cursor = index == self.cursor and self.has_focus
        key = (line.seq, width, cursor)
        strip = self._cache.get(key)
        if strip is None:
            strip = self._strip(line, width, cursor)
            self._cache[key] = strip
        return strip

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(name)
        return style

    def _strip(self, line: StreamLine, width: int, cursor: bool) -> Strip:
        base = self.rich_style
        style = self._style
        text_style = style(f"stream--{line.level}") if line.level != "info" else Style()
        segments = [
            Segment(clock_time(line.time, self.tz).ljust(9), style("stream--time")),
            Segment(line.source.ljust(SOURCE_WIDTH), style(f"stream--{line.source}")),
            Segment(short(line.agent, 10).ljust(11), style("stream--agent")),
            Segment(short(line.summary, max(width - 20 - SOURCE_WIDTH, 1)), text_style),
        ]
        strip = Strip(segments).adjust_cell_length(width).apply_style(base)
        if cursor:
            strip = strip.apply_style(style("stream--cursor"))
        return strip

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()
        self._styles.clear()

    def _on_focus(self, event: events.Focus) -> None:
        self._cache.clear()
        self.refresh()

    def _on_blur(self, event: events.Blur) -> None:
        self._cache.clear()
        self.refresh()

    # --- cursor ---

    def _move(self, to: int) -> None:
        if not self._visible:
            return
        self.cursor = max(0, min(to, len(self._visible) - 1))
        self.following = self.cursor == len(self._visible) - 1
        self._show_cursor()
        self.refresh()

    def _show_cursor(self) -> None:
        if self.cursor >= 0:
            self.scroll_to_region(Region(0, self.cursor, 1, 1), animate=False, immediate=True)

    def action_cursor_up(self) -> None:
        self._move(self.cursor - 1)

    def action_cursor_down(self) -> None:
        self._move(self.cursor + 1)

    def action_page_up(self) -> None:
        self._move(self.cursor - max(self.scrollable_content_region.height - 1, 1))

    def action_page_down(self) -> None:
        self._move(self.cursor + max(self.scrollable_content_region.height - 1, 1))

    def action_first(self) -> None:
        self._move(0)

    def action_last(self) -> None:
        self._move(len(self._visible) - 1)

    def action_show_payload(self) -> None:
        if self.selected is not None:
            self.post_message(self.PayloadRequested(self.selected))

    def action_toggle_source(self, source: Source) -> None:
        self.post_message(self.SourceToggled(source))

    def action_clear_filter(self) -> None:
        self.post_message(self.FilterCleared())

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None:
            self._move(self.scroll_offset.y + offset.y)


# --- the pane -----------------------------------------------------------------------------


class StreamPane(Vertical):
    """The stream view with its filter box and a status line (counts, sources, paused)."""

    DEFAULT_CSS = """
    StreamPane { border: round $panel-lighten-2; border-title-color: $text-muted; height: 1fr; }
    StreamPane:focus-within { border: round $accent; border-title-color: $accent; }
    StreamPane > Input { display: none; height: 1; border: none; padding: 0 1; margin: 0; }
    StreamPane > Input.-shown { display: block; }
    StreamPane > #stream-status { height: 1; padding: 0 1; color: $text-muted; }
    StreamPane.-paused { border: round $warning; }
    """

    paused: reactive[bool] = reactive(False)

    @dataclass
    class PayloadRequested(Message):
        line: StreamLine

    def __init__(self, maxlen: int = DEFAULT_MAXLEN, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Live stream"
        self._maxlen = maxlen
        self._pending: deque[StreamLine] = deque(maxlen=maxlen)
        self._flush_scheduled = False
        self._last_flush = 0.0
        self._mounted = False
        self._status: Text | None = None

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter the stream (enter: done, esc: clear)", id="stream-filter")
        yield StreamView(self._maxlen, id="stream-view")
        yield Static(id="stream-status")

    @property
    def view(self) -> StreamView:
        return self.query_one(StreamView)

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = not getattr(self.app, "still", False)
        self._mounted = True
        self.flush()  # what was pushed before the pane was up

    def set_tz(self, tz: tzinfo | None) -> None:
        self.view.tz = tz

    # --- feeding ---

    @property
    def pending(self) -> int:
        """Lines queued and not shown yet (waiting for the next flush, or paused)."""
        return len(self._pending)

    def push(self, line: StreamLine) -> None:
        """Queue ``line``; the pane shows everything queued in one go, soon."""
        self._pending.append(line)
        if not self._flush_scheduled:  # paused: the flush only counts what waits
            self._flush_scheduled = True
            wait = self._last_flush + 1 / FLUSHES_PER_SECOND - time.monotonic()
            if wait > 0:
                self.set_timer(wait, self.flush)
            else:
                self.call_later(self.flush)

    def extend(self, lines: Iterable[StreamLine]) -> None:
        for line in lines:
            self.push(line)

    def flush(self) -> None:
        self._flush_scheduled = False
        self._last_flush = time.monotonic()
        if self.paused or not self._pending or not self._mounted:
            self._update_status()
            return
        batch = list(self._pending)
        self._pending.clear()
        self.view.add(batch)
        self._update_status()

    # --- controls ---

    def toggle_pause(self) -> None:
        self.paused = not self.paused

    def watch_paused(self, paused: bool) -> None:
        self.set_class(paused, "-paused")
        if not paused:
            self.flush()
        self._update_status()

    def start_filter(self) -> None:
        box = self.query_one(Input)
        box.add_class("-shown")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.view.set_filter(needle=event.value)
        self._update_status()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value:
            event.input.remove_class("-shown")
        self.view.focus()

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape" and self.query_one(Input).has_focus:
            event.stop()
            self._clear_filter()

    def _clear_filter(self) -> None:
        box = self.query_one(Input)
        box.value = ""
        box.remove_class("-shown")
        self.view.set_filter(needle="")
        self.view.focus()
        self._update_status()

    def on_stream_view_filter_cleared(self, event: StreamView.FilterCleared) -> None:
        event.stop()
        self._clear_filter()

    def on_stream_view_source_toggled(self, event: StreamView.SourceToggled) -> None:
        event.stop()
        self.toggle_source(event.source)

    def toggle_source(self, source: Source) -> None:
        sources = set(self.view.sources) ^ {source}
        self.view.set_filter(sources=sources)
        self._update_status()

    def on_stream_view_payload_requested(self, event: StreamView.PayloadRequested) -> None:
        event.stop()
        self.post_message(self.PayloadRequested(event.line))

    def _update_status(self) -> None:
        if not self._mounted:
            return
        view = self.view
        text = Text()
        text.append(f"{view.shown:,}/{view.total:,} lines", style="")
        text.append("  sources ", style="dim")
        for i, source in enumerate(SOURCES, 1):
            on = source in view.sources
            text.append(f"{i}:{source}", style="bold" if on else "dim strike")
            text.append(" ")
        if view.needle:
            text.append(f" filter {view.needle!r}", style="bold")
        if self.paused:
            text.append(f"  ⏸ paused ({len(self._pending):,} new; space resumes)", style="bold yellow")
        status = self.query_one("#stream-status", Static)
        if text != self._status:
            self._status = text
            status.update(text, layout=False)  # one line, always: no layout needed
