"""The one rule for identity ids and display names, wherever they enter (enrolment, `gallery build`, a
signed bundle, a stored gallery): text that every consumer can encode and print on one line.

An id or name is a `str` that encodes as UTF-8 (no lone surrogates), holds no character `printable` would
escape (C0/C1 controls, DEL, line/paragraph separators, bidirectional controls) and is bounded in length:
an id 1..MAX_LABEL_CHARS characters, a name 0..MAX_LABEL_CHARS. A value that passed can always be put in a
JSON payload, a log line and a Home Assistant entity.
"""

from __future__ import annotations

from edgeface.util.logsafe import is_printable_char, printable

MAX_LABEL_CHARS = 256


def check_label(value: object, what: str, *, allow_empty: bool = False) -> str:
    """`value` if it is a valid identity id (`allow_empty=False`) or name; ValueError naming the problem."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ValueError(f"{what} must not be empty")
    if len(value) > MAX_LABEL_CHARS:
        raise ValueError(f"{what} must be at most {MAX_LABEL_CHARS} characters, got {len(value)}")
    if value.isascii() and value.isprintable():
        return value
    bad = sorted({char for char in value if not is_printable_char(char)})
    surrogates = [char for char in bad if 0xD800 <= ord(char) <= 0xDFFF]
    if surrogates:
        raise ValueError(
            f"{what} '{printable(value, 80)}' is not valid UTF-8 text (lone surrogate "
            f"U+{ord(surrogates[0]):04X}, e.g. from an undecodable file name or a JSON escape)"
        )
    if bad:
        codes = ", ".join(f"U+{ord(char):04X}" for char in bad[:4])
        raise ValueError(
            f"{what} '{printable(value, 80)}' holds characters that cannot be sent or shown ({codes}): "
            "no control characters, lone surrogates, line separators or bidi controls"
        )
    return value
