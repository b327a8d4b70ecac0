"""Text from agents, files, containers and servers, made safe to show a person.

Everything an agent can write (workspace file names, ``.meta`` fields, container output) and
every text a server sends is hostile input for a terminal: an ``ESC[2J`` in a file name wipes the
screen, an OSC sequence retitles the terminal, a bidi override reorders what the operator reads.
Before such a string reaches a terminal (the panel, or a text line of the command line) it goes
through one of these:

- :func:`safe_line`: one line; every control or format character is shown visibly
  (``\\x1b``, ``\\n``, ``\\u202e``), so nothing is interpreted and nothing is hidden;
- :func:`safe_text`: the same, but newlines are kept (multi-line messages and payloads).

Undecodable bytes of a file name (Python's surrogate escapes) are shown as ``\\xNN``. Rich markup
is not this module's business: the panel renders these strings as plain ``Text``, never as markup.
JSON output needs neither: the encoder escapes control characters itself.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["safe_line", "safe_text", "is_safe"]

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _visible(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by os.fsdecode (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def _unsafe(ch: str) -> bool:
    # Cc: C0, DEL and C1 controls; Cf: format characters (bidi overrides, zero-width joiners, BOM);
    # Cs: lone surrogates; Zl / Zp: line and paragraph separators.
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")


_CANDIDATE_RE = re.compile(r"[^\x20-\x7e]")  # everything but printable ASCII is looked at


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    return _visible(ch) if _unsafe(ch) else ch


def safe_line(value: object) -> str:
    """``value`` as one line with every control and format character shown visibly."""
    text = value if isinstance(value, str) else str(value)
    return _CANDIDATE_RE.sub(_escape, text)


def safe_text(value: object) -> str:
    """``value`` with newlines kept and every other control or format character shown visibly."""
    text = value if isinstance(value, str) else str(value)
    return "\n".join(safe_line(part) for part in text.replace("\r\n", "\n").split("\n"))


def is_safe(value: str) -> bool:
    """True when :func:`safe_line` would leave ``value`` as it is."""
    return not any(_unsafe(m.group()) for m in _CANDIDATE_RE.finditer(value))
