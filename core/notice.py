"""What an operation says to the operator: a title, a message and a severity.

Outcomes are worded once, in the core, next to the logic that knows what happened; the panel
shows a :class:`Notice` as a notification and the command line prints its one line. Messages may
carry text from agents and servers: whoever displays one passes it through
:mod:`core.safe_text` first.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

Severity = Literal["information", "warning", "error"]


class Notice(BaseModel):
    title: str
    message: str
    severity: Severity = "information"

    def one_line(self) -> str:
        return f"{self.title}: {' '.join(self.message.split())}" if self.message else self.title
