"""Firewall log payloads read by the ``syslog`` decoder: netfilter and pf ``filterlog``.

**netfilter** (iptables/nftables ``LOG`` targets, UFW, firewalld) writes kernel lines::

    [UFW BLOCK] IN=eth0 OUT= MAC=... SRC=203.0.113.9 DST=10.0.0.5 LEN=40 ... PROTO=TCP
    SPT=51638 DPT=22 WINDOW=1024 RES=0x00 SYN URGP=0

The text before ``IN=`` is the log prefix the administrator chose; it is the only place
the verdict is written, so it is read for one: ``BLOCK``/``DROP``/``DENY``/``REJECT`` make
``event.action: deny``, ``ALLOW``/``ACCEPT``/``PASS`` make ``allow``, anything else
(``[UFW AUDIT]``, no prefix) ``log``.

**filterlog** (pfSense 2.2 and later, OPNsense) writes one comma-separated line per
packet: rule number, sub-rule, anchor, tracker, interface, reason, action (``pass`` /
``block`` / ``reject``), direction, IP version, then the IPv4 or IPv6 header fields and,
for TCP and UDP, the ports.

Both become ``event.kind: event`` with ``event.category: network``, ``observer.type:
firewall``, ``source.*``/``destination.*`` and ``network.transport``. Addresses pass the
address gate (``netaddr.address_or_none``) and numbers are parsed here: a field that does not read
is left out, never failing the line. See docs/sources/syslog.md.
"""

from __future__ import annotations

import re
from typing import Any

from socd.decoders.cefformat import TRANSPORTS
from socd.event import Event
from socd.netaddr import address_or_none

_KERNEL_TIME = re.compile(r"\[\s*\d+\.\d+\]\s*")
_DENY_WORDS = ("BLOCK", "DROP", "DENY", "REJECT")
_ALLOW_WORDS = ("ALLOW", "ACCEPT", "PASS")
_FILTERLOG_ACTIONS = {"block": "deny", "reject": "deny", "pass": "allow"}
_DIRECTIONS = {"in": "ingress", "out": "egress"}
_PORTED = frozenset({"tcp", "udp", "sctp", "udplite"})


def _port(text: str | None) -> int | None:
    if text is None or not text.isdigit() or not text.isascii() or len(text) > 5:
        return None
    number = int(text)
    return number if number <= 65535 else None


def _transport(text: str) -> str:
    low = text.strip().lower()
    return {"icmpv6": "ipv6-icmp"}.get(low, TRANSPORTS.get(low, low))


def _verdict(prefix: str) -> str:
    upper = prefix.upper()
    if any(word in upper for word in _DENY_WORDS):
        return "deny"
    if any(word in upper for word in _ALLOW_WORDS):
        return "allow"
    return "log"


def _network_event(event: Event, action: str, module: str, product: str,
                   source: dict[str, Any], destination: dict[str, Any],
                   transport: str | None) -> None:
    """The fields both formats share."""
    ev = event["event"]
    ev["kind"] = "event"
    ev["category"] = ["network"]
    ev["type"] = ["connection"] + (["denied"] if action == "deny" else
                                   ["allowed"] if action == "allow" else [])
    ev["action"] = action
    ev["module"] = module
    ev["dataset"] = f"{module}.log"
    observer = event.setdefault("observer", {})
    observer.update({"type": "firewall", "product": product})
    if source:
        event["source"] = source
    if destination:
        event["destination"] = destination
    if transport:
        event.setdefault("network", {})["transport"] = transport


def apply_netfilter(event: Event, message: str) -> bool:
    """Fill ``event`` from a netfilter kernel log line; False when it is not one
    (no ``IN=``, or no readable ``SRC``/``DST``)."""
    start = message.find("IN=")
    if start < 0 or (start > 0 and not message[start - 1].isspace()) or " SRC=" not in message:
        return False
    prefix = _KERNEL_TIME.sub("", message[:start]).strip().strip("[]:").strip()
    fields: dict[str, str] = {}
    flags: list[str] = []
    for token in message[start:].split():
        key, sep, value = token.partition("=")
        if sep:
            fields.setdefault(key, value)
        elif token.isalpha() and token.isupper():
            flags.append(token)
    src, dst = address_or_none(fields.get("SRC", "")), address_or_none(fields.get("DST", ""))
    if src is None or dst is None:
        return False
    transport = _transport(fields["PROTO"]) if fields.get("PROTO") else None
    source: dict[str, Any] = {"ip": src}
    destination: dict[str, Any] = {"ip": dst}
    if transport in _PORTED:
        for node, key in ((source, "SPT"), (destination, "DPT")):
            port = _port(fields.get(key))
            if port is not None:
                node["port"] = port
    action = _verdict(prefix)
    product = "UFW" if prefix.upper().startswith("UFW") else "netfilter"
    _network_event(event, action, "netfilter", product, source, destination, transport)
    observer = event["observer"]
    if fields.get("IN"):  # OUT= stays in socd.vendor (no egress field in the model)
        observer["ingress"] = {"interface": {"name": fields["IN"]}}
    if prefix:
        event["rule"] = {"name": prefix}
    vendor: dict[str, Any] = {k: v for k, v in fields.items() if k != "MAC"}
    if flags:
        vendor["flags"] = flags
    event.setdefault("socd", {})["vendor"] = {"netfilter": vendor}
    return True


def apply_filterlog(event: Event, message: str) -> bool:
    """Fill ``event`` from a pfSense/OPNsense ``filterlog`` CSV line; False when the line
    does not read as one."""
    cols = message.strip().split(",")
    if len(cols) < 17 or cols[8] not in ("4", "6"):
        return False
    if cols[8] == "4":
        proto, src_i = cols[16], 18
    else:
        proto, src_i = cols[12], 15
    if len(cols) <= src_i + 1:
        return False
    src, dst = address_or_none(cols[src_i]), address_or_none(cols[src_i + 1])
    if src is None or dst is None:
        return False
    transport = _transport(proto) if proto else None
    source: dict[str, Any] = {"ip": src}
    destination: dict[str, Any] = {"ip": dst}
    if transport in _PORTED and len(cols) > src_i + 3:
        for node, index in ((source, src_i + 2), (destination, src_i + 3)):
            port = _port(cols[index])
            if port is not None:
                node["port"] = port
    raw_action = cols[6].strip().lower()
    action = _FILTERLOG_ACTIONS.get(raw_action, raw_action or "log")
    _network_event(event, action, "pf", "pf", source, destination, transport)
    direction = _DIRECTIONS.get(cols[7].strip().lower())
    if direction:
        event.setdefault("network", {})["direction"] = direction
    if cols[4] and direction != "egress":  # an outbound packet's interface stays in socd.vendor
        event["observer"]["ingress"] = {"interface": {"name": cols[4]}}
    rule: dict[str, Any] = {}
    if cols[3]:
        rule["id"] = cols[3]
    if cols[0]:
        rule["name"] = f"pf rule {cols[0]}"
    if rule:
        event["rule"] = rule
    event.setdefault("socd", {})["vendor"] = {"filterlog": {
        "rule_number": cols[0], "tracker": cols[3], "interface": cols[4], "reason": cols[5],
        "action": cols[6], "direction": cols[7], "ip_version": cols[8]}}
    return True
