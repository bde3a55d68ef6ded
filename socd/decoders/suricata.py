"""The ``suricata`` decoder: Suricata EVE JSON (``eve.json``) into ECS events.

``event_type`` ``alert``, ``dns``, ``flow``, ``http`` and ``tls`` are mapped field by
field (docs/decoders.md); every other type (``anomaly``, ``fileinfo``, ``ssh``,
``stats``...) becomes a plain event with the common fields (time, addresses, ports,
protocol) and ``event.dataset: suricata.<event_type>``. The app-layer objects
(``http``, ``dns``, ``tls``) and the ``flow`` counters are mapped wherever they
appear, so an alert carrying its HTTP metadata gets ``url.*`` too.

Alerts are ``event.kind: alert``; ``alert.severity`` (1 = most severe) becomes
``socd.vendor_severity`` and is mapped with the built-in ``suricata`` table
(1 high, 2 medium, 3 low). The MITRE ATT&CK metadata of a signature (Emerging Threats
writes ``mitre_technique_id`` and friends in ``alert.metadata``) becomes ``threat.*``;
``fileinfo`` (files seen in HTTP, SMB, FTP...) becomes ``file.*`` with the hashes
Suricata computed, so IoC hash lists match files carried over the network.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from socd import netaddr
from socd.config import DecoderConfig
from socd.decoders.base import BaseDecoder
from socd.decoders.coerce import as_dict as _dict
from socd.decoders.coerce import int_or_none as _int
from socd.decoders.coerce import text as _text  # Suricata's strings are exact: no stripping
from socd.decoders.coerce import texts as _texts
from socd.errors import DecodeError
from socd.event import VENDOR_SOCD_KEYS, Event, parse_timestamp
from socd.plugins import PluginContext
from socd.tz import iso_or_none

_TRANSPORTS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "ipv6-icmp": "ipv6-icmp",
               "icmpv6": "ipv6-icmp", "sctp": "sctp", "gre": "gre", "esp": "esp"}
_NO_PROTOCOL = {"", "failed", "unknown"}




def _port(value: Any) -> int | None:
    number = _int(value)
    return number if number is not None and 0 <= number <= 65535 else None


def _date(value: Any) -> str | None:
    """An optional date field: normalized, or None when it cannot be read."""
    if not isinstance(value, str) or not value:
        return None
    parsed = iso_or_none(value.strip())  # naive: UTC, as Suricata writes certificate dates
    return None if parsed is None else parsed.isoformat()


class SuricataDecoder(BaseDecoder):
    """Suricata EVE JSON in, ECS events out."""

    socd_keys = VENDOR_SOCD_KEYS

    class Config(DecoderConfig):
        type: Literal["suricata"]
        severity_table: str | None = Field(
            "suricata", description="Built-in table mapping alert.severity (1 = most severe).")
        keep_vendor: bool = Field(False, description="Keep the whole EVE record in socd.vendor.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        super().__init__(ctx.name, severity_table=config.severity_table,
                         keep_original=config.keep_original)
        self.keep_vendor = config.keep_vendor

    def convert(self, obj: dict[str, Any]) -> Event:
        event_type = obj.get("event_type")
        if not isinstance(event_type, str) or not event_type:
            raise DecodeError("missing_field", "EVE record without event_type")
        raw_ts = obj.get("timestamp")
        if raw_ts is None:
            raise DecodeError("missing_field", "EVE record without timestamp")
        ev: dict[str, Any] = {"kind": "event", "module": "suricata",
                              "dataset": f"suricata.{event_type}"}
        event: Event = {
            "@timestamp": parse_timestamp(raw_ts),
            "event": ev,
            "observer": {"type": "ids", "vendor": "OISF", "product": "Suricata"},
            "socd": {},
        }
        self._common(obj, event)
        if event_type == "alert":
            self._alert(obj, event, ev)
        elif event_type == "dns":
            ev["category"], ev["type"] = ["network"], ["protocol"]
        elif event_type == "flow":
            ev["category"], ev["type"] = ["network"], ["connection", "end"]
            state = _text(_dict(obj.get("flow")).get("state"))
            if state:
                ev["action"] = f"flow-{state}"
        elif event_type == "http":
            ev["category"], ev["type"] = ["network", "web"], ["access", "protocol"]
        elif event_type == "tls":
            ev["category"], ev["type"] = ["network"], ["protocol"]
        elif event_type == "anomaly":
            ev["category"], ev["type"] = ["network"], ["info"]
        else:
            ev["category"], ev["type"] = ["network"], ["info"]
        for key, mapper in (("dns", _dns), ("http", _http), ("tls", _tls), ("flow", _flow),
                            ("fileinfo", _fileinfo)):
            sub = obj.get(key)
            if isinstance(sub, dict):
                mapper(sub, event)
        if self.keep_vendor:
            event["socd"]["vendor"] = obj
        return event

    @staticmethod
    def _common(obj: dict[str, Any], event: Event) -> None:
        for side, ip_key, port_key in (("source", "src_ip", "src_port"),
                                       ("destination", "dest_ip", "dest_port")):
            ip = _text(obj.get(ip_key))
            port = _port(obj.get(port_key))
            if ip or port is not None:
                node = event.setdefault(side, {})
                if ip:
                    node["ip"] = ip
                if port is not None:
                    node["port"] = port
        network: dict[str, Any] = {}
        proto = _text(obj.get("proto"))
        if proto:
            network["transport"] = _TRANSPORTS.get(proto.lower(), proto.lower())
        app = _text(obj.get("app_proto"))
        if app and app.lower() not in _NO_PROTOCOL:
            network["protocol"] = app.lower()
        community = _text(obj.get("community_id"))
        if community:
            network["community_id"] = community
        if network:
            event["network"] = network
        host = _text(obj.get("host"))
        if host:
            event["observer"]["hostname"] = host
        iface = _text(obj.get("in_iface"))
        if iface:
            event["observer"]["ingress"] = {"interface": {"name": iface}}

    @staticmethod
    def _alert(obj: dict[str, Any], event: Event, ev: dict[str, Any]) -> None:
        alert = obj.get("alert")
        if not isinstance(alert, dict):
            raise DecodeError("missing_field", "alert record without an alert object")
        ev["kind"] = "alert"
        ev["category"] = ["network", "intrusion_detection"]
        action = _text(alert.get("action"))
        ev["type"] = ["denied"] if action == "blocked" else ["allowed"] if action else ["info"]
        if action:
            ev["action"] = action
        rule: dict[str, Any] = {}
        for dst, src in (("id", "signature_id"), ("name", "signature"),
                         ("category", "category")):
            value = _text(alert.get(src))
            if value:
                rule[dst] = value
        rev = _text(alert.get("rev"))
        if rev:
            rule["version"] = rev
        if rule:
            event["rule"] = rule
        if "name" in rule:
            event["message"] = rule["name"]
        threat = _threat(_dict(alert.get("metadata")))
        if threat:
            event["threat"] = threat
        severity = _int(alert.get("severity"))
        if severity is not None:
            ev["severity"] = severity
            event["socd"]["vendor_severity"] = severity
        elif _text(alert.get("severity")):
            event["socd"]["vendor_severity"] = _text(alert.get("severity"))


def _threat(metadata: dict[str, Any]) -> dict[str, Any]:
    """ATT&CK fields from a signature's metadata (ET Open: ``mitre_technique_id``,
    ``mitre_technique_name``, ``mitre_tactic_name``)."""
    threat: dict[str, Any] = {}
    technique = {key: values for key, src in (("id", "mitre_technique_id"),
                                              ("name", "mitre_technique_name"))
                 if (values := _texts(metadata.get(src)))}
    if technique:
        threat["technique"] = technique
    tactics = _texts(metadata.get("mitre_tactic_name"))
    if tactics:
        threat["tactic"] = {"name": tactics}
    if threat:
        threat["framework"] = "MITRE ATT&CK"
    return threat


def _fileinfo(fileinfo: dict[str, Any], event: Event) -> None:
    """A file Suricata saw in a transaction: its name as the protocol gave it (an HTTP
    path, an SMB share path) and the hashes it computed (when the sensor hashes files)."""
    out: dict[str, Any] = {}
    path = _text(fileinfo.get("filename"))
    if path:
        out["path"] = path
        name = path.replace("\\", "/").rstrip("/").rpartition("/")[2]
        if name:
            out["name"] = name
    hashes = {algo: value.lower() for algo in ("md5", "sha1", "sha256")
              if (value := _text(fileinfo.get(algo))) and value.isalnum()}
    if hashes:
        out["hash"] = hashes
    if out:
        event["file"] = out


def _flow(flow: dict[str, Any], event: Event) -> None:
    totals = {"bytes": 0, "packets": 0}
    for side, direction in (("source", "toserver"), ("destination", "toclient")):
        for unit, key in (("bytes", f"bytes_{direction}"), ("packets", f"pkts_{direction}")):
            value = _int(flow.get(key))
            if value is not None and value >= 0:
                event.setdefault(side, {})[unit] = value
                totals[unit] += value
    network = event.setdefault("network", {})
    for unit, total in totals.items():
        if total:
            network[unit] = total
    if not network:
        del event["network"]
    for dst, src in (("start", "start"), ("end", "end")):
        when = _date(flow.get(src))
        if when:
            event["event"][dst] = when


def _dns(dns: dict[str, Any], event: Event) -> None:
    out: dict[str, Any] = {}
    kind = _text(dns.get("type"))
    if kind:
        # EVE v2 says query/answer, v3 (Suricata 8) request/response.
        out["type"] = {"request": "query", "response": "answer"}.get(kind, kind)
    txid = _text(dns.get("id"))
    if txid is None and isinstance(dns.get("query"), list) and dns["query"] \
            and isinstance(dns["query"][0], dict):
        txid = _text(dns["query"][0].get("id"))
        kind = kind or _text(dns["query"][0].get("type"))
        if kind:
            out["type"] = kind
    if txid:
        out["id"] = txid
    name, rrtype = _text(dns.get("rrname")), _text(dns.get("rrtype"))
    # v3 puts the question in "queries", alerts of Suricata 6/7 in "query".
    queries = dns.get("queries") if "queries" in dns else dns.get("query")
    if not name and isinstance(queries, list) and queries and isinstance(queries[0], dict):
        name, rrtype = _text(queries[0].get("rrname")), _text(queries[0].get("rrtype"))
    question: dict[str, Any] = {}
    if name:
        question["name"] = name
    if rrtype:
        question["type"] = rrtype
    if question:
        out["question"] = question
    rcode = _text(dns.get("rcode"))
    if rcode:
        out["response_code"] = rcode
    answers: list[dict[str, Any]] = []
    raw_answers = dns.get("answers")
    for item in raw_answers if isinstance(raw_answers, list) else []:
        if not isinstance(item, dict):
            continue
        answer = {k: v for k, v in (("name", _text(item.get("rrname"))),
                                    ("type", _text(item.get("rrtype"))),
                                    ("data", _text(item.get("rdata"))),
                                    ("ttl", _int(item.get("ttl")))) if v is not None}
        if answer:
            answers.append(answer)
    for rrtype_key, values in _dict(dns.get("grouped")).items():
        # The compact "grouped" answer format: {"A": ["192.0.2.1", ...], "CNAME": [...]}.
        for value in values if isinstance(values, list) else []:
            data = _text(value)
            if data:
                answers.append({"type": rrtype_key, "data": data})
    if answers:
        out["answers"] = answers
        resolved = [ip for a in answers if a.get("type") in {"A", "AAAA"} and "data" in a
                    and (ip := netaddr.address_or_none(a["data"])) is not None]
        if resolved:
            out["resolved_ip"] = resolved
    if out:
        event["dns"] = out
        event.setdefault("network", {}).setdefault("protocol", "dns")


def _http(http: dict[str, Any], event: Event) -> None:
    url = _url(http, event)
    out = _http_fields(http)
    if out:
        event["http"] = out
    agent = _text(http.get("http_user_agent"))
    if agent:
        event["user_agent"] = {"original": agent}
    if url or out:
        event.setdefault("network", {}).setdefault("protocol", "http")


def _url(http: dict[str, Any], event: Event) -> dict[str, Any]:
    url: dict[str, Any] = {}
    host = _text(http.get("hostname"))
    original = _text(http.get("url"))
    if host:
        url["domain"] = host
    port = _port(http.get("http_port"))
    if port is None:
        port = _port(event.get("destination", {}).get("port"))
    if original:
        url["original"] = original
        path, sep, query = original.partition("?")
        if path.startswith("/"):
            url["path"] = path
            if sep:
                url["query"] = query
            if host:
                url["scheme"] = "http"
                authority = host if port in (None, 80) else f"{host}:{port}"
                url["full"] = f"http://{authority}{original}"
                if port is not None:
                    url["port"] = port
    if url:
        event["url"] = url
    return url


def _http_fields(http: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    request: dict[str, Any] = {}
    response: dict[str, Any] = {}
    method = _text(http.get("http_method"))
    if method:
        request["method"] = method.upper()
    referrer = _text(http.get("http_refer"))
    if referrer:
        request["referrer"] = referrer
    status = _int(http.get("status"))
    if status is not None:
        response["status_code"] = status
    length = _int(http.get("length"))
    if length is not None and length >= 0:
        response["body"] = {"bytes": length}
    mime = _text(http.get("http_content_type"))
    if mime:
        response["mime_type"] = mime
    version = _text(http.get("protocol"))
    if version:
        out["version"] = version.removeprefix("HTTP/")
    if request:
        out["request"] = request
    if response:
        out["response"] = response
    return out


def _tls(tls: dict[str, Any], event: Event) -> None:
    out: dict[str, Any] = {}
    version = _text(tls.get("version"))
    if version:
        # "TLS 1.2", "TLSv1.3", "SSLv3", "UNDETERMINED"
        text = version.replace("v", " ").split()
        if len(text) == 2 and text[0].upper() in {"TLS", "SSL"}:
            out["version_protocol"] = text[0].lower()
            out["version"] = text[1]
    server: dict[str, Any] = {}
    for dst, src in (("subject", "subject"), ("issuer", "issuerdn")):
        value = _text(tls.get(src))
        if value:
            server[dst] = value
    fingerprint = _text(tls.get("fingerprint"))
    if fingerprint:
        server["hash"] = {"sha1": fingerprint.replace(":", "").upper()}
    serial = _text(tls.get("serial"))
    if serial:
        server["x509"] = {"serial_number": serial.replace(":", "").upper()}
    for dst, src in (("not_before", "notbefore"), ("not_after", "notafter")):
        value = _date(tls.get(src))
        if value:
            server[dst] = value
    ja3s = _text(_dict(tls.get("ja3s")).get("hash"))
    if ja3s:
        server["ja3s"] = ja3s
    client: dict[str, Any] = {}
    sni = _text(tls.get("sni"))
    if sni:
        client["server_name"] = sni
        if "domain" not in _dict(event.get("destination")):
            event.setdefault("destination", {})["domain"] = sni
    ja3 = _text(_dict(tls.get("ja3")).get("hash"))
    if ja3:
        client["ja3"] = ja3
    if server:
        out["server"] = server
    if client:
        out["client"] = client
    if out:
        event["tls"] = out
        event.setdefault("network", {}).setdefault("protocol", "tls")
