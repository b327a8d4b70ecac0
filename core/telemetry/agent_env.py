"""What an agent's container is told about telemetry at launch: its environment.

With ``telemetry`` on, Claude Code exports its OpenTelemetry logs and metrics over OTLP/HTTP
(protobuf) to the gateway's receiver at ``host.docker.internal`` and the receiver's port (that of
``telemetry_listen``, else 4318), often enough for a live view (logs every second, metrics every
ten); the prompt's text only with ``telemetry_prompts``. :data:`HOOKS_URL_VAR` tells the image's
hook command (``qms-agent-hook``, which the baked ``/.claude/settings.json`` runs on SessionStart,
Notification, PostToolUse and Stop) where to post the event (``/hooks`` on the same port); empty,
it posts nothing, so an agent with telemetry off sends nothing anywhere. Nothing
secret is in any of it: the receiver knows a container by its address, not by a token.
"""

from __future__ import annotations

from core.settings import Settings, parse_listen

DEFAULT_PORT = 4318  # OTLP/HTTP's standard port
HOST = "host.docker.internal"
HOOKS_URL_VAR = "QMS_PANEL_HOOKS_URL"
LOGS_INTERVAL_MS = 1000
METRICS_INTERVAL_MS = 10000


def receiver_port(settings: Settings) -> int:
    """The receiver's port as the agents reach it."""
    return parse_listen(settings.telemetry_listen)[1] if settings.telemetry_listen else DEFAULT_PORT


def agent_environment(settings: Settings) -> dict[str, str]:
    """The telemetry part of an agent container's environment (see the module docstring)."""
    if not settings.telemetry:
        return {"CLAUDE_CODE_ENABLE_TELEMETRY": "0", HOOKS_URL_VAR: ""}
    base = f"http://{HOST}:{receiver_port(settings)}"
    env = {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": base,
        "OTEL_LOGS_EXPORT_INTERVAL": str(LOGS_INTERVAL_MS),
        "OTEL_METRIC_EXPORT_INTERVAL": str(METRICS_INTERVAL_MS),
        HOOKS_URL_VAR: f"{base}/hooks",
    }
    if settings.telemetry_prompts:
        env["OTEL_LOG_USER_PROMPTS"] = "1"
    return env
