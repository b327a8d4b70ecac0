"""App-wide messages: what thread workers report back to the app (the only way they touch the UI).

Messages a widget sends about itself are nested in that widget's class.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from textual.message import Message

from tui.widgets.status_bar import EngineState


@dataclass
class ContainersListed(Message):
    """A fresh list of the project's containers (``ContainerRow``), asked for after ``events_seen``
    container events."""

    rows: list[Any]
    events_seen: int = 0


@dataclass
class EngineChanged(Message):
    """The engine answered, or stopped answering."""

    state: EngineState


@dataclass
class ImageChecked(Message):
    """Whether the engine has the agent image."""

    image: str
    present: bool


@dataclass
class ContainerBusy(Message):
    """An operation on ``agent``'s container started (``doing``) or ended (None)."""

    agent: str
    doing: str | None


@dataclass
class SnapshotScanned(Message):
    """A new QMS snapshot (``core.qms_state.QmsSnapshot``)."""

    snapshot: Any


@dataclass
class AuditFinished(Message):
    """Audits of some containers (``ContainerAudit``); ``complete``: every container was audited."""

    audits: list[Any]
    at: datetime
    complete: bool
