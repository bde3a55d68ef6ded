"""``socd block-helper``: the only socd process that may change the firewall.

socd parses input from hostile places (syslog, webhooks, IoC lists), so the daemon
holds no capability at all. Like CrowdSec's bouncers and fail2ban's actions, the
firewall writer is apart: this small helper, run by its own systemd unit
(deploy/systemd/socd-blocker.service) with CAP_NET_ADMIN and nothing else, listens
on a Unix socket and accepts one fixed message format (:mod:`socd.block.protocol`).

What it trusts, and what not:

* the **peer**: only root and the users/groups given with ``--allow-user`` /
  ``--allow-group`` (checked with SO_PEERCRED on every connection; the socket file
  is ``0660 root:socd`` as well). Anyone else is answered ``denied``.
* **nothing in the message**: the envelope is validated strictly (an unknown
  operation, backend, table or key closes the connection), every element is parsed
  again with :mod:`socd.netaddr` and must be the canonical text of one address or
  network, every timeout a whole number in range; a bad element is refused alone.
* **its own command line** for what it may change: ``table inet <--table>`` and the
  ipset sets ``<--ipset-name>4``/``6``. A request naming anything else is refused;
  nft and ipset only ever get scripts built from parsed objects.

It reads one request per connection (``--max-request-bytes``, ``--read-timeout-secs``),
runs one firewall change at a time, and answers what was applied and what refused.
With systemd socket activation (``socd-blocker.socket``) it serves the socket it is
given; otherwise it creates ``--socket`` itself (mode 0660, group ``--socket-group``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import grp
import os
import pwd
import signal
import socket
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from socd import log as socd_log
from socd import systemd
from socd.block.elements import Batch, Outcome
from socd.block.ipset import IpsetBackend
from socd.block.nft import NftBackend, NftError
from socd.block.protocol import (
    DEFAULT_SOCKET,
    MAX_REQUEST_BYTES,
    IpsetRequest,
    NftRequest,
    ProtocolError,
    Request,
    decode_request,
    encode_response,
    error_response,
    ok_response,
    refusals_text,
)

log = structlog.get_logger("socd.block.helper")

SD_LISTEN_FDS_START: Final = 3
_PEERCRED: Final = struct.Struct("3i")  # pid, uid, gid


@dataclass(frozen=True)
class HelperConfig:
    """What the helper may change, who may ask, and the limits of a request."""

    table: str = "socd"
    ipset_name: str = "socd"
    nft: str = "nft"
    ipset: str = "ipset"
    allow_uids: frozenset[int] = field(default_factory=frozenset)
    allow_gids: frozenset[int] = field(default_factory=frozenset)
    max_request_bytes: int = MAX_REQUEST_BYTES
    read_timeout_secs: float = 30.0
    max_connections: int = 16

    def __post_init__(self) -> None:
        # The same name rules as the daemon's: a bad name fails here, at start.
        NftBackend(table=self.table)
        IpsetBackend(set_name=self.ipset_name)

    def allows(self, uid: int, gid: int) -> bool:
        return uid == 0 or uid in self.allow_uids or gid in self.allow_gids


class Helper:
    """Serves requests on a listening socket; one firewall change at a time."""

    def __init__(self, config: HelperConfig) -> None:
        self.config = config
        self._lock = asyncio.Lock()
        self._connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: check the peer, read one line, answer, close."""
        peer = _peer(writer)
        self._connections += 1
        try:
            response = await self._respond(reader, peer)
            if response is not None:
                writer.write(encode_response(response))
                await asyncio.wait_for(writer.drain(), self.config.read_timeout_secs)
        except (OSError, TimeoutError) as exc:
            log.info("connection dropped", peer=peer, error=str(exc))
        finally:
            self._connections -= 1
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 5)

    async def _respond(self, reader: asyncio.StreamReader,
                       peer: dict[str, int]) -> dict[str, Any] | None:
        if not self.config.allows(peer["uid"], peer["gid"]):
            log.warning("peer refused", **peer)
            return error_response("denied", f"uid {peer['uid']} / gid {peer['gid']} may not "
                                  "change the firewall")
        if self._connections > self.config.max_connections:
            log.warning("too many connections; request refused", **peer)
            return error_response("busy", "too many connections; try again")
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"),
                                          self.config.read_timeout_secs)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return None  # connected and left (a readiness probe)
            return self._protocol_error(peer, "the request does not end with a newline")
        except asyncio.LimitOverrunError:
            return self._protocol_error(
                peer, f"the request is larger than {self.config.max_request_bytes} bytes")
        except TimeoutError:
            return self._protocol_error(
                peer, f"no complete request within {self.config.read_timeout_secs:g}s")
        try:
            request, batch = decode_request(line)
            self._check_target(request)
        except ProtocolError as exc:
            return self._protocol_error(peer, str(exc))
        return await self._execute(request, batch, peer)

    def _protocol_error(self, peer: dict[str, int], message: str) -> dict[str, Any]:
        log.warning("request refused", reason=message, **peer)
        return error_response("protocol", message)

    def _check_target(self, request: Request) -> None:
        if isinstance(request, NftRequest) and request.table != self.config.table:
            raise ProtocolError(f"table {request.table!r} is not socd's: this helper changes "
                                f"only table inet {self.config.table}")
        if isinstance(request, IpsetRequest) and request.set_name != self.config.ipset_name:
            raise ProtocolError(f"set {request.set_name!r} is not socd's: this helper changes "
                                f"only the sets {self.config.ipset_name}4 and "
                                f"{self.config.ipset_name}6")

    def _backend(self, request: Request) -> NftBackend | IpsetBackend:
        if isinstance(request, NftRequest):
            return NftBackend(table=self.config.table, priority=request.priority,
                              direction=request.direction, nft=self.config.nft)
        return IpsetBackend(set_name=self.config.ipset_name, ipset=self.config.ipset)

    async def _execute(self, request: Request, batch: Batch,
                       peer: dict[str, int]) -> dict[str, Any]:
        backend = self._backend(request)
        async with self._lock:
            try:
                if request.op == "check":
                    await backend.check_here()
                    outcome = Outcome()
                else:
                    outcome = await backend.execute(batch)
            except NftError as exc:
                log.error("firewall change failed", op=request.op, backend=backend.name,
                          kind=exc.kind, error=str(exc), **peer)
                return error_response(exc.kind, str(exc))
        if outcome.refused:
            log.warning("elements refused", op=request.op, backend=backend.name,
                        refused=len(outcome.refused), first=refusals_text(outcome.refused),
                        **peer)
        if request.op != "check":
            log.info("firewall changed", op=request.op, backend=backend.name,
                     applied=outcome.applied, refused=len(outcome.refused), **peer)
        return ok_response(outcome)


