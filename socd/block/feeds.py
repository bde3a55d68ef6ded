"""Block lists for firewall appliances: exports and External Dynamic Lists.

* :func:`render_txt` - one value a line (the EDL / External Threat Feed format
  FortiGate, Palo Alto and most others read);
* :func:`render_csv` - ``value,reason,origin,ref,expires`` (expires in RFC 3339);
* :class:`EdlServer` - an aiohttp server for ``/edl/ipv4.txt``, ``/edl/ipv6.txt`` and
  ``/edl/domains.txt``, protected by a token (``?token=``, ``Authorization: Bearer``,
  or HTTP Basic with the token as password), with ETag/Last-Modified so a
  polling appliance downloads the list only when it changed.

Every line is rebuilt from the parsed value and checked against a strict
character set (:func:`feed_value`): a stored value that is not exactly one
address, network or domain is skipped and counted, never served.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

import structlog
from aiohttp import web

from socd import netaddr
from socd.block.decisions import Decision, normalise
from socd.config import HttpLimits
from socd.http import HttpListener
from socd.tls import server_context

log = structlog.get_logger("socd.block.feeds")

FAMILIES = {"ipv4": ("ipv4",), "ipv6": ("ipv6",), "domains": ("domain",)}
_DOMAIN_LINE = re.compile(r"[a-z0-9_.-]{1,253}")


def select(decisions: Iterable[Decision], family: str | int | None = None) -> list[Decision]:
    """Decisions of one family: 4/``ipv4``, 6/``ipv6``, ``domains``; None = all."""
    if family is None:
        return list(decisions)
    key = {"4": "ipv4", "6": "ipv6", "domain": "domains"}.get(str(family), str(family))
    kinds = FAMILIES[key]
    return [d for d in decisions if d.kind in kinds]


def feed_value(decision: Decision) -> str | None:
    """The text of ``decision.value`` for one feed line, rebuilt from the parsed value;
    None when it is not one canonical address, network or domain of its kind.

    A feed line goes to firewall appliances as is: a value with a newline would be
    several entries (the SOC's own address, ``::/0``) that no guard ever checked.
    The store refuses such values; this is the last check before they leave socd.
    A skipped value is counted in ``socd_addresses_refused_total`` and logged.
    """
    try:
        return _feed_text(decision)
    except netaddr.AddressError as exc:
        netaddr.count_refusal(exc.reason)
        log.warning("block feed: invalid value skipped", value=decision.value[:64],
                    kind=decision.kind, reason=exc.reason)
        return None


def _feed_text(decision: Decision) -> str:
    value = decision.value
    if decision.kind == "domain":
        try:
            text, kind = normalise(value, count=False)
        except ValueError:
            raise netaddr.AddressError("bad_character", value) from None
        if kind != "domain" or _DOMAIN_LINE.fullmatch(text) is None:
            raise netaddr.AddressError("bad_character", value)
        return text
    net = netaddr.parse_network(value, count=False)
    if decision.kind != ("ipv4" if net.version == 4 else "ipv6"):
        raise netaddr.AddressError("syntax", value)
    return netaddr.safe_element(netaddr.canonical(str(net), count=False))


def render_txt(decisions: Iterable[Decision]) -> str:
    values = sorted({v for v in map(feed_value, decisions) if v is not None})
    return "".join(v + "\n" for v in values)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_csv(decisions: Iterable[Decision]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["value", "reason", "origin", "ref", "expires"])
    rows = [(value, d) for d in decisions if (value := feed_value(d)) is not None]
    for value, d in sorted(rows, key=lambda r: r[0]):
        writer.writerow([_cell(value), _cell(d.reason), _cell(d.origin), _cell(d.ref),
                         iso(d.expires)])
    return buf.getvalue()


def _cell(text: str) -> str:
    # A spreadsheet must not run a value as a formula (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def token_ok(request: web.Request, token: str) -> bool:
    """The request carries ``token`` (query, Bearer or Basic password)."""
    candidates: list[str] = []
    if "token" in request.query:
        candidates.append(request.query["token"])
    auth = request.headers.get("Authorization", "")
    scheme, _, cred = auth.partition(" ")
    if scheme.lower() == "bearer":
        candidates.append(cred.strip())
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(cred.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            decoded = ""
        candidates.append(decoded.partition(":")[2])
    want = token.encode()
    ok = False
    for cand in candidates:  # compare every candidate: no early exit on a match
        ok |= hmac.compare_digest(cand.encode(), want)
    return ok


class EdlServer:
    """Serves decisions as External Dynamic Lists: those ``decisions()`` returns, the
    enforced ones (``BlockStore.enforced``) unless the sink's ``edl.include_dry_run``
    asks for dry-run decisions too (a firewall polling the feed enforces every line)."""

    def __init__(self, decisions: Callable[[], list[Decision]], *, host: str, port: int,
                 token: str, last_change: Callable[[], float] | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None,
                 limits: HttpLimits | None = None, name: str = "edl") -> None:
        if len(token) < 16:
            raise ValueError("the EDL token must be at least 16 characters")
        self._decisions = decisions
        self._last_change = last_change
        self.host, self.port, self.token = host, port, token
        self.tls = (tls_cert, tls_key) if tls_cert and tls_key else None
        self.limits = limits or HttpLimits()
        self.name = name
        self._listener: HttpListener | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/edl/ipv4.txt", self._handler("ipv4"))
        app.router.add_get("/edl/ipv6.txt", self._handler("ipv6"))
        app.router.add_get("/edl/domains.txt", self._handler("domains"))
        return app

    def _handler(self, family: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not token_ok(request, self.token):
                return web.Response(status=401, text="token required\n",
                                    headers={"WWW-Authenticate": 'Bearer realm="socd-edl", '
                                             'Basic realm="socd-edl"'})
            body = render_txt(select(self._decisions(), family)).encode()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            changed = self._last_change() if self._last_change else time.time()
            last_modified = datetime.fromtimestamp(int(changed or time.time()), UTC)
            headers = {"ETag": etag, "Last-Modified": format_datetime(last_modified, usegmt=True),
                       "Cache-Control": "no-cache"}
            inm = request.headers.get("If-None-Match")
            if inm is not None:
                if etag in [t.strip() for t in inm.split(",")] or inm.strip() == "*":
                    return web.Response(status=304, headers=headers)
            elif "If-Modified-Since" in request.headers:
                try:
                    since = parsedate_to_datetime(request.headers["If-Modified-Since"])
                except (TypeError, ValueError):
                    since = None
                if since is not None and since.tzinfo is not None and last_modified <= since:
                    return web.Response(status=304, headers=headers)
            return web.Response(body=body, content_type="text/plain", charset="utf-8",
                                headers=headers)

        return handle

    async def start(self) -> None:
        ctx = None
        if self.tls is not None:
            ctx = server_context(cert_file=self.tls[0], key_file=self.tls[1])
        # Firewall appliances poll this from the network: the shared listener bounds
        # slow and idle clients and the number of connections (socd.http).
        listener = HttpListener(self.app(), name=self.name, host=self.host, port=self.port,
                                limits=self.limits, ssl_context=ctx)
        await listener.start()
        self._listener = listener
        self.port = listener.port  # the real port when port 0 was asked
        log.info("EDL server listening", host=self.host, port=self.port,
                 tls=self.tls is not None)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
