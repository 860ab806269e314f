"""Fetching a payload named by a signed manifest over HTTP(S): bounded, resumable, verified before use.

Only a URL the signed manifest names is ever fetched, and only its signed length is ever read: a
`Content-Length` or `Content-Range` that disagrees with it is refused before the body is read. TLS verifies
the server against the system CAs or `sync.url.ca_file`. A dropped connection resumes where it stopped
(HTTP `Range`); failures are retried `retries` times with exponential backoff and full jitter, and only while
the broker connection is up (a door that is offline waits for it instead of spending its retries). A
transfer slower than `min_bytes_per_s` over any `stall_s` window (a slow-loris server) or longer than
`total_s` in all is abandoned. The payload's sha256 is checked before it is returned.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from edgeface.sync.errors import Rejected
from edgeface.util.fields import bounded, check_fields

READ_BYTES = 64 * 1024
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class UrlFetchSettings:
    """The `[sync.url]` table: how a door fetches payloads that a signed manifest names by URL."""

    ca_file: Path | None = None  # None: the system's CA certificates
    allow_http: bool = False  # plain http:// only on a trusted network (the payload is still sha256-checked)
    total_s: float = bounded(600.0, 1.0, 86_400.0)
    stall_s: float = bounded(30.0, 0.1, 3600.0)
    min_bytes_per_s: int = bounded(1024, 1, 1 << 30)
    retries: int = bounded(5, 0, 100)
    backoff_s: float = bounded(1.0, 0.01, 600.0)
    backoff_max_s: float = bounded(60.0, 0.01, 3600.0)

    def __post_init__(self) -> None:
        check_fields(self, "sync.url")

    def backoff(self, attempt: int) -> float:
        """Seconds before retry `attempt` (1, 2, ...): exponential, capped, with full jitter."""
        ceiling = min(self.backoff_max_s, self.backoff_s * 2.0 ** min(attempt - 1, 32))
        return random.uniform(ceiling / 2, ceiling)


class Cancelled(Exception):
    """The fetch was abandoned because a newer announcement arrived or the client closed."""


class _Retry(Exception):
    """A failure worth another attempt (resuming from what arrived)."""

    def __init__(self, rejected: Rejected) -> None:
        super().__init__(rejected.reason)
        self.rejected = rejected


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    size: int
    sha256: str


def check_url(url: str, allow_http: bool) -> None:
    scheme = urlsplit(url).scheme
    if scheme != "https" and not (scheme == "http" and allow_http):
        raise Rejected("fetch_failed", f"{url[:120]}: only https:// URLs are fetched (sync.url.allow_http)")


def _context(settings: UrlFetchSettings) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise Rejected("fetch_failed", f"sync.url.ca_file {settings.ca_file}: unusable ({exc})") from exc


class _Transfer:
    """One attempt: connect, check the response headers against the signed size, read into `buffer`."""

    def __init__(
        self, target: Target, settings: UrlFetchSettings, buffer: bytearray, deadline: float
    ) -> None:
        self.target, self.settings, self.buffer, self.deadline = target, settings, buffer, deadline
        parts = urlsplit(target.url)
        timeout = settings.stall_s
        if parts.scheme == "https":
            self.conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", parts.port, timeout=timeout, context=_context(settings)
            )
        else:
            self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        self.killed = False
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def _kill(self) -> None:  # a timer's way to unblock a read that trickles forever
        self.killed = True
        sock = self.conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def run(self, cancel: threading.Event) -> None:
        headers = {"Accept-Encoding": "identity", "User-Agent": "edgeface-sync"}
        if self.buffer:
            headers["Range"] = f"bytes={len(self.buffer)}-"
        # headers must arrive within one stall window, the whole transfer within the total deadline
        header_timer = threading.Timer(min(self.settings.stall_s, self._left()), self._kill)
        total_timer = threading.Timer(self._left(), self._kill)
        for timer in (header_timer, total_timer):
            timer.daemon = True
            timer.start()
        try:
            self.conn.request("GET", self.path, headers=headers)
            response = self.conn.getresponse()
            header_timer.cancel()
            if self.killed:  # the headers trickled in past the stall window
                raise OSError("response headers cut off")
            self._check_response(response)
            self._read_body(response, cancel)
        except ssl.SSLCertVerificationError as exc:
            raise Rejected("fetch_failed", f"TLS: {exc.verify_message or exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            if time.monotonic() >= self.deadline:
                raise self._over_time() from exc
            if self.killed:
                raise _Retry(
                    Rejected("fetch_stalled", f"no response within {self.settings.stall_s:g} s")
                ) from exc
            raise _Retry(Rejected("fetch_failed", f"{type(exc).__name__}: {exc}")) from exc
        finally:
            header_timer.cancel()
            total_timer.cancel()
            self.conn.close()

    def _left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def _over_time(self) -> Rejected:
        return Rejected(
            "fetch_stalled", f"not complete within sync.url.total_s = {self.settings.total_s:g} s"
        )

    def _check_response(self, response: http.client.HTTPResponse) -> None:
        size, have = self.target.size, len(self.buffer)
        if response.status == 206 and have:
            expected = f"bytes {have}-{size - 1}/{size}"
            if (response.getheader("Content-Range") or "").strip() != expected:
                raise Rejected(
                    "payload_truncated", f"resume answered {response.getheader('Content-Range')!r:.60}"
                )
        elif response.status == 200:
            self.buffer.clear()  # the server ignored the range: start over
        elif response.status in _RETRY_STATUS:
            raise _Retry(Rejected("fetch_failed", f"HTTP {response.status} {response.reason:.40}"))
        elif response.status == 416:
            raise Rejected("payload_truncated", f"server has fewer than the signed {size} bytes (HTTP 416)")
        else:
            raise Rejected("fetch_failed", f"HTTP {response.status} {response.reason:.40}")
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit():
            total = len(self.buffer) + int(length)
            if total > size:
                raise Rejected("oversized", f"server offers {total} bytes, the manifest signs {size}")
            if total < size:
                raise Rejected("payload_truncated", f"server offers {total} bytes, the manifest signs {size}")

    def _read_body(self, response: http.client.HTTPResponse, cancel: threading.Event) -> None:
        window_start, window_bytes = time.monotonic(), 0
        need = self.settings.min_bytes_per_s * self.settings.stall_s
        while len(self.buffer) < self.target.size:
            if cancel.is_set():
                raise Cancelled()
            data = response.read1(min(READ_BYTES, self.target.size - len(self.buffer) + 1))
            if not data and self.killed:
                raise OSError("transfer cut off")
            if not data:
                raise _Retry(Rejected("payload_truncated", f"connection closed at {len(self.buffer)} bytes"))
            self.buffer += data
            if len(self.buffer) > self.target.size:
                raise Rejected("oversized", f"server sent more than the signed {self.target.size} bytes")
            now, window_bytes = time.monotonic(), window_bytes + len(data)
            if now >= self.deadline:
                raise self._over_time()
            if now - window_start >= self.settings.stall_s:
                if window_bytes < need:
                    raise _Retry(self._stalled(window_bytes, now - window_start))
                window_start, window_bytes = now, 0
        if response.read1(1):
            raise Rejected("oversized", f"server sent more than the signed {self.target.size} bytes")

    def _stalled(self, received: int, seconds: float) -> Rejected:
        return Rejected(
            "fetch_stalled",
            f"{received} bytes in {seconds:.1f} s, below sync.url.min_bytes_per_s = {self.settings.min_bytes_per_s}",
        )


def fetch_payload(
    target: Target,
    settings: UrlFetchSettings,
    cancel: threading.Event,
    connected: Callable[[], bool] = lambda: True,
) -> bytearray:
    """The payload at `target.url`, exactly `target.size` bytes with sha256 `target.sha256`.

    Raises `Rejected` when it cannot be had within the limits, `Cancelled` when `cancel` is set."""
    check_url(target.url, settings.allow_http)
    deadline = time.monotonic() + settings.total_s
    buffer = bytearray()
    attempt = 0
    while True:
        try:
            _Transfer(target, settings, buffer, deadline).run(cancel)
            break
        except _Retry as retry:
            attempt += 1
            if attempt > settings.retries:
                raise retry.rejected from None
            _pause(settings.backoff(attempt), deadline, cancel, connected, retry.rejected)
    if hashlib.sha256(buffer).hexdigest() != target.sha256:
        raise Rejected("payload_sha256", f"{target.url[:120]}: payload does not match the signed sha256")
    return buffer


def _pause(
    seconds: float, deadline: float, cancel: threading.Event, connected: Callable[[], bool], why: Rejected
) -> None:
    """Back off, then wait for the broker connection (retries are spent only while connected)."""
    if time.monotonic() + seconds >= deadline:
        raise why
    if cancel.wait(seconds):
        raise Cancelled()
    while not connected():
        if time.monotonic() >= deadline:
            raise why
        if cancel.wait(0.5):
            raise Cancelled()
