"""Agent-controlled text is made visible, never interpreted by the terminal."""

import pytest

from core.notice import Notice
from core.safe_text import is_safe, safe_line, safe_text


@pytest.mark.parametrize("raw, shown", [
    ("CR-001.md", "CR-001.md"),
    ("\x1b[2J\x1b]0;owned\x07x.md", "\\x1b[2J\\x1b]0;owned\\x07x.md"),
    ("a\nb\rc\td", "a\\nb\\rc\\td"),
    ("csi\x9b2J", "csi\\x9b2J"),
    ("del\x7f", "del\\x7f"),
    ("bidi\u202etxt.md", "bidi\\u202etxt.md"),
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("sep\u2028line", "sep\\u2028line"),
    ("bad\udcffbyte", "bad\\xffbyte"),
    ("Übersicht – ✓ 文档", "Übersicht – ✓ 文档"),
])
def test_safe_line_shows_every_control_character(raw, shown):
    assert safe_line(raw) == shown
    assert is_safe(shown)
    assert is_safe(raw) == (raw == shown)


def test_safe_text_keeps_newlines_only():
    assert safe_text("one\r\ntwo\n\x1b[31mred") == "one\ntwo\n\\x1b[31mred"
    assert safe_line(42) == "42"


def test_notice_one_line_folds_whitespace():
    assert Notice(title="Checked in", message="CR-001 for claude\nChecked in: CR-001 (v0.1)").one_line() == \
        "Checked in: CR-001 for claude Checked in: CR-001 (v0.1)"
