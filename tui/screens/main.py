"""The main screen: the four panes and the status bar. It decides what a key means for the
highlighted row of the focused pane (said on the target line above the footer, and asked first
where it should); the app carries the work out.

A terminal smaller than :data:`FULL_SIZE` shows one pane at a time (the focused one fills the
screen, the pane strip names the others, ``tab`` moves on); a larger one shows all four, and
``z`` zooms the focused pane."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import var
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from core.access_audit import ContainerAudit
from core.audit_rows import Severity
from core.container_board import EngineView
from core.containers import ContainerRow
from core.doctor import ProbeResult
from core.errors import QmsPanelError
from core.gateway.calls_board import GatewayView
from core.link_state import LinkState
from core.qms_ops import check_doc_id, checkout_warning
from core.qms_state import CheckoutRow
from tui.actions import bindings
from tui.screens.confirm import Confirmation, ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.input_dialog import InputScreen
from tui.screens.payload import PayloadScreen
from tui.widgets.containers import ContainersPane
from tui.formats import plain, safe_rich, since, size, stamp
from tui.widgets.matrix import MatrixPane
from tui.widgets.pane_tabs import PANE_NAMES, PaneTabs
from tui.widgets.status_bar import StatusBar
from tui.widgets.stream import StreamPane
from tui.widgets.target_line import Targets, TargetLine
from tui.widgets.workspace import WorkspacePane, state_of

PANES = tuple(pane for pane, _ in PANE_NAMES)  # the panes' ids, in tab order
FULL_SIZE = (140, 36)  # the smallest terminal (columns, rows) that shows every pane at once
CONTAINER_PANES = ("containers", "matrix")  # panes whose highlighted row is an agent (r s l t o)


class MainScreen(Screen[None]):
    BINDINGS = bindings("main")
    ALLOW_IN_MAXIMIZED_VIEW = "#header, #bottom"
    ESCAPE_TO_MINIMIZE = False  # esc clears the stream's filter; z (or the size) decides the layout

    # state, set by the app from the boards' views and the checks; the panes are bound to it
    containers: var[list[ContainerRow]] = var(list)
    agents: var[list[str]] = var(list)
    probes: var[dict[str, ProbeResult]] = var(dict)
    inbox: var[dict[str, int]] = var(dict)
    busy: var[dict[str, str]] = var(dict)
    engine: var[EngineView] = var(EngineView)
    feeds_down: var[tuple[str, ...]] = var(tuple)
    high_drift: var[tuple[str, ...]] = var(tuple)  # containers whose audit found a high-severity drift
    link: var[LinkState | None] = var(None)
    link_down: var[str] = var("")
    checkouts: var[list[CheckoutRow]] = var(list)
    scan_warnings: var[int] = var(0)
    scanned: var[bool] = var(False)
    audits: var[dict[str, ContainerAudit]] = var(dict)  # agent (or container name) -> its audit
    auditing: var[bool] = var(False)
    audited_at: var[datetime | None] = var(None)
    now: var[datetime | None] = var(None)
    project_root: var[str] = var("")
    selected_agent: var[str | None] = var(None)
    gateway: var[GatewayView] = var(GatewayView)  # the agents' calls, from the gateway's feed
    compact: var[bool] = var(False)  # the terminal is smaller than FULL_SIZE: one pane at a time
    zoomed: var[bool] = var(False)  # z: the focused pane alone, on a full-size terminal
    pane: var[str] = var("containers")  # the pane that has focus (or had it last)

    def compose(self) -> ComposeResult:
        S = MainScreen
        with Vertical(id="header"):
            yield StatusBar().data_bind(S.link, S.engine, S.feeds_down, S.high_drift, S.now, S.project_root,
                                        S.gateway)
            yield PaneTabs().data_bind(current=S.pane)
        with Horizontal(id="top"):
            yield ContainersPane(id="containers").data_bind(
                S.agents, S.probes, S.inbox, S.busy, S.engine, S.now, S.gateway, rows=S.containers)
            yield MatrixPane(id="matrix").data_bind(S.auditing, S.audited_at, S.engine)
        yield WorkspacePane(id="workspace").data_bind(
            S.link_down, S.scanned, S.now, S.gateway, rows=S.checkouts, warnings=S.scan_warnings)
        yield StreamPane(id="stream")
        with Vertical(id="bottom"):
            yield TargetLine()
            yield Footer()

    def on_mount(self) -> None:
        self.stream.set_tz(self.now.tzinfo if self.now else None)
        self.query_one(ContainersPane).focus()
        self._update_matrix()
        self._update_targets()

    # --- layout: every pane at once, or one at a time ---

    def on_resize(self, event: events.Resize) -> None:
        self.compact = event.size.width < FULL_SIZE[0] or event.size.height < FULL_SIZE[1]

    def watch_compact(self) -> None:
        self._layout()

    def watch_zoomed(self) -> None:
        self._layout()

    def watch_pane(self) -> None:
        self._layout()
        self._update_targets()

    def watch_maximized(self, maximized: Widget | None) -> None:
        """Textual's own Minimize (palette) on a small terminal: the layout puts the pane back."""
        if maximized is None and (self.compact or self.zoomed):
            self.zoomed = False
            self.call_later(self._layout)

    def _layout(self) -> None:
        if not self.is_mounted:
            return
        alone = self.compact or self.zoomed
        target = self.query_one(f"#{self.pane}") if alone else None
        if self.maximized is not target:
            self.maximized = target
        self.query_one(PaneTabs).hint = "tab: next pane" + ("" if self.compact else " · z: every pane")

    def pane_of(self, widget: Widget | None) -> str | None:
        """The id of the pane ``widget`` sits in (None: in no pane)."""
        for node in (widget, *(widget.ancestors if widget is not None else ())):
            if isinstance(node, Widget) and node.id in PANES:
                return node.id
        return None

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        pane = self.pane_of(event.widget)
        if pane is not None:
            self.pane = pane
        self._update_targets()

    def focus_pane(self, pane: str) -> None:
        """Give ``pane`` the focus (shown alone when the layout shows one at a time)."""
        self.pane = pane
        if pane == "stream":
            self.stream.view.focus()
        else:
            self.query_one(f"#{pane}").focus()

    def _step_pane(self, step: int) -> None:
        self.focus_pane(PANES[(PANES.index(self.pane) + step) % len(PANES)])

    def action_next_pane(self) -> None:
        self._step_pane(1)

    def action_previous_pane(self) -> None:
        self._step_pane(-1)

    def action_zoom(self) -> None:
        if self.compact:
            self.notify("This terminal is small: the panes show one at a time (tab moves on). From "
                        f"{FULL_SIZE[0]}x{FULL_SIZE[1]} up, all four show and z zooms one.", title="One pane at a time")
            return
        self.zoomed = not self.zoomed

    # --- parts ---

    @property
    def stream(self) -> StreamPane:
        return self.query_one(StreamPane)

    @property
    def workspace(self) -> WorkspacePane:
        return self.query_one(WorkspacePane)

    @property
    def containers_pane(self) -> ContainersPane:
        return self.query_one(ContainersPane)

    def container_row(self, agent: str | None) -> ContainerRow | None:
        return next((r for r in self.containers if r.agent == agent or (not r.agent and r.name == agent)), None)

    # --- state to panes ---

    def watch_link(self, link: LinkState | None) -> None:
        down = link is not None and link.status == "down"
        self.link_down = (link.reason or "no answer") if down else ""

    def watch_now(self, old: datetime | None, now: datetime | None) -> None:
        """The stream follows the clock's time zone (set once, not on every tick)."""
        if now is not None and self.is_mounted and (old is None or old.tzinfo != now.tzinfo):
            self.stream.set_tz(now.tzinfo)

    def watch_selected_agent(self) -> None:
        self._update_matrix()

    def watch_audits(self) -> None:
        self.high_drift = tuple(sorted(audit.container for audit in self.audits.values()
                                       if audit.severity is Severity.HIGH))
        self._update_matrix()

    def watch_containers(self) -> None:
        self._update_matrix()

    def _update_matrix(self) -> None:
        if not self.is_mounted:
            return
        matrix = self.query_one(MatrixPane)
        agent = self.selected_agent
        matrix.agent = agent
        try:
            matrix.rules = tuple(self.app.services.layout(agent).rules) if agent else ()
        except QmsPanelError:  # a container made by hand, named but not an agent id
            matrix.rules = ()
        matrix.audit = self.audits.get(agent)
        row = self.container_row(agent)
        matrix.container_state = row.state if row is not None else None

    def on_containers_pane_selected(self, event: ContainersPane.Selected) -> None:
        self.selected_agent = event.agent
        self._update_targets()

    def on_workspace_pane_selected(self, event: WorkspacePane.Selected) -> None:
        self._update_targets()

    def watch_busy(self) -> None:
        self._update_targets()

    # --- the target line: what the keys would act on now ---

    def _update_targets(self) -> None:
        if self.is_mounted:
            self.query_one(TargetLine).targets = self.targets()

    def targets(self) -> Targets:
        """What each key of the focused pane does to its highlighted row, in words."""
        if self.pane in CONTAINER_PANES:
            agent, row = self._selected_container()
            if agent is None:
                return (("r s l t o", "act on the highlighted agent: none yet"),)
            if row is None:
                return (("s", f"launch {agent}"), ("o", f"check out for {agent}"))
            if not row.managed:
                return (("r s l t", f"{row.name} is not qms-panel's: left alone"),)
            if agent in self.busy:
                return (("r s l t", f"{agent} is {self.busy[agent]}"), ("o", f"check out for {agent}"))
            running = row.state == "running"
            return (("r", f"restart {agent}"), ("s", f"{'stop' if running else 'start'} {agent}"),
                    ("l", f"logs of {agent}"), ("t", f"terminal of {agent}" if running else f"no terminal ({row.state})"),
                    ("o", f"check out for {agent}"))
        if self.pane == "workspace":
            doc = self.workspace.selected
            if doc is None:
                return (("c R", "act on the highlighted document: none"),)
            state, holder = state_of(doc), doc.holder or "?"
            if state == "missing-copy":
                return (("R", f"repair {doc.doc_id} ({holder})"), ("c", "no copy to check in: R repairs"))
            if state == "unmanaged":
                return (("c", f"{doc.doc_id} is not checked out: nothing to check in"),)
            if state == "unsafe":
                return (("c R", f"{doc.doc_id}'s copy is unsafe: refused"),)
            return (("c", f"check in {doc.doc_id} ({holder})"),)
        return (("enter", "the highlighted line's payload"), ("/", "filter"), ("space", "pause or resume"),
                ("1-6", "show or hide a source"))

    def _wrong_pane(self, key: str, what: str, panes: tuple[str, ...]) -> bool:
        """True (and said) when the focused pane is not one of ``panes``: a key acts only on the
        highlighted row of the pane that has focus."""
        if self.pane in panes:
            return False
        names = dict(PANE_NAMES)
        where = " or ".join(names[p] for p in panes)
        self.notify(f"{key} {what} highlighted in the {where} pane: tab to it first.", title=f"{key}: wrong pane",
                    markup=False)
        return True

    def on_stream_pane_payload_requested(self, event: StreamPane.PayloadRequested) -> None:
        self.app.push_screen(PayloadScreen(event.line, self.now.tzinfo if self.now else None))

    # --- containers ---

    def _selected_container(self) -> tuple[str | None, ContainerRow | None]:
        agent = self.containers_pane.selected_agent
        return agent, self.container_row(agent)

    def _need_container(self, doing: str) -> tuple[str, ContainerRow] | None:
        agent, row = self._selected_container()
        if agent is None:
            self.notify("Select an agent in the containers pane first.", title=f"Nothing to {doing}")
            return None
        if row is None:
            self.notify(f"{agent} has no container: press s to launch one.",
                        title=f"Nothing to {doing}", severity="warning", markup=False)
            return None
        if not row.managed:
            self.notify(f"{row.name} was not made by qms-panel; the panel leaves it alone.",
                        title=f"Will not {doing}", severity="warning", markup=False)
            return None
        if agent in self.busy:
            self.notify(f"{agent} is {self.busy[agent]}; wait for it to finish.", title=f"Cannot {doing} yet")
            return None
        return agent, row

    def action_restart(self) -> None:
        if self._wrong_pane("r", "restarts the agent", CONTAINER_PANES):
            return
        found = self._need_container("restart")
        if found:
            self.app.operations.container("restart", found[0])

    def action_start_stop(self) -> None:
        if self._wrong_pane("s", "starts or stops the agent", CONTAINER_PANES):
            return
        agent, row = self._selected_container()
        if agent is not None and row is None and agent not in self.busy:
            self.app.operations.container("launch", agent)  # no container yet: make it, as `qms-panel launch` would
            return
        found = self._need_container("start or stop")
        if not found:
            return
        agent, row = found
        if row.state != "running":
            self.app.operations.container("start", agent)
            return
        body = Text.assemble(
            ("Stop ", ""), (agent, "bold"), (f"'s container {row.name}?\n\n", ""),
            "The agent gets SIGTERM, then SIGKILL after the grace period. Its workspace and its "
            "/projects volume are kept; press s again to start it.",
        )

        def stop(answer: Confirmation | None) -> None:
            if answer:
                self.app.operations.container("stop", agent, answer.reason)

        self.app.push_screen(ConfirmScreen(f"Stop {agent}", body, confirm="Stop", danger=True, reason=True,
                                           blink=not self.app.still), stop)

    def action_logs(self) -> None:
        if self._wrong_pane("l", "follows the logs of the agent", CONTAINER_PANES):
            return
        agent, row = self._selected_container()
        if row is None:
            self.notify("Select an agent that has a container.", title="No logs")
            return
        self.app.open_logs(agent, row.name)

    def action_terminal(self) -> None:
        """Hand this terminal to the selected agent's tmux session (the app suspends meanwhile)."""
        if self._wrong_pane("t", "opens the terminal of the agent", CONTAINER_PANES):
            return
        found = self._need_container("attach to")
        if not found:
            return
        agent, row = found
        if row.state != "running":
            self.notify(f"{row.name} is {row.state}: its session runs only while the container runs (s starts it).",
                        title="No terminal to open", severity="warning", markup=False)
            return
        self.app.open_terminal(agent, row.name)

    # --- documents ---

    def _need_link(self, doing: str) -> bool:
        if self.link_down or self.link is None or self.link.status != "connected":
            reason = self.link_down or "not connected yet"
            self.notify(f"The MCP link is down ({reason}): nothing was done. {doing.capitalize()} needs the link; "
                        "try again once it reconnects.",
                        title="MCP link down", severity="warning", markup=False)
            return False
        return True

    def action_checkin(self) -> None:
        if self._wrong_pane("c", "checks in the document", ("workspace",)):
            return
        row = self.workspace.selected
        if row is None:
            self.notify("Select a document in the workspace pane first.", title="Nothing to check in")
            return
        state = state_of(row)
        if state == "unmanaged":
            self.notify(f"{row.doc_id} in {row.holder}'s workspace is not checked out to them; there is "
                        "nothing to check in.", title="Not checked out", severity="warning", markup=False)
            return
        if state == "missing-copy":
            self.notify(f"{row.doc_id}'s workspace copy is missing, so a checkin would fail. Press R to repair.",
                        title="Workspace copy missing", severity="warning", markup=False)
            return
        if not self._need_link("checkin"):
            return
        holder_row = self.container_row(row.holder)
        running = holder_row is not None and holder_row.state == "running"
        body = checkin_body(row, self.now, running, Path(self.project_root))

        def go(answer: Confirmation | None) -> None:
            if answer:
                self.app.operations.document("checkin", row.doc_id, row.holder, answer.reason)

        self.app.push_screen(ConfirmScreen(f"Check in {row.doc_id} for {row.holder}", body, confirm="Check in",
                                           reason=True, blink=not self.app.still), go)

    def action_repair(self) -> None:
        if self._wrong_pane("R", "repairs the document", ("workspace",)):
            return
        row = self.workspace.selected
        if row is None or state_of(row) != "missing-copy":
            self.notify("Repair is for a document whose workspace copy is missing (state missing-copy).",
                        title="Nothing to repair")
            return
        if not self._need_link("repair"):
            return

        def go(answer: Confirmation | None) -> None:
            if answer:
                self.app.operations.document("repair", row.doc_id, row.holder, answer.reason)

        self.app.push_screen(ConfirmScreen(f"Repair {row.doc_id} for {row.holder}", repair_body(row),
                                           confirm="Repair", reason=True, blink=not self.app.still), go)

    def action_checkout(self) -> None:
        if self._wrong_pane("o", "checks out a document for the agent", CONTAINER_PANES):
            return
        agent = self.containers_pane.selected_agent or (self.agents[0] if self.agents else None)
        if agent is None:
            self.notify("No agent to check out for.", title="Nothing selected")
            return
        if not self._need_link("checkout"):
            return

        def check(value: str) -> str | None:
            try:
                check_doc_id(value)
            except QmsPanelError as err:
                return err.detail or err.title
            return None

        def go(doc_id: str | None) -> None:
            if doc_id:
                self.run_worker(lambda: self._checkout_warned(doc_id, agent), thread=True,
                                name=f"checkout {doc_id}: its workflow state")

        self.app.push_screen(InputScreen(f"Check out for {agent}", f"Document id to check out as {agent}:",
                                         placeholder="CR-001", check=check, blink=not self.app.still), go)

    def _checkout_warned(self, doc_id: str, agent: str) -> None:
        """(A thread worker.) Check ``doc_id`` out for ``agent``; first, when the checkout would also
        withdraw it from a review or approval (or be refused for it), say so and ask."""
        warning = checkout_warning(Path(self.project_root), doc_id, agent)

        def ask() -> None:
            if warning is None:
                self.app.operations.document("checkout", doc_id, agent)
                return

            def go(answer: Confirmation | None) -> None:
                if answer:
                    self.app.operations.document("checkout", doc_id, agent, answer.reason)

            self.app.push_screen(ConfirmScreen(f"Check out {doc_id} for {agent}", checkout_body(doc_id, warning),
                                               confirm="Check out", danger=True, reason=True,
                                               blink=not self.app.still), go)

        self.app.call_from_thread(ask)

    # --- checks, stream, help ---

    def action_doctor(self) -> None:
        self.app.checks.doctor_now()

    def action_audit(self) -> None:
        self.app.checks.audit_now()

    def action_filter(self) -> None:
        self.stream.start_filter()

    def action_toggle_source(self, source: str) -> None:
        """Show or hide a source of the live stream, from any pane."""
        self.stream.toggle_source(source)  # type: ignore[arg-type]

    def action_pause(self) -> None:
        self.stream.toggle_pause()

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())