def _peer(writer: asyncio.StreamWriter) -> dict[str, int]:
    sock = writer.get_extra_info("socket")
    pid, uid, gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return {"pid": pid, "uid": uid, "gid": gid}


# ----------------------------------------------------------------- the socket ----
def activated_socket() -> socket.socket | None:
    """The listening socket systemd passed (socket activation), or None."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if count != 1:
        raise SystemExit(f"socd block-helper: expected one socket from systemd, got {count}")
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise SystemExit("socd block-helper: the socket from systemd is not a Unix stream "
                         "socket (ListenStream= a path)")
    return sock


def bound_socket(path: str, group: int | None, mode: int = 0o660) -> socket.socket:
    """A new listening socket at ``path``: created private, then given its group and
    mode, so no one else can connect in between. A stale socket file is replaced."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    if group is not None:
        os.chown(path, -1, group)
    os.chmod(path, mode)
    sock.listen(64)
    return sock


async def serve(config: HelperConfig, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve ``sock`` until ``stop`` is set."""
    helper = Helper(config)
    server = await asyncio.start_unix_server(helper.handle, sock=sock,
                                             limit=config.max_request_bytes)
    async with server:
        systemd.notify("READY=1", "STATUS=serving firewall changes")
        await stop.wait()


# ---------------------------------------------------------------- command line ----
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--socket", default=DEFAULT_SOCKET,
                   help="socket path when not socket-activated (default: %(default)s)")
    p.add_argument("--socket-group", help="group of that socket (mode 0660), e.g. socd")
    p.add_argument("--allow-user", action="append", default=[], metavar="USER",
                   help="a user who may send requests (root always may); repeatable")
    p.add_argument("--allow-group", action="append", default=[], metavar="GROUP",
                   help="a primary group whose members may send requests; repeatable")
    p.add_argument("--table", default="socd", help="the only nftables table (family inet) "
                   "it changes (default: %(default)s)")
    p.add_argument("--ipset-name", default="socd", help="the only ipset sets it changes: "
                   "NAME4 and NAME6 (default: %(default)s)")
    p.add_argument("--nft", default="nft", help="nft binary (default: %(default)s)")
    p.add_argument("--ipset", default="ipset", help="ipset binary (default: %(default)s)")
    p.add_argument("--max-request-bytes", type=int, default=MAX_REQUEST_BYTES,
                   help="largest request line (default: %(default)s)")
    p.add_argument("--read-timeout-secs", type=float, default=30.0,
                   help="time a client has to send its request (default: %(default)s)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--log-format", default="auto", choices=("auto", "json", "console"))


def _ids(names: Sequence[str], lookup: Any, what: str) -> frozenset[int]:
    out = set()
    for name in names:
        try:
            out.add(lookup(name))
        except KeyError:
            raise SystemExit(f"socd block-helper: no {what} named {name!r}") from None
    return frozenset(out)


def config_from(args: argparse.Namespace) -> HelperConfig:
    try:
        return HelperConfig(
            table=args.table, ipset_name=args.ipset_name, nft=args.nft, ipset=args.ipset,
            allow_uids=_ids(args.allow_user, lambda n: pwd.getpwnam(n).pw_uid, "user"),
            allow_gids=_ids(args.allow_group, lambda n: grp.getgrnam(n).gr_gid, "group"),
            max_request_bytes=args.max_request_bytes,
            read_timeout_secs=args.read_timeout_secs)
    except ValueError as exc:
        raise SystemExit(f"socd block-helper: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """``socd block-helper``: serve until SIGTERM or SIGINT."""
    socd_log.setup(args.log_level, args.log_format)
    config = config_from(args)
    sock = activated_socket()
    if sock is None:
        group = _ids([args.socket_group], lambda n: grp.getgrnam(n).gr_gid, "group") \
            if args.socket_group else frozenset()
        sock = bound_socket(args.socket, next(iter(group), None))
    where = sock.getsockname() or args.socket
    log.info("blocker helper listening", socket=where, table=f"inet {config.table}",
             ipset=f"{config.ipset_name}4/{config.ipset_name}6",
             allow_uids=sorted(config.allow_uids), allow_gids=sorted(config.allow_gids))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, sock, stop)

    asyncio.run(main())
    log.info("blocker helper stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="socd block-helper", description=__doc__.split(
        "\n", 1)[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
