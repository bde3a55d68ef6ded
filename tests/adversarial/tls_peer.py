"""TLS servers with an untrusted certificate, run in a child process.

``python -m tests.adversarial.tls_peer CERT KEY`` listens on loopback and prints one JSON
line with its ports once every listener is up:

* ``smtp``: an SMTP server (aiosmtpd) that requires STARTTLS and then presents ``CERT``;
* ``smtp_plain``: an SMTP server that offers no STARTTLS at all;
* ``tls``: a bare TLS listener presenting ``CERT`` (HTTPS, MQTT over TLS, Elasticsearch,
  TAXII clients all fail their handshake against it).

It runs in its own process so that the test process's ``/proc/self/fd`` holds only the
client's sockets: a socket a client forgets to close shows as one more open descriptor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import subprocess
import sys
from pathlib import Path

from aiosmtpd.controller import Controller


def make_untrusted_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 that no trust store knows."""
    cert, key = directory / "untrusted.crt", directory / "untrusted.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=untrusted socd test peer",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key


class _Sink:
    """aiosmtpd handler: accepts and forgets (no client ever gets past STARTTLS)."""

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _drain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.read(4096):
            pass
    except (OSError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def _serve(cert: str, key: str) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    smtp = Controller(_Sink(), hostname="127.0.0.1", port=_free_port(), tls_context=ctx,
                      require_starttls=True)
    smtp.start()
    plain = Controller(_Sink(), hostname="127.0.0.1", port=_free_port())
    plain.start()
    server = await asyncio.start_server(_drain, "127.0.0.1", 0, ssl=ctx)
    ports = {"smtp": smtp.port, "smtp_plain": plain.port,
             "tls": server.sockets[0].getsockname()[1]}
    print(json.dumps(ports), flush=True)
    try:
        await server.serve_forever()
    finally:
        smtp.stop()
        plain.stop()


def main() -> None:
    # The clients' refused handshakes are the point: keep the servers quiet about them.
    logging.basicConfig(level=logging.CRITICAL)
    logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    asyncio.run(_serve(sys.argv[1], sys.argv[2]))


if __name__ == "__main__":
    main()
