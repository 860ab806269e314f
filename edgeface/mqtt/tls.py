"""TLS context for the broker connection from the configured files (read bounded, regular files only)."""

from __future__ import annotations

import ssl
from pathlib import Path

from edgeface.errors import ConfigError
from edgeface.mqtt.settings import TlsSettings
from edgeface.util.files import MAX_CA_BYTES, MAX_KEY_BYTES, FileRefused, check_regular, read_bytes
from edgeface.util.logsafe import printable

CONFIG_LABELS = ("mqtt.tls.ca_file", "mqtt.tls.cert_file/key_file")


def tls_context(settings: TlsSettings, labels: tuple[str, str] = CONFIG_LABELS) -> ssl.SSLContext:
    """Verify the broker against ``ca_file`` (or the system store); present a client cert if configured.
    `labels` name the CA and the client cert/key options in errors (config keys or CLI flags)."""
    ca_label, cert_label = labels
    if settings.ca_file is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        context = _context_trusting(settings.ca_file, ca_label)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.cert_file is not None and settings.key_file is not None:
        try:
            check_regular(settings.cert_file, MAX_KEY_BYTES, "client certificate")
            check_regular(settings.key_file, MAX_KEY_BYTES, "client key")
            context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
        except FileRefused as exc:
            raise ConfigError(f"{cert_label}: {exc}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{cert_label}: cannot load {settings.cert_file} with {settings.key_file}: {_reason(exc)}"
            ) from None
    if settings.insecure:
        context.check_hostname = False
    return context


def _context_trusting(ca_file: Path, label: str) -> ssl.SSLContext:
    """A client context trusting only the certificates in `ca_file` (PEM, or one DER certificate)."""
    try:
        data = read_bytes(ca_file, MAX_CA_BYTES, "CA file")
    except FileRefused as exc:
        raise ConfigError(f"{label}: {exc}") from None
    try:
        cadata: str | bytes = data.decode("ascii") if b"-----BEGIN" in data else data
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=cadata if data else None)
    except (UnicodeDecodeError, ValueError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{label}: {printable(ca_file)} holds no CA certificate (PEM or DER): {_reason(exc)}"
        ) from None
    if not data or not context.get_ca_certs():  # an empty file would silently trust nothing at all
        raise ConfigError(f"{label}: {printable(ca_file)} holds no CA certificate (PEM or DER)")
    return context


def _reason(exc: Exception) -> str:
    return printable(str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__, 200)
