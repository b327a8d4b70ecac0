"""The action table: every key of the panel, once.

Bindings (footer), the command palette and the help screen are all made from these rows, so a
key has one id, one label and one line of help wherever it shows. A row's ``scope`` says which
screen or pane owns it.

Textual is imported only by :func:`bindings`: the command line checks the keymap setting
against this table (:func:`check_keymap`) without loading the UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from textual.binding import Binding

Scope = Literal["main", "table", "stream", "logs", "dialog", "help", "payload"]


@dataclass(frozen=True)
class PanelAction:
    id: str  # binding id: stable, what a keymap refers to
    key: str
    action: str  # the Textual action the key runs, on the scope's owner
    label: str  # footer text
    help: str  # one line for the help screen and the command palette
    scope: Scope = "main"
    show: bool = True  # in the footer
    palette: bool = True  # in the command palette
    key_display: str | None = None


ACTIONS: tuple[PanelAction, ...] = (
    # containers
    PanelAction("container.restart", "r", "restart", "Restart",
                "Restart the selected container (no dialog; progress in its row)"),
    PanelAction("container.start-stop", "s", "start_stop", "Start/Stop",
                "Start, stop (asks first) or, for an agent without one, launch its container"),
    PanelAction("container.logs", "l", "logs", "Logs", "Follow the selected container's logs"),
    PanelAction("container.terminal", "t", "terminal", "Terminal",
                "Open the selected agent's tmux session here, to answer it (detach: Ctrl-b d brings the panel back)"),
    # documents
    PanelAction("document.checkin", "c", "checkin", "Check in",
                "Check in the selected document on behalf of its holder (asks first)"),
    PanelAction("document.repair", "R", "repair", "Repair",
                "Repair a missing-copy document: put the draft back in the holder's workspace, "
                "then check it in (asks first)", key_display="R"),
    PanelAction("document.checkout", "o", "checkout", "Check out",
                "Check out a document for the selected agent (asks for the id)"),
    # checks
    PanelAction("checks.doctor", "p", "doctor", "Doctor",
                "Run the reachability doctor now: can the host and each container reach the MCP server?"),
    PanelAction("checks.audit", "a", "audit", "Audit", "Re-run the access audit of every running container"),
    # stream
    PanelAction("stream.filter", "slash", "filter", "Filter", "Filter the live stream by text", key_display="/"),
    PanelAction("stream.pause", "space", "pause", "Pause", "Pause or resume the live stream"),
    # navigation
    PanelAction("pane.next", "tab", "next_pane", "Next pane", "Move to the next pane (one pane at a time: show it)",
                show=False, palette=False),
    PanelAction("pane.previous", "shift+tab", "previous_pane", "Previous pane", "Move to the previous pane",
                show=False, palette=False),
    PanelAction("pane.zoom", "z", "zoom", "Zoom",
                "Show the focused pane alone, or every pane again (small terminals show one pane at a time)"),
    PanelAction("app.help", "question_mark", "help", "Help", "Show every key and what it does", key_display="?"),
    PanelAction("app.palette", "ctrl+p", "app.command_palette", "Commands", "Open the command palette",
                show=False, palette=False, key_display="ctrl+p"),
    PanelAction("app.quit", "q", "app.quit", "Quit", "Quit qms-panel", palette=False),
    # inside the Containers, Access matrix and Workspace tables
    PanelAction("table.up", "up,k", "cursor_up", "Up", "Select the row above", scope="table", show=False,
                key_display="↑ k"),
    PanelAction("table.down", "down,j", "cursor_down", "Down", "Select the row below", scope="table", show=False,
                key_display="↓ j"),
    PanelAction("table.first", "home", "first_row", "First", "Select the first row", scope="table", show=False),
    PanelAction("table.last", "end", "last_row", "Last", "Select the last row", scope="table", show=False),
    # inside the stream pane
    PanelAction("stream.payload", "enter", "show_payload", "Payload", "Show the full payload of the selected line",
                scope="stream"),
    PanelAction("stream.agents", "1", "toggle_source('agents')", "Agents",
                "Show or hide the agents' calls through the gateway", show=False),
    PanelAction("stream.mcp", "2", "toggle_source('mcp')", "MCP", "Show or hide the panel's own MCP messages",
                show=False),
    PanelAction("stream.docker", "3", "toggle_source('docker')", "Docker", "Show or hide Docker events",
                show=False),
    PanelAction("stream.qms", "4", "toggle_source('qms')", "QMS", "Show or hide QMS audit activity",
                show=False),
    PanelAction("stream.beat", "5", "toggle_source('beat')", "Heartbeats",
                "Show or hide the panel's own link heartbeats (hidden at start)", show=False),
    PanelAction("stream.activity", "6", "toggle_source('activity')", "Agents' activity",
                "Show or hide the agents' activity (Claude Code's telemetry and hooks)", show=False),
    PanelAction("stream.clear-filter", "escape", "clear_filter", "Clear filter", "Clear the stream's text filter",
                scope="stream", show=False),
    PanelAction("stream.up", "up,k", "cursor_up", "Up", "Select the line above", scope="stream", show=False,
                key_display="↑ k"),
    PanelAction("stream.down", "down,j", "cursor_down", "Down", "Select the line below", scope="stream", show=False,
                key_display="↓ j"),
    PanelAction("stream.page-up", "pageup", "page_up", "Page up", "A page up", scope="stream", show=False),
    PanelAction("stream.page-down", "pagedown", "page_down", "Page down", "A page down", scope="stream",
                show=False),
    PanelAction("stream.first", "home", "first", "Oldest", "Select the oldest line", scope="stream", show=False),
    PanelAction("stream.last", "end", "last", "Newest", "Select the newest line and follow", scope="stream",
                show=False),
    # the logs screen
    PanelAction("logs.close", "escape", "close", "Close", "Back to the panel", scope="logs"),
    PanelAction("logs.follow", "f", "toggle_follow", "Follow", "Follow new lines, or stop following",
                scope="logs"),
    # help and payload
    PanelAction("help.close", "escape", "dismiss", "Close", "Close the help", scope="help"),
    PanelAction("payload.close", "escape", "dismiss", "Close", "Close the payload", scope="payload"),
    # dialogs
    PanelAction("dialog.confirm", "y", "confirm", "Yes", "Confirm", scope="dialog"),
    PanelAction("dialog.cancel", "escape", "cancel", "Cancel", "Cancel", scope="dialog"),
)


def actions(scope: Scope) -> list[PanelAction]:
    return [a for a in ACTIONS if a.scope == scope]


def bindings(scope: Scope) -> list[Binding]:
    """The Textual bindings of ``scope``, each with its id."""
    from textual.binding import Binding

    return [
        Binding(a.key, a.action, a.label, show=a.show, id=a.id, tooltip=a.help, key_display=a.key_display)
        for a in actions(scope)
    ]


def palette(scope: Scope = "main") -> list[PanelAction]:
    """The rows offered in the command palette."""
    return [a for a in actions(scope) if a.palette]


def key_label(action: PanelAction, keymap: dict[str, str] | None = None) -> str:
    if keymap and action.id in keymap:
        return keymap[action.id]
    return action.key_display or {"space": "space", "enter": "enter", "escape": "esc"}.get(action.key, action.key)


def check_keymap(keymap: dict[str, str]) -> dict[str, str]:
    """The operator's ``keymap`` setting, refused (one line, exit 2) when it names no binding."""
    from core.errors import SettingsError

    known = {a.id for a in ACTIONS}
    for binding in keymap:
        if binding not in known:
            raise SettingsError(f"keymap: unknown binding id {binding!r} (known: {', '.join(sorted(known))})")
    return keymap
