"""What the ``qms-panel`` command line and each of its subcommands share: exit codes, the settings
flags and the settings they make, JSON output and one-line failures.

Subcommands (:mod:`tui.commands`) import this module, never :mod:`tui.cli`, which loads them by
name: so the command line has no import circle (``tests/test_import_graph.py``). How a failure is
said (one redacted, safe line; with ``--json`` one object) is :mod:`tui.cli_output`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.settings import Settings, load_settings
from tui.cli_output import EXIT_FAILED, EXIT_OK, EXIT_USAGE, fail, report_error  # noqa: F401 - shared

SETTING_FLAGS: dict[str, str] = {
    "project_root": "host folder mounted as /pipe-dream (must contain QMS/)",
    "agents": "comma-separated agent ids (default: claude)",
    "image": "agent image (default: claude-agent)",
    "mcp_url": "MCP URL from the host (default: http://127.0.0.1:8000/sse)",
    "container_mcp_url": "MCP URL from inside containers (default: http://host.docker.internal:8000/sse)",
    "mcp_transport": "sse, streamable-http or auto (default: from the URL path)",
    "container_prefix": "container name prefix (default: qms-agent-)",
    "deploy_key": "deploy key mounted read-only at /.ssh/id_ed25519",
    "stuck_after": "a checkout idle this long is stale, e.g. 4h, 90m (default: 4h)",
    "state_dir": "qms-panel's own records, the action log (default: ~/.local/state/qms-panel)",
    "call_timeout": "how long one MCP call waits for its reply, e.g. 60, 30s, 2m (default: 60 s)",
    "upstream_url": "the real QMS MCP server behind the gateway (default: http://127.0.0.1:8001/mcp)",
    "gateway_listen": "HOST:PORT the gateway serves agents on (default: the bridge gateway address, port 8000)",
    "gateway_allow_host": "true/false: let loopback clients on the host use the gateway (default: false)",
    "feed_listen": "loopback HOST:PORT or unix:PATH of the gateway's live feed (default: 127.0.0.1:8766)",
    "feed_token_file": "the feed's token file (default: <state_dir>/gateway-feed.token)",
    "telemetry": "true/false: agents send Claude Code telemetry and hooks to the gateway (default: true)",
    "telemetry_listen": "HOST:PORT of the telemetry receiver (default: the gateway's address, port 4318)",
    "telemetry_prompts": "true/false: telemetry may carry prompt text (default: false)",
}


def setting_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (those left out are not in the namespace at all)."""
    return {f: getattr(args, f) for f in SETTING_FLAGS if hasattr(args, f)}


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings in effect, checked whole: a keymap naming no binding is refused here too,
    not only when the panel opens."""
    from tui.actions import check_keymap

    config = getattr(args, "config", None)
    settings = load_settings(setting_overrides(args), Path(config) if config else None)
    check_keymap(settings.keymap)
    return settings


def print_json(data: Any) -> None:
    """Print a pydantic model, a list of them, or plain data as JSON on stdout."""
    def plain(obj):
        if hasattr(obj, "model_dump"):
            return obj.model_dump(mode="json")
        if isinstance(obj, (list, tuple)):
            return [plain(o) for o in obj]
        if isinstance(obj, dict):
            return {k: plain(v) for k, v in obj.items()}
        return obj

    json.dump(plain(data), sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
