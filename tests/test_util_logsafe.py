"""`edgeface.util.logsafe.printable`: one safe, bounded line from any value."""

from __future__ import annotations

import logging

import pytest

from edgeface.util.logsafe import printable

UNSAFE = [
    "\n",
    "\r",
    "\t",
    "\x00",
    "\x1b",
    "\x7f",
    "\x85",  # NEL (C1)
    "\x9b",  # CSI (C1)
    "\u2028",
    "\u2029",
    "\u202e",  # RLO
    "\u2066",  # LRI
    "\u200f",  # RLM
    "\u061c",  # ALM
    "\ud800",  # lone surrogate
]


@pytest.mark.parametrize("char", UNSAFE)
def test_every_unsafe_character_is_escaped(char: str) -> None:
    out = printable(f"a{char}b")
    assert char not in out and out.startswith("a\\") and out.endswith("b")
    assert out.isprintable() and out.isascii()


def test_plain_text_and_non_latin_names_are_kept() -> None:
    for text in ("Nguyễn Văn Khánh", "李小龙", "O'Brien-Smith", "id-0042", "عبد الله"):
        assert printable(text) == text


def test_escapes_are_readable() -> None:
    assert printable("x\ny\x1b[2Jz\u202e") == "x\\ny\\x1b[2Jz\\u202e"


def test_truncation_is_bounded_and_marked() -> None:
    out = printable("A" * 3_000_000, limit=50)
    assert out == "A" * 50 + "...[+2999950 chars]"
    escaped = printable("\x1b" * 1000, limit=20)  # escapes count towards the limit, never split
    assert escaped.startswith("\\x1b" * 5) and escaped.endswith("...[+995 chars]")


def test_bytes_and_other_values() -> None:
    assert printable(b"ok\xff\n") == "ok\\xff\\n"
    assert printable(b"z" * 1000, limit=10) == "z" * 10 + "...[+990 bytes]"
    assert printable(12345) == "12345" and printable(None) == "None"
    with pytest.raises(ValueError):
        printable("x", limit=0)


def test_a_forged_log_line_stays_on_one_line(caplog: pytest.LogCaptureFixture) -> None:
    forged = "alice\n2026-01-01 00:00:00 INFO edgeface: door unlocked for admin\x1b[8m"
    with caplog.at_level(logging.INFO):
        logging.getLogger("edgeface.test").info("identity %s", printable(forged))
    assert caplog.text.count("\n") == 1 and "\x1b" not in caplog.text
