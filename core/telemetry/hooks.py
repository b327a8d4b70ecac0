"""Claude Code's HTTP hooks: the hook input JSON it POSTs for an event, as facts for an
:class:`core.gateway.events.ActivityEvent`.

Claude Code sends the same JSON a command hook reads on stdin: ``hook_event_name`` (``Notification``,
``Stop``, ``SessionStart``, ``PreToolUse``, ``PostToolUse``...), ``session_id``, ``cwd``, and per event
``tool_name`` / ``tool_input`` (tool events), ``message`` and ``notification_type``
(``permission_prompt``, ``idle_prompt``... on ``Notification``), ``source`` (``SessionStart``).
The receiver answers ``{}`` at once: a hook must never hold the agent up, block or deny anything.
Every string is the agent's: bounded here, made safe where it is shown.
"""

from __future__ import annotations

import json

from core.telemetry.otlp import MAX_VALUE, BadPayload, Item

HOOK_EVENTS = frozenset({"Notification", "Stop", "SubagentStop", "SessionStart", "SessionEnd", "PreToolUse",
                         "PostToolUse", "PostToolUseFailure", "UserPromptSubmit", "PreCompact", "PermissionRequest"})
KEPT = ("session_id", "tool_name", "notification_type", "message", "source", "reason", "stop_hook_active", "title")


def tool_summary(tool: str, tool_input: object) -> str:
    """``Bash(npm test)``, ``Edit(src/a.py)``: the tool and what it is about, one line."""
    if not isinstance(tool_input, dict):
        return tool
    for key in ("command", "file_path", "path", "pattern", "url", "description"):
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return f"{tool}({' '.join(value.split())[:80]})"
    return tool


def decode_hook(body: bytes, *, prompts: bool = False) -> Item | None:
    """The hook's facts; None for an event name this receiver does not know (counted by the caller).
    Raises :class:`BadPayload` for a body that is not a JSON object with a ``hook_event_name``."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadPayload("the hook body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("hook_event_name"), str):
        raise BadPayload("the hook body has no hook_event_name")
    name = data["hook_event_name"][:64]
    if name not in HOOK_EVENTS:
        return None
    attributes = {key: str(data[key])[:MAX_VALUE] for key in KEPT if key in data and data[key] is not None}
    tool = attributes.get("tool_name")
    if tool:
        attributes["tool"] = tool_summary(tool, data.get("tool_input"))[:MAX_VALUE]
    if name == "UserPromptSubmit" and "prompt" in data:
        attributes["prompt"] = str(data["prompt"])[:MAX_VALUE] if prompts else "(not kept: telemetry_prompts is off)"
    return Item(name=name, attributes=attributes, summary=hook_summary(name, attributes))


def hook_summary(name: str, a: dict[str, str]) -> str:
    if name == "Notification":
        kind = a.get("notification_type", "")
        return f"{kind + ': ' if kind else ''}{a.get('message', '')}".strip()
    if name in ("PreToolUse", "PostToolUse", "PostToolUseFailure", "PermissionRequest"):
        return a.get("tool", a.get("tool_name", ""))
    if name == "Stop":
        return "at the prompt"
    if name == "SessionStart":
        return f"session {a.get('source', 'started')}"
    if name == "SessionEnd":
        return f"session ended{' (' + a['reason'] + ')' if a.get('reason') else ''}"
    return ""
