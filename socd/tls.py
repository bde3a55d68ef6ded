"""The one builder of socd's TLS contexts, for every client and listener.

:func:`client_context` (MQTT collector and notifier, HTTP notifiers, e-mail, the CEF
sink, MISP) and :func:`server_context` (syslog/RELP listeners, the webhook collector,
the blocker's EDL feed) start from :func:`ssl.create_default_context`, require TLS 1.2
or later, and take the file names already resolved (the config models in
:mod:`socd.config.tls` and the plugins' own options resolve them against the config
file's folder). One place decides how a CA bundle, a client certificate or
``verify: false`` turn into a context, so every component reads the same options the
same way.

:func:`closing_on_failure` makes every blocking socket an :class:`ssl.SSLContext` wraps
close itself when its handshake fails. Python closes the socket only when
``wrap_socket`` runs the handshake itself (``do_handshake_on_connect=True``); a library
that wraps with ``do_handshake_on_connect=False`` and then calls ``do_handshake()``
(paho-mqtt, under aiomqtt, in the MQTT collector and notifier) drops the socket
unclosed when the server's certificate is refused. The socket then stays open for as
long as the exception's traceback lives and is finally closed by the garbage collector
with a ``ResourceWarning``: one leaked descriptor per reconnect attempt against a broker
with an untrusted certificate. asyncio's own TLS (``loop.start_tls``, aiohttp, aiosmtplib)
does not go through ``wrap_socket`` and is not affected.
"""

from __future__ import annotations

import ssl


class _ClosingSSLSocket(ssl.SSLSocket):
    """An :class:`ssl.SSLSocket` that closes itself when its handshake fails."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise  # a non-blocking handshake in progress, not a failure
        except BaseException:
            self.close()
            raise


def closing_on_failure(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """``ctx``, whose wrapped sockets close themselves on a failed handshake."""
    ctx.sslsocket_class = _ClosingSSLSocket
    return ctx


def client_context(*, ca_file: str | None = None, cert_file: str | None = None,
                   key_file: str | None = None, verify: bool = True,
                   check_hostname: bool = True) -> ssl.SSLContext:
    """A context for connecting to a server.

    The server's certificate is checked against ``ca_file`` (PEM), or the system's CAs
    without one, and must name the host unless ``check_hostname`` is off;
    ``verify=False`` checks nothing (test servers only). ``cert_file`` (with
    ``key_file``, or the key inside ``cert_file``) is the client certificate of mutual
    TLS.
    """
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif not check_hostname:
        ctx.check_hostname = False
    return ctx


def server_context(*, cert_file: str, key_file: str, ca_file: str | None = None,
                   require_client_cert: bool = False) -> ssl.SSLContext:
    """A context for accepting connections with the certificate ``cert_file``.

    With ``ca_file``, clients may present a certificate signed by it (one that is
    not is refused); ``require_client_cert`` refuses clients without one (mutual TLS).
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if ca_file:
        ctx.load_verify_locations(ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return ctx
