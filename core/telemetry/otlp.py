"""OTLP/HTTP logs and metrics as Claude Code sends them, decoded with the OpenTelemetry project's own
protobuf definitions (``opentelemetry-proto``), both ``application/x-protobuf`` and
``application/json`` (OTLP's JSON mapping: hex trace and span ids, 64-bit integers as strings).

What comes out is facts for :class:`core.gateway.events.ActivityEvent`: a name, bounded string
attributes, a value and a one-line summary. Claude Code names its log events by the record's body
(``claude_code.api_request``) and by an ``event.name`` attribute (``api_request``); both are read.
Every string is the agent's: bounded here, made safe where it is shown. Prompt text is dropped
unless the operator allowed it (``telemetry_prompts``). Resource attributes (``user.id``,
``service.name``...) are kept as facts but never decide who sent them: that is the peer address.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

MAX_ATTRIBUTES = 24  # per event
MAX_VALUE = 200  # characters per attribute value
MAX_ITEMS = 500  # events per request; the rest are counted as dropped
PROMPT_KEYS = frozenset({"prompt", "user_prompt"})
SECRET_HINTS = ("token", "secret", "password", "authorization", "api_key", "apikey", "cookie")
KNOWN_EVENTS = frozenset({"user_prompt", "api_request", "api_error", "tool_result", "tool_decision"})


class BadPayload(ValueError):
    """The body is not an OTLP request of that kind (the message says why, in one line)."""


@dataclass
class Item:
    """One log record or metric point, as facts for an ActivityEvent."""

    name: str
    attributes: dict[str, str] = field(default_factory=dict)
    value: float | None = None
    summary: str = ""


@dataclass
class Decoded:
    items: list[Item] = field(default_factory=list)
    unknown: int = 0  # log records that are not one of Claude Code's events
    dropped: int = 0  # over MAX_ITEMS


def _any_value(value) -> str:
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "array_value":
        return ",".join(_any_value(v) for v in value.array_value.values)[:MAX_VALUE]
    if kind == "kvlist_value":
        return json.dumps({kv.key: _any_value(kv.value) for kv in value.kvlist_value.values})[:MAX_VALUE]
    if kind == "bytes_value":
        return value.bytes_value.hex()[:MAX_VALUE]
    return str(getattr(value, kind))[:MAX_VALUE]


def _attributes(pairs, *, prompts: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for kv in pairs:
        if len(out) >= MAX_ATTRIBUTES:
            break
        key = kv.key[:64]
        if key in PROMPT_KEYS and not prompts:
            out[key] = "(not kept: telemetry_prompts is off)"
        elif any(hint in key.lower() for hint in SECRET_HINTS) and "tokens" not in key.lower():
            out[key] = "***"
        else:
            out[key] = _any_value(kv.value)
    return out


def _parse(body: bytes, content_type: str, message):
    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind == "application/x-protobuf":
            message.ParseFromString(body)
        elif kind == "application/json":
            data = json.loads(body)
            if not isinstance(data, dict):
                raise BadPayload("the JSON body is not an object")
            json_format.ParseDict(_hex_ids_to_base64(data), message, ignore_unknown_fields=True)
        else:
            raise BadPayload(f"content type {kind or 'none'!r} is not OTLP (application/x-protobuf or application/json)")
    except (DecodeError, json_format.ParseError, ValueError, RecursionError) as err:
        if isinstance(err, BadPayload):
            raise
        raise BadPayload(f"not an OTLP {type(message).__name__}: {str(err).splitlines()[0][:120] if str(err) else 'undecodable'}") from None
    return message


def _hex_ids_to_base64(data):
    """OTLP JSON writes traceId and spanId in hex; protobuf's JSON mapping reads bytes as base64."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(value, str):
                try:
                    value = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    pass  # already base64, or not an id: protobuf decides
            out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(data, list):
        return [_hex_ids_to_base64(v) for v in data]
    return data


def _number(attributes: dict[str, str], key: str) -> float:
    try:
        return float(attributes.get(key, "") or 0)
    except ValueError:
        return 0.0


def event_summary(name: str, a: dict[str, str]) -> str:
    """One line for a person from a Claude Code log event's attributes."""
    short = name.removeprefix("claude_code.")
    if short == "api_request":
        tokens = int(_number(a, "input_tokens") + _number(a, "output_tokens") + _number(a, "cache_read_tokens")
                     + _number(a, "cache_creation_tokens"))
        return (f"{a.get('model', '?')} {tokens:,} tokens ${_number(a, 'cost_usd'):.2f} "
                f"{_number(a, 'duration_ms') / 1000:.1f} s")
    if short == "api_error":
        return f"{a.get('status_code', '')} {a.get('error', '')}".strip() + (
            f" (attempt {a['attempt']})" if a.get("attempt") else "")
    if short == "tool_result":
        ok = "ok" if a.get("success", "").lower() == "true" else "failed"
        return f"{a.get('tool_name', '?')} {ok} {_number(a, 'duration_ms'):.0f} ms"
    if short == "tool_decision":
        return f"{a.get('tool_name', '?')} {a.get('decision', '?')} ({a.get('source', '?')})"
    if short == "user_prompt":
        return f"prompt of {a.get('prompt_length', '?')} characters"
    return ""


def decode_logs(body: bytes, content_type: str, *, prompts: bool = False) -> Decoded:
    """Claude Code's log events in an ExportLogsServiceRequest. Raises :class:`BadPayload`."""
    request = _parse(body, content_type, ExportLogsServiceRequest())
    out = Decoded()
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attributes = _attributes(record.attributes, prompts=prompts)
                body_name = _any_value(record.body)
                short = attributes.get("event.name", "") or body_name.removeprefix("claude_code.")
                short = short.removeprefix("claude_code.")
                if short not in KNOWN_EVENTS:
                    out.unknown += 1
                    continue
                if len(out.items) >= MAX_ITEMS:
                    out.dropped += 1
                    continue
                name = f"claude_code.{short}"
                value = _number(attributes, "cost_usd") if short == "api_request" else None
                out.items.append(Item(name=name, attributes=attributes, value=value,
                                      summary=event_summary(name, attributes)))
    return out


def decode_metrics(body: bytes, content_type: str) -> Decoded:
    """Every number point of an ExportMetricsServiceRequest (sums and gauges), one item each.
    Raises :class:`BadPayload`."""
    request = _parse(body, content_type, ExportMetricsServiceRequest())
    out = Decoded()
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                data = metric.WhichOneof("data")
                if data not in ("sum", "gauge"):
                    out.unknown += 1
                    continue
                for point in getattr(metric, data).data_points:
                    if len(out.items) >= MAX_ITEMS:
                        out.dropped += 1
                        continue
                    attributes = _attributes(point.attributes, prompts=False)
                    value = point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)
                    kind = attributes.get("type", "")
                    out.items.append(Item(name=metric.name[:100], attributes=attributes, value=value,
                                          summary=f"{value:g}{' ' + kind if kind else ''}"))
    return out
