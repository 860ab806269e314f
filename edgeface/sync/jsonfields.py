"""Fields of signed JSON documents (manifests, announcements, certificates, timestamps), read one way.

Each reader raises `Rejected` with the caller's reason code, so a malformed field is refused on the rejection
path of the document it is in."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from edgeface.sync.errors import Rejected


def base64_field(doc: dict[str, object], key: str, code: str) -> bytes:
    """`doc[key]`, a JSON string of strict base64, decoded."""
    try:
        value = doc[key]
        if not isinstance(value, str):
            raise TypeError(f"a JSON string is needed, got {type(value).__name__}")
        return base64.b64decode(value, validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise Rejected(code, f"{key!r} must be base64 ({exc})") from exc


def time_field(doc: dict[str, object], key: str, code: str) -> datetime:
    """`doc[key]`, an RFC 3339 time with an offset (at most 64 characters)."""
    value = doc.get(key)
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) and len(value) <= 64 else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise Rejected(code, f"{key!r} must be an RFC 3339 time with offset, got {value!r:.80}")
    return moment
