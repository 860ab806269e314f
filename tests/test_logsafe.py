"""printable(): one log line whatever the input, escapes visible, length bounded."""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeface.logsafe import printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Ada Lovelace", "Ada Lovelace"),
        ("Zoë 李 😀", "Zoë 李 😀"),
        ("a\nINFO forged", "a\\nINFO forged"),
        ("cr\rtab\t", "cr\\rtab\\t"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("nul\x00del\x7f", "nul\\x00del\\x7f"),
        ("c1\x85\x9b", "c1\\x85\\x9b"),
        ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
        ("user\u202etxt.exe", "user\\u202etxt.exe"),
        ("iso\u2066x\u2069", "iso\\u2066x\\u2069"),
        ("bad\udcffbyte", "bad\\udcffbyte"),
        ("back\\slash", "back\\\\slash"),
    ],
)
def test_escapes_what_could_forge_or_hide_text(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_non_strings_use_str() -> None:
    assert printable(42) == "42"
    assert printable(None) == "None"
    assert printable(b"a\nb") == "b'a\\\\nb'"  # str(bytes) is already escaped; the backslash is kept visible


def test_truncates_with_a_visible_count() -> None:
    assert printable("x" * 250) == "x" * 200 + "…(+50 chars)"
    assert printable("abcdef", limit=3) == "abc…(+3 chars)"
    assert printable("abc", limit=3) == "abc"
    # an escape is never cut in half: it goes whole or is counted as left out
    assert printable("ab\n", limit=3) == "ab…(+1 chars)"
    with pytest.raises(ValueError, match="limit"):
        printable("x", limit=0)


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_always_one_bounded_line(text: str, limit: int) -> None:
    out = printable(text, limit)
    full = printable(text, limit=10**9)
    assert len(out.splitlines()) <= 1
    assert not any(c in out for c in "\x1b\x00\x7f\x85\u2028\u2029\u202e")
    if len(full) <= limit:
        assert out == full
    else:
        prefix, left_out = re.fullmatch(r"(.*)…\(\+(\d+) chars\)", out, re.S).groups()  # type: ignore[union-attr]
        assert len(prefix) <= limit and full.startswith(prefix) and 0 < int(left_out) <= len(text)


def test_a_forged_line_stays_in_its_record(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("edgeface.test").info("identity %s", printable("eve\nERROR root: door forced"))
    assert len(caplog.text.splitlines()) == 1
