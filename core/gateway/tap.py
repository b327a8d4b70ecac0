"""The tap: one JSON-RPC message through the gateway -> the facts of an :class:`McpEvent`.

Everything here reads agent and server text, so it is redacted (credentials in URLs, tokens) and
bounded; nothing is made safe for a terminal here (readers do that when they show it).
"""

from __future__ import annotations

from typing import Any

from mcp import types

from core.gateway.events import Outcome
from core.mcp_stream import redact_text

ARG_MAX = 120  # characters kept of one argument value
RESULT_MAX = 240  # characters kept of a result's text
ARGS_MAX = 12  # arguments kept of one call


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def message_dict(message: types.JSONRPCMessage) -> dict[str, Any]:
    return message.model_dump(by_alias=True, mode="json", exclude_none=True)


def request_facts(root: types.JSONRPCRequest) -> dict[str, Any]:
    """method, tool, doc_id and the arguments (redacted, bounded) of a request."""
    params = root.params or {}
    facts: dict[str, Any] = {"method": root.method}
    if root.method == "tools/call" and isinstance(params, dict):
        name = params.get("name")
        facts["tool"] = name if isinstance(name, str) else None
        arguments = params.get("arguments")
        if isinstance(arguments, dict):
            shown = {}
            for key, value in list(arguments.items())[:ARGS_MAX]:
                text = value if isinstance(value, str) else repr(value)
                shown[_clip(str(key), 40)] = _clip(redact_text(text), ARG_MAX)
            facts["arguments"] = shown
            doc = arguments.get("doc_id")
            facts["doc_id"] = _clip(doc, 80) if isinstance(doc, str) else None
    return facts


def call_user(root: types.JSONRPCRequest) -> str | None:
    """The ``user`` argument of a tools/call, when it has one (any JSON value, as text)."""
    params = root.params or {}
    if root.method != "tools/call" or not isinstance(params, dict):
        return None
    arguments = params.get("arguments")
    if not isinstance(arguments, dict) or "user" not in arguments:
        return None
    user = arguments["user"]
    return user if isinstance(user, str) else repr(user)


def result_facts(root: types.JSONRPCResponse | types.JSONRPCError) -> tuple[Outcome, str]:
    """The outcome class and a bounded summary of a response."""
    if isinstance(root, types.JSONRPCError):
        return "error", _clip(redact_text(f"{root.error.code}: {root.error.message}"), RESULT_MAX)
    result = root.result or {}
    texts = [c.get("text", "") for c in result.get("content") or [] if isinstance(c, dict) and c.get("type") == "text"]
    text = "\n".join(t for t in texts if isinstance(t, str)).strip()
    summary = _clip(redact_text(" / ".join(line.strip() for line in text.splitlines() if line.strip())), RESULT_MAX)
    if result.get("isError"):
        return ("identity" if "IDENTITY " in text else "error"), summary
    return "ok", summary
