"""The settings model and its loader.

Precedence, highest first: command-line flags > environment (``QMS_PANEL_*``) > a TOML file
(``qms-panel.toml`` in the working directory, or ``--config PATH``) > defaults. Flags, TOML
keys and environment names all match: ``--project-root`` / ``project_root`` /
``QMS_PANEL_PROJECT_ROOT``.

Every failure is a :class:`~core.errors.SettingsError` whose one line names the key and the
reason; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import contextvars
import ipaddress
import json
import os
import math
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as PydanticSettingsError

from core.errors import InvalidAgentId, SettingsError

ENV_PREFIX = "QMS_PANEL_"
DEFAULT_CONFIG_FILE = "qms-panel.toml"
AGENT_ID_RE = re.compile(r"\A[a-z0-9_-]+\Z")  # \Z, not $: "claude\n" is not an agent id
CONTAINER_PREFIX_RE = re.compile(r"\A[a-zA-Z0-9][a-zA-Z0-9_.-]*\Z")
_DURATION_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")

Transport = Literal["auto", "sse", "streamable-http"]

_toml_values: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("qms_panel_toml", default={})


def check_agent_id(agent: str) -> str:
    """Return ``agent`` if it is a valid agent id, else raise InvalidAgentId."""
    if not isinstance(agent, str) or not AGENT_ID_RE.match(agent):
        raise InvalidAgentId(f"{agent!r} must match [a-z0-9_-]+ (lower-case letters, digits, '_' and '-')")
    return agent


def project_root_problem(root: Path) -> str | None:
    """Why ``root`` cannot be a project root (a folder holding ``QMS/``), or None when it can."""
    if not root.exists():
        return f"{root} does not exist"
    if not root.is_dir():
        return f"{root} is not a directory"
    if not (root / "QMS").is_dir():
        return f"{root.resolve()} has no QMS/ folder (is it the pipe-dream root?)"
    return None


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/qms-panel``, or ``~/.local/state/qms-panel`` (the XDG default)."""
    base = os.environ.get("XDG_STATE_HOME", "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".local" / "state") / "qms-panel"


def state_dir_problem(state_dir: Path, project_root: Path | None) -> str | None:
    """Why ``state_dir`` cannot hold qms-panel's own records, or None when it can.

    Never inside ``<project_root>/QMS`` (the QMS holds the documents' files, not ours) nor inside
    ``<project_root>/.claude/users`` (agents write there), links resolved; and it must be a
    folder or creatable as one.
    """
    where = state_dir.expanduser().resolve()
    if project_root is not None:
        root = Path(project_root).resolve()
        for forbidden, why in ((root / "QMS", "the QMS"), (root / ".claude" / "users", "the agents' folders")):
            if where.is_relative_to(forbidden.resolve()):
                return f"{where} is inside {forbidden} ({why}); qms-panel's records live outside it"
    existing = where
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{where} cannot be a folder: {existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK) and existing != where:
        return f"{where} cannot be created: {existing} is not writable"
    return None


def parse_duration(value: Any) -> Any:
    """Accept seconds (int/float), '4h', '90m', '1h30m', '2d', or anything pydantic takes."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a duration (use e.g. 4h, 90m, 1h30m or seconds)")
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return timedelta(seconds=float(text))
        m = _DURATION_RE.match(text)
        if text and m and any(m.groups()):
            d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return timedelta(days=d, hours=h, minutes=mi, seconds=s)
    return value


def format_duration(value: timedelta) -> str:
    """A duration as an operator writes it and :func:`parse_duration` reads it back: ``4h``,
    ``1h30m``, ``90s`` is ``1m30s``, ``2d``, ``0.5s``."""
    rest = value.total_seconds()
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{int(count)}{unit}")
    if rest or not parts:
        parts.append(f"{round(rest, 6):g}s")
    return "".join(parts)


def setting_text(settings: "Settings", field: str) -> str:
    """One setting's value as it is written in a flag, an environment variable or the TOML file
    (``4h``, ``true``, ``claude,qa``), and nothing for a value left unset."""
    value = getattr(settings, field)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, dict):
        return json.dumps(value) if value else ""
    return str(value)


def setting_values(settings: "Settings") -> dict[str, Any]:
    """Every setting as plain JSON data the loader takes back: durations in seconds, paths as
    strings, unset values as None."""
    data = settings.model_dump(mode="json")
    for field, value in data.items():
        if isinstance(getattr(settings, field), timedelta):
            data[field] = getattr(settings, field).total_seconds()
    return data


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as (host, port); the host an IP address or ``localhost``."""
    host, sep, port = value.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host:
        raise ValueError(f"{value!r} is not HOST:PORT, e.g. 172.17.0.1:8000")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{value!r}: {host!r} is not an IP address (or localhost)") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: {port!r} is not a port (1-65535)")
    return host, int(port)


