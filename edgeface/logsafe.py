"""Make untrusted text safe to put in one log line.

Identity names, MQTT topics and text from a broker can hold newlines (forged log lines), terminal escape
sequences (ESC ...) or Unicode bidi overrides (text that reads differently from what it is).
``printable`` renders any value as one line with those characters escaped, and bounds its length.
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
# Bidi embeddings, overrides, isolates and marks; with U+2028/2029 (line/paragraph separators).
_FORMAT = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    if char in _FORMAT or unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp"):
        code = ord(char)
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"
    return char


def printable(value: object, limit: int = 200) -> str:
    """``str(value)`` on one line: controls (C0, DEL, C1), line separators, bidi controls, lone surrogates
    and backslashes escaped; at most ``limit`` characters of output plus a visible ``…(+N chars)`` marker
    that counts the characters of ``str(value)`` left out."""
    if limit < 1:
        raise ValueError(f"printable limit: must be >= 1, got {limit}")
    text = value if isinstance(value, str) else str(value)
    out: list[str] = []
    used = 0
    for index, char in enumerate(text):
        piece = _escape(char)
        if used + len(piece) > limit:
            return "".join(out) + f"…(+{len(text) - index} chars)"
        out.append(piece)
        used += len(piece)
    return "".join(out)
