"""Make untrusted values safe to put into one log line (or a terminal, or a short status string).

`printable(value)` escapes every character that could start a new log line, move the cursor, change the
terminal's state or reorder the text on screen: C0 controls (including CR, LF, TAB and ESC), DEL, C1
controls, Unicode line/paragraph separators, bidirectional overrides/isolates/marks, and lone surrogates
(which would make a UTF-8 log handler fail). Escapes look like ``\\n``, ``\\x1b``, ``\\u202e``. The result is
cut to `limit` characters of output with a visible marker saying how many input characters were dropped.
The output is for people reading logs: it is not meant to be decoded back.
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_BIDI = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)  # ALM, LRM, RLM, LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})  # controls, surrogates, line/para separators


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    if char in _BIDI or unicodedata.category(char) in _UNSAFE_CATEGORIES:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte (surrogateescape)
            code -= 0xDC00
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return char


def is_printable_char(char: str) -> bool:
    """True when `printable` leaves `char` as it is."""
    return _escape(char) == char


def printable(value: object, limit: int = 200) -> str:
    """`value` as one safe line of at most `limit` characters plus a truncation marker.

    `bytes` are decoded as UTF-8 (invalid bytes shown as ``\\xNN``); anything else goes through `str()`.
    The marker is ``...[+N chars]`` (``...[+N bytes]`` for bytes): N counts the input that was left out.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        text, unit = data[: 4 * limit].decode("utf-8", "surrogateescape"), "bytes"
    else:
        text, unit = (value if isinstance(value, str) else str(value)), "chars"
    out: list[str] = []
    used = taken = 0
    for char in text:
        piece = _escape(char)
        if used + len(piece) > limit:
            break
        out.append(piece)
        used += len(piece)
        taken += 1
    if unit == "bytes":
        dropped = len(data) - len(text[:taken].encode("utf-8", "surrogateescape"))
    else:
        dropped = len(text) - taken
    return "".join(out) + (f"...[+{dropped} {unit}]" if dropped else "")
