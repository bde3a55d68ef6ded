"""TLS helpers shared by socd's clients.

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