# --- what the dialogs say ---------------------------------------------------------------------
# Document ids, titles, holders and paths come from .meta files and workspace names that agents
# write: every one is put in as plain(...) or through _facts, never as a markup string.


def _facts(rows: list[tuple[str, str | Text]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", justify="right")
    table.add_column()
    for label, value in rows:
        table.add_row(label, safe_rich(value))
    return table


def _rel(path: Path | None, root: Path) -> str:
    if path is None:
        return "—"
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def checkin_body(row: CheckoutRow, now: datetime | None, holder_running: bool, root: Path) -> Group:
    copy = row.workspace_file
    tz = now.tzinfo if now else None
    ago = (lambda t: f"  ({since(t, now)})") if now else (lambda t: "")
    facts = _facts([
        ("Document", Text.assemble(plain(row.doc_id, "bold"), "  ", plain(row.title or ""))),
        ("Status", f"{row.status or '?'}  v{row.version or '?'}"),
        ("Holder", plain(row.holder or "?", "bold")),
        ("Held since", stamp(row.held_since, tz) + (ago(row.held_since) if row.held_since else "")),
        ("Workspace copy", _rel(copy.path if copy else None, root)),
        ("Size", f"{size(copy.size)} ({copy.size:,} bytes)" if copy else "—"),
        ("Modified", stamp(copy.mtime, tz) + ago(copy.mtime) if copy else "—"),
    ])
    what = Text.assemble(
        "\nWhat happens: qms-panel calls ", ("qms_checkin", "bold"), "(", plain(row.doc_id), ") as ",
        plain(row.holder or "?", "bold"), " over MCP. The server writes the workspace copy into QMS as the "
        "draft, marks the document checked in, logs a CHECKIN event and deletes the workspace copy. "
        "If it refuses, nothing changes: its reason is shown and the copy is checked byte for byte.",
    )
    parts: list[Table | Text] = [facts, what]
    if holder_running:
        parts.append(Text.assemble(
            "\n", plain(row.holder or "?"), "'s container is running: while its client holds the identity on the "
            "server (every call renews the hold, for as long as the server decides), the server refuses (identity "
            "locked). The agent may also still be editing the copy.",
            style="bold yellow",
        ))
    return Group(*parts)


def checkout_body(doc_id: str, warning: str) -> Group:
    return Group(Text.assemble(plain(warning), style="bold yellow"), Text.assemble(
        "\nWhat happens: qms-panel calls ", ("qms_checkout", "bold"), "(", plain(doc_id), ") over MCP."))


def repair_body(row: CheckoutRow) -> Group:
    facts = _facts([
        ("Document", Text.assemble(plain(row.doc_id, "bold"), "  ", plain(row.title or ""))),
        ("Status", f"{row.status or '?'}  v{row.version or '?'}"),
        ("Holder", plain(row.holder or "?", "bold")),
        ("Workspace copy", Text("missing", style="bold red")),
    ])
    what = Text.assemble(
        "\nThe meta says checked out to ", plain(row.holder or "?", "bold"), ", but the workspace copy is gone, "
        "so neither checkin nor checkout works (`qms-panel repair` does the same from the command line).\n\n"
        "What happens: qms-panel "
        "copies the current draft into the holder's workspace, then calls ", ("qms_checkin", "bold"),
        "(", plain(row.doc_id), ") as ", plain(row.holder or "?"), ". The document's content does not change. "
        "If the checkin fails, the copy is removed again and nothing else changes.",
    )
    return Group(facts, what)
