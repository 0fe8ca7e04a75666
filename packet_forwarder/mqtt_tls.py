"""The TLS context of the MQTT link, built from the configured files with errors that name them.

One function used by the link at every connect and by ``config check``/``doctor``,
so a CA file that is missing or not a certificate is reported the same way in
both places, before the gateway buffers in silence. The files are read at each
connect on purpose: a renewed certificate is picked up without a restart.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsFilesError(ValueError):
    """A configured CA, certificate or key cannot be used; the message names the file."""


def _no_password() -> bytes:
    """An encrypted key must fail clearly, never prompt on a terminal nobody watches."""
    return b""


def tls_context(ca_cert: Path | None, client_cert: Path | None,
                client_key: Path | None) -> ssl.SSLContext:
    """A client context that verifies the broker (system CAs when ``ca_cert`` is None)
    and presents the client certificate when one is configured."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_cert is not None:
        try:
            context.load_verify_locations(cafile=str(ca_cert))
        except FileNotFoundError as exc:
            raise TlsFilesError(f"mqtt.ca_cert: {ca_cert} does not exist") from exc
        except (OSError, ssl.SSLError) as exc:
            raise TlsFilesError(
                f"mqtt.ca_cert: {ca_cert} is not a PEM CA certificate ({exc})") from exc
        if not context.get_ca_certs():
            raise TlsFilesError(f"mqtt.ca_cert: {ca_cert} holds no CA certificate")
    if client_cert is not None:
        try:
            context.load_cert_chain(str(client_cert), str(client_key) if client_key else None,
                                    password=_no_password)
        except FileNotFoundError as exc:
            raise TlsFilesError(
                f"mqtt.client_cert/client_key: {exc.filename or client_cert} does not exist"
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            raise TlsFilesError(
                f"mqtt.client_cert/client_key: {client_cert} / {client_key} cannot be used "
                f"({exc})") from exc
    return context
