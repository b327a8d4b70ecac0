"""`qms-panel config`: the effective settings, after flags, environment, file and defaults.

Values are shown as they are written (``4h``, ``true``, ``claude,qa``; nothing for an unset
value), so a line can be copied back into a flag, an environment variable or the TOML file;
``--json`` gives the same values as data the loader takes back (durations in seconds, unset
values ``null``). Credentials in the MCP URLs (``user:pass@``, secret-looking query values, a
fragment) are shown redacted, in the text and in the JSON: this output lands in terminals,
tickets and CI logs.
"""

from __future__ import annotations

from core import layout
from core.mcp_stream import redact_url
from core.settings import setting_text, setting_values
from tui.cli_common import print_json, settings_from_args

NAME = "config"
HELP = "show the effective settings and the access matrix they resolve to"

URL_FIELDS = ("mcp_url", "container_mcp_url", "upstream_url")


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    settings = settings_from_args(args)
    shown = {field: redact_url(getattr(settings, field)) for field in URL_FIELDS}
    if args.json:
        print_json({**setting_values(settings), **shown})
        return 0
    width = max(len(k) for k in type(settings).model_fields)
    for key in type(settings).model_fields:
        value = shown.get(key) or setting_text(settings, key)
        print(f"{key:<{width}}  {value}".rstrip())
    for agent in settings.agents:
        print(f"\naccess matrix for {agent}:")
        for rule in layout.for_settings(settings, agent).rules:
            print(f"  {rule.container_path:<45} {rule.access.value:<22} {rule.purpose}")
    return 0