def check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL with a host")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"{value!r} has a bad port ({exc})") from None
    return value


class _TomlSource(PydanticBaseSettingsSource):
    """Values read from the TOML file by :func:`load_settings` (already parsed)."""

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by __call__
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_toml_values.get())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    project_root: Path = Field(default=Path("."), description="host folder mounted as /pipe-dream; must contain QMS/")
    agents: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["claude"], description="agent ids")
    image: str = Field(default="claude-agent", description="agent image")
    mcp_url: str = Field(default="http://127.0.0.1:8000/sse", description="MCP URL as seen from the host")
    container_mcp_url: str = Field(
        default="http://host.docker.internal:8000/sse", description="MCP URL as seen from inside a container"
    )
    mcp_transport: Transport = Field(default="auto", description="sse, streamable-http, or auto (from the URL path)")
    container_prefix: str = Field(default="qms-agent-", description="container name prefix")
    deploy_key: Path | None = Field(default=None, description="deploy key mounted read-only at /.ssh/id_ed25519")
    stuck_after: timedelta = Field(default=timedelta(hours=4), description="a checkout idle this long is stale")
    call_timeout: timedelta = Field(default=timedelta(seconds=60),
                                    description="how long one MCP call waits for its reply, e.g. 60, 30s, 2m")
    keymap: dict[str, str] = Field(default_factory=dict,
                                   description="binding id -> key(s), e.g. {\"container.restart\" = \"ctrl+r\"}")
    state_dir: Path = Field(default_factory=default_state_dir,
                            description="qms-panel's own records (the action log); never inside QMS/")
    # --- the gateway (``qms-panel gateway``): agents -> gateway -> the real QMS MCP server ---------
    upstream_url: str = Field(default="http://127.0.0.1:8001/mcp",
                              description="the real QMS MCP server the gateway forwards to (/sse or /mcp)")
    gateway_listen: str = Field(default="", description="HOST:PORT the gateway serves agents on; empty: the "
                                "engine's default bridge gateway address, port 8000")
    gateway_allow_host: bool = Field(default=False, description="let loopback clients on the host use the gateway")
    feed_listen: str = Field(default="127.0.0.1:8766",
                             description="loopback HOST:PORT (or unix:PATH) of the gateway's live feed")
    feed_token_file: Path | None = Field(default=None, description="the feed's token (0600); empty: "
                                         "<state_dir>/gateway-feed.token")
    telemetry: bool = Field(default=True, description="agents export Claude Code telemetry and hooks to the gateway")
    telemetry_listen: str = Field(default="", description="HOST:PORT of the telemetry receiver; empty: the "
                                  "gateway's address, port 4318")
    telemetry_prompts: bool = Field(default=False, description="telemetry may carry the operator's prompt text")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return (init_settings, env_settings, _TomlSource(settings_cls))

    @field_validator("project_root")
    @classmethod
    def _project_root(cls, value: Path) -> Path:
        root = value.expanduser()
        problem = project_root_problem(root)
        if problem:
            raise ValueError(problem)
        return root.resolve()

    @field_validator("agents", mode="before")
    @classmethod
    def _split_agents(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("agents")
    @classmethod
    def _agents(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one agent id is needed")
        for agent in value:
            if not AGENT_ID_RE.match(agent):
                raise ValueError(f"{agent!r} is not a valid agent id ([a-z0-9_-]+)")
        return list(dict.fromkeys(value))

    @field_validator("mcp_url", "container_mcp_url", "upstream_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_http_url(value)

    @field_validator("container_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not CONTAINER_PREFIX_RE.match(value):
            raise ValueError(f"{value!r} is not usable in a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not an image reference")
        return value

    @field_validator("deploy_key")
    @classmethod
    def _deploy_key(cls, value: Path | None) -> Path | None:
        if value is None or str(value) == "":
            return None
        key = value.expanduser()
        if not key.is_file():
            raise ValueError(f"{key} is not a file")
        return key.resolve()

    @field_validator("keymap")
    @classmethod
    def _keymap(cls, value: dict[str, str]) -> dict[str, str]:
        for binding, keys in value.items():
            if not keys.strip():
                raise ValueError(f"{binding!r} has no key")
        return value

    @field_validator("state_dir", mode="before")
    @classmethod
    def _state_dir_given(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty (give a folder, or leave it unset for ~/.local/state/qms-panel)")
        return value

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, value: Path, info: ValidationInfo) -> Path:
        problem = state_dir_problem(value, info.data.get("project_root"))
        if problem:
            raise ValueError(problem)
        return value.expanduser().resolve()

    @field_validator("gateway_listen", "telemetry_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value.strip():
            parse_listen(value)
        return value.strip()

    @field_validator("feed_listen")
    @classmethod
    def _feed_listen(cls, value: str) -> str:
        value = value.strip()
        if value.startswith("unix:"):
            if not os.path.isabs(value[5:]):
                raise ValueError(f"{value!r}: a unix socket needs an absolute path, e.g. unix:/run/qms-panel.sock")
            return value
        host, _ = parse_listen(value)
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"{value!r} is not a loopback address; the feed is for this host only")
        return value

    @field_validator("feed_token_file", mode="before")
    @classmethod
    def _feed_token_file(cls, value: Any) -> Any:
        return None if value is None or (isinstance(value, str) and not value.strip()) else value

    @field_validator("stuck_after", "call_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)

    @field_validator("stuck_after", "call_timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("must be a positive duration such as 4h or 90m")
        return value

    # --- derived names (the layout module resolves paths) --------------------------------

    def container_name(self, agent: str) -> str:
        return f"{self.container_prefix}{agent}"

    def feed_token_path(self) -> Path:
        """Where the gateway keeps its feed token and readers find it."""
        return (self.feed_token_file or self.state_dir / "gateway-feed.token").expanduser()

    def transport_for(self, url: str | None = None) -> Literal["sse", "streamable-http"]:
        """The transport to use: explicit, else from the URL path (``/mcp`` -> streamable HTTP)."""
        if self.mcp_transport != "auto":
            return self.mcp_transport
        return transport_from_url(url or self.mcp_url)


def transport_from_url(url: str) -> Literal["sse", "streamable-http"]:
    path = urlsplit(url).path.rstrip("/")
    return "streamable-http" if path.endswith("/mcp") else "sse"


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def _read_toml(path: Path, explicit: bool) -> dict[str, Any]:
    if not path.exists():
        if explicit:
            raise SettingsError(f"config file {path} does not exist")
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                            "TOML files are UTF-8") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    # Relative paths in the file are relative to the file, not to the working directory.
    for key in ("project_root", "deploy_key", "state_dir", "feed_token_file"):
        if isinstance(data.get(key), str) and data[key] and not Path(data[key]).expanduser().is_absolute():
            data[key] = str((path.parent / data[key]).resolve())
    return data


def _describe(err: dict[str, Any], toml_path: Path | None, toml_keys: set[str]) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ())) or "settings"
    key = loc.split(".")[0]
    if err.get("type") == "extra_forbidden":
        where = f" in {toml_path}" if toml_path else ""
        return f"unknown key {key!r}{where} (known: {', '.join(Settings.model_fields)})"
    msg = err.get("msg", "invalid value")
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if err.get("type") == "timedelta_parsing" or (key in ("stuck_after", "call_timeout") and "timedelta" in msg):
        msg = f"{err.get('input')!r} is not a duration (use e.g. 4h, 90m, 1h30m or seconds)"
    source = f" ({flag_name(key)} / {env_name(key)}" + (f" / {toml_path}" if key in toml_keys and toml_path else "") + ")"
    return f"{key}: {msg}{source}"


def _describe_source_error(exc: PydanticSettingsError) -> str:
    """One line for a value a settings source could not decode (only the environment decodes JSON)."""
    found = re.search(r'field "(\w+)"', str(exc))
    key = found.group(1) if found else "settings"
    cause = exc.__cause__
    why = f"not valid JSON ({cause})" if isinstance(cause, ValueError) else f"cannot be read ({cause or exc})"
    example = '; write it as {"container.restart": "ctrl+r"}' if key == "keymap" else ""
    return f"{key}: {env_name(key)} is {why}{example}"


def load_settings(overrides: dict[str, Any] | None = None, config: Path | None = None) -> Settings:
    """Build the settings from flags (``overrides``), environment, TOML file and defaults."""
    explicit = config is not None
    path = Path(config) if explicit else Path.cwd() / DEFAULT_CONFIG_FILE
    toml = _read_toml(path, explicit)
    token = _toml_values.set(toml)
    try:
        return Settings(**{k: v for k, v in (overrides or {}).items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SettingsError(_describe(first, path if toml else None, set(toml))) from None
    except PydanticSettingsError as exc:  # a source could not decode a value (QMS_PANEL_KEYMAP not JSON)
        raise SettingsError(_describe_source_error(exc)) from None
    finally:
        _toml_values.reset(token)
