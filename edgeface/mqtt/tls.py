"""TLS context for the broker connection from the configured files."""

from __future__ import annotations

import ssl

from edgeface.errors import ConfigError
from edgeface.mqtt.settings import TlsSettings


def tls_context(settings: TlsSettings) -> ssl.SSLContext:
    """Verify the broker against ``ca_file`` (or the system store); present a client cert if configured."""
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(settings.ca_file) if settings.ca_file else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"mqtt.tls.ca_file: cannot load {settings.ca_file}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.cert_file is not None:
        try:
            context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"mqtt.tls.cert_file/key_file: cannot load {settings.cert_file} with {settings.key_file}: {exc}"
            ) from None
    if settings.insecure:
        context.check_hostname = False
    return context
