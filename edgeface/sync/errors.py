"""Why a bundle was rejected: a stable short code (for tests and dashboards) plus a human detail.

The detail often quotes a field from the network; it is made printable and cut to `MAX_DETAIL` characters
here, once, so no log line or retained `gallery/state` can echo an attacker's megabytes or control codes.
"""

from __future__ import annotations

from edgeface.errors import BundleError
from edgeface.util.logsafe import printable

MAX_DETAIL = 240

CODES = (
    "bad_signature",
    "manifest_not_json",
    "manifest_invalid",
    "announcement_invalid",
    "identities_sha256",
    "vectors_sha256",
    "payload_invalid",
    "fleet_mismatch",
    "model_mismatch",
    "dim_mismatch",
    "version_not_newer",
    "version_jump",
    "base_mismatch",
    "result_mismatch",
    "expired",
    "oversized",
    "chunk_missing",
    "chunk_truncated",
    "chunk_sha256",
    "payload_sha256",
    "apply_failed",
    "fetch_failed",
    "fetch_stalled",
    "payload_truncated",
    "timestamp_invalid",
    "stale",
    "cert_invalid",
    "key_revoked",
)


class Rejected(BundleError):
    """A bundle failed a check; `reason` (``"code: detail"``) goes into the device's `gallery/state`."""

    def __init__(self, code: str, detail: str) -> None:
        if code not in CODES:
            raise ValueError(f"unknown rejection code {code!r}")
        detail = printable(detail, MAX_DETAIL)
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    @property
    def reason(self) -> str:
        return str(self)
