"""The one event model that flows through socd.

An event is a nested ``dict`` shaped like the Elastic Common Schema (ECS) plus
a ``socd`` namespace for the SOC's own facts. Plain dicts are used on purpose:
they cost nothing to build, serialize straight to JSON with orjson and index
into Elasticsearch unchanged. :data:`FIELDS` is the contract: every field socd
sets or reads by name is declared there with its Elasticsearch type, and the
index template and ``docs/events.md`` are generated from it.

An *alert* is an event with ``event.kind == "alert"``: vendor alerts (EDR, IDS)
are alerts as received; rules turn plain events into alerts.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from socd import netaddr
from socd.codegen import Source
from socd.errors import DecodeError
from socd.severity import Severity
from socd.tz import parse_iso
from socd.vocabulary import LAYERS

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Field:
    """A field of the event model: its dotted name, Elasticsearch type and meaning."""

    name: str
    type: str
    doc: str
    array: bool = False


def _f(name: str, type_: str, doc: str, *, array: bool = False) -> Field:
    return Field(name, type_, doc, array)


FIELDS: Final[tuple[Field, ...]] = (
    _f("@timestamp", "date", "When the event happened, per its source (RFC 3339 with offset)."),
    _f("message", "text", "Human-readable summary or the original log line."),
    _f("tags", "keyword", "Free tags set by decoders and rules.", array=True),
    _f("event.id", "keyword", "The source's own identifier of the event or alert."),
    _f("event.kind", "keyword", "`alert` for alerts, `event` for plain events."),
    _f("event.category", "keyword", "ECS category (`malware`, `authentication`, ...).",
       array=True),
    _f("event.type", "keyword", "ECS type (`info`, `start`, `denied`, ...).", array=True),
    _f("event.action", "keyword", "What the source did or saw (`quarantined`, ...)."),
    _f("event.outcome", "keyword", "`success`, `failure` or `unknown`."),
    _f("event.module", "keyword", "The product family (`server_edr`, `suricata`, ...)."),
    _f("event.dataset", "keyword", "The source data set (`suricata.eve`, `system.auth`)."),
    _f("event.provider", "keyword", "The sub-source inside the product."),
    _f("event.severity", "long", "The source's numeric severity, when it has one."),
    _f("event.created", "date", "When socd received the record."),
    _f("event.ingested", "date", "When socd finished normalizing the event."),
    _f("event.hash", "keyword",
       "Deterministic fingerprint of the raw record; the Elasticsearch document id."),
    _f("event.original", "keyword", "The raw record, when a decoder keeps it (not indexed)."),
    _f("host.name", "keyword", "Name of the host the event is about."),
    _f("host.hostname", "keyword", "Host name as reported by the host."),
    _f("host.ip", "ip", "Addresses of the host.", array=True),
    _f("host.id", "keyword", "Agent-assigned host identifier."),
    _f("host.os.full", "keyword", "Operating system, full text."),
    _f("host.os.name", "keyword", "Operating system name."),
    _f("source.ip", "ip", "Source address."),
    _f("source.port", "long", "Source port."),
    _f("source.domain", "keyword", "Source domain name."),
    _f("source.bytes", "long", "Bytes sent from the source."),
    _f("source.packets", "long", "Packets sent from the source."),
    _f("destination.ip", "ip", "Destination address."),
    _f("destination.port", "long", "Destination port."),
    _f("destination.domain", "keyword", "Destination domain name."),
    _f("destination.bytes", "long", "Bytes sent from the destination."),
    _f("destination.packets", "long", "Packets sent from the destination."),
    _f("network.transport", "keyword", "`tcp`, `udp`, `icmp`, ..."),
    _f("network.protocol", "keyword", "Application protocol (`http`, `dns`, `ssh`)."),
    _f("network.direction", "keyword", "`inbound`, `outbound`, `internal`, `external`."),
    _f("network.bytes", "long", "Total bytes of the connection."),
    _f("user.name", "keyword", "User name."),
    _f("user.domain", "keyword", "User's domain."),
    _f("process.name", "keyword", "Process name."),
    _f("process.pid", "long", "Process id."),
    _f("process.executable", "keyword", "Path of the executable."),
    _f("process.command_line", "keyword", "Full command line."),
    _f("process.parent.name", "keyword", "Parent process name."),
    _f("file.path", "keyword", "Full path of the file."),
    _f("file.name", "keyword", "File name."),
    _f("file.hash.md5", "keyword", "MD5 of the file."),
    _f("file.hash.sha1", "keyword", "SHA-1 of the file."),
    _f("file.hash.sha256", "keyword", "SHA-256 of the file."),
    _f("url.full", "keyword", "Full URL."),
    _f("url.domain", "keyword", "Domain part of the URL."),
    _f("dns.question.name", "keyword", "Queried name."),
    _f("rule.id", "keyword", "Identifier of the rule or signature that fired."),
    _f("rule.name", "keyword", "Name of the rule, signature or threat."),
    _f("rule.category", "keyword", "Category of the rule."),
    _f("rule.description", "text", "What the rule detects."),
    _f("rule.ruleset", "keyword", "The rule pack the rule belongs to."),
    _f("rule.reference", "keyword", "Link or reference for the rule."),
    _f("threat.technique.id", "keyword", "MITRE ATT&CK technique ids.", array=True),
    _f("observer.type", "keyword", "What kind of product saw it (`edr`, `ids`, `firewall`)."),
    _f("observer.vendor", "keyword", "Vendor of the observing product."),
    _f("observer.product", "keyword", "Observing product."),
    _f("observer.hostname", "keyword", "Host name of the observing sensor."),
    _f("observer.name", "keyword", "Configured name of the observer."),
    _f("agent.id", "keyword", "Identifier of the agent that shipped the record."),
    _f("agent.name", "keyword", "Name of the agent."),
    _f("log.level", "keyword", "Log level of the original record."),
    _f("log.file.path", "keyword", "File the record was read from."),
    _f("log.syslog.facility.name", "keyword", "Syslog facility."),
    _f("log.syslog.severity.name", "keyword", "Syslog severity."),
    _f("socd.severity", "keyword", "SOC severity code: `low`, `medium`, `high`, `critical`."),
    _f("socd.severity_label", "keyword",
       "Vietnamese label (NFC): `thấp`, `trung bình`, `cao`, `nghiêm trọng`."),
    _f("socd.vendor_severity", "keyword", "The vendor's original severity value, as text."),
    _f("socd.layer", "byte", "Layer of the 4-layer protection model (1-4) the event belongs to."),
    _f("socd.asset_kind", "keyword",
       "`server`, `workstation`, `network`, `application` or `unknown`."),
    _f("socd.unit", "keyword", "The agency (đơn vị) owning the affected asset."),
    _f("socd.system_level", "byte", "Security level (cấp độ 1-5) of the affected system."),
    _f("socd.collector", "keyword", "Name of the collector that received the record."),
    _f("socd.decoder", "keyword", "Name of the decoder that produced the event."),
    _f("socd.source", "keyword", "Where the record came from: topic, file or peer address."),
    _f("socd.transport.authenticated", "boolean",
       "`false` when the collector could not authenticate the sender (UDP syslog; TCP/TLS "
       "syslog without client certificates or `allowed_senders`); absent otherwise."),
    _f("socd.transport.blocking", "keyword",
       "Unauthenticated events only: `refused` (block decisions they cause are audited, "
       "not enforced) or `allowed` (the collector sets `allow_unauthenticated_blocking`)."),
    _f("socd.transport.collector", "keyword",
       "Rule alerts only: the collector of the unauthenticated event that makes the alert "
       "unauthenticated (a threshold or sequence alert is as unauthenticated as the weakest "
       "event it counted; `socd.collector` is the collector of the event that completed it)."),
    _f("socd.vendor", "flattened",
       "The vendor's whole original record, searchable by key but not mapped."),
    _f("socd.ioc.matched", "boolean", "True when an address or hash is on an IoC list."),
    _f("socd.ioc.values", "keyword", "The values that matched an IoC list.", array=True),
    _f("socd.ioc.refs", "keyword", "References of the matching IoC entries.", array=True),
    # -- alert lifecycle (socd.alerts.lifecycle, `socd alert`, docs/alerts.md) ---------------------
    _f("socd.alert.status", "keyword",
       "Lifecycle status of an alert: `new`, `acknowledged`, `false_positive` (cảnh báo "
       "nhầm) or `resolved`; classification sets `new`."),
    _f("socd.alert.assignee", "keyword", "The analyst handling the alert."),
    _f("socd.alert.updated", "date", "When the status or assignee last changed."),
    _f("socd.alert.updated_by", "keyword", "Who made the last lifecycle change."),
    _f("socd.alert.note", "text", "The note given with the last lifecycle change."),
    # -- vendor decoders (suricata, wazuh, winlogbeat) ---------------------------------
    _f("event.code", "keyword", "The source's event code (Windows event id)."),
    _f("event.reason", "keyword", "Why the event happened (failed logon reason, ...)."),
    _f("event.start", "date", "When the activity (flow, session) started."),
    _f("event.end", "date", "When the activity (flow, session) ended."),
    _f("network.community_id", "keyword", "Community ID hash of the flow's 5-tuple."),
    _f("network.packets", "long", "Total packets of the connection."),
    _f("observer.ingress.interface.name", "keyword", "Interface the sensor saw the traffic on."),
    _f("source.user.name", "keyword", "User name on the source side (Wazuh srcuser)."),
    _f("user.id", "keyword", "User identifier (Windows SID)."),
    _f("user.target.name", "keyword", "User an action was done to (account created, locked)."),
    _f("user.target.domain", "keyword", "Domain of the target user."),
    _f("host.os.type", "keyword", "`windows`, `linux`, `macos`, ..."),
    _f("process.parent.executable", "keyword", "Path of the parent's executable."),
    _f("process.parent.pid", "long", "Parent process id."),
    _f("dns.id", "keyword", "DNS transaction id."),
    _f("dns.type", "keyword", "`query` or `answer`."),
    _f("dns.question.type", "keyword", "Queried record type (`A`, `AAAA`, `TXT`, ...)."),
    _f("dns.response_code", "keyword", "Response code (`NOERROR`, `NXDOMAIN`, ...)."),
    _f("dns.answers.name", "keyword", "Owner name of each answer record.", array=True),
    _f("dns.answers.type", "keyword", "Type of each answer record.", array=True),
    _f("dns.answers.data", "keyword", "Data of each answer record.", array=True),
    _f("dns.answers.ttl", "long", "TTL of each answer record, seconds.", array=True),
    _f("dns.resolved_ip", "ip", "Addresses found in the answers.", array=True),
    _f("url.original", "keyword", "The URL as seen in the request (often path and query)."),
    _f("url.scheme", "keyword", "`http`, `https`, ..."),
    _f("url.path", "keyword", "Path of the URL."),
    _f("url.query", "keyword", "Query string of the URL, without `?`."),
    _f("url.port", "long", "Port of the URL."),
    _f("http.version", "keyword", "HTTP version (`1.1`, `2`)."),
    _f("http.request.method", "keyword", "HTTP method."),
    _f("http.request.referrer", "keyword", "Referer header."),
    _f("http.response.status_code", "long", "HTTP status code."),
    _f("http.response.body.bytes", "long", "Size of the response body."),
    _f("http.response.mime_type", "keyword", "Content type of the response."),
    _f("user_agent.original", "keyword", "User-Agent header."),
    _f("tls.version", "keyword", "TLS version number (`1.2`, `1.3`)."),
    _f("tls.version_protocol", "keyword", "`tls` or `ssl`."),
    _f("tls.client.server_name", "keyword", "Server name the client asked for (SNI)."),
    _f("tls.client.ja3", "keyword", "JA3 fingerprint of the client hello."),
    _f("tls.server.ja3s", "keyword", "JA3S fingerprint of the server hello."),
    _f("tls.server.subject", "keyword", "Subject of the server certificate."),
    _f("tls.server.issuer", "keyword", "Issuer of the server certificate."),
    _f("tls.server.hash.sha1", "keyword", "SHA-1 fingerprint of the server certificate."),
    _f("tls.server.not_before", "date", "Start of the certificate's validity."),
    _f("tls.server.not_after", "date", "End of the certificate's validity."),
    _f("tls.server.x509.serial_number", "keyword", "Serial number of the certificate."),
    _f("rule.version", "keyword", "Revision of the rule or signature."),
    _f("threat.framework", "keyword", "`MITRE ATT&CK`."),
    _f("threat.technique.name", "keyword", "MITRE ATT&CK technique names.", array=True),
    _f("threat.tactic.name", "keyword", "MITRE ATT&CK tactic names.", array=True),
    _f("winlog.channel", "keyword", "Windows event log channel (`Security`)."),
    _f("winlog.event_id", "keyword", "Windows event id, as text."),
    _f("winlog.provider_name", "keyword", "Windows event provider."),
    _f("winlog.computer_name", "keyword", "Computer that wrote the Windows event."),
    _f("winlog.record_id", "keyword", "Record number in the Windows event log."),
    _f("winlog.logon.type", "keyword", "Logon type name (`Interactive`, `Network`, ...)."),
    _f("winlog.logon.id", "keyword", "Logon session id."),
    # -- enrichment (socd.engine.enrich) -------------------------------------------------------
    _f("socd.asset.owner", "keyword", "Person or team responsible for the asset (inventory)."),
    _f("socd.asset.criticality", "keyword",
       "Business criticality of the asset (inventory): `low` ... `critical`."),
    _f("socd.asset.field", "keyword",
       "Event field whose value matched the inventory (`host.ip`, `destination.ip`, ...)."),
    _f("socd.asset.matched_by", "keyword", "`ip`, `hostname` or `cidr`."),
    _f("socd.asset.key", "keyword", "The inventory key that matched (an IP, CIDR or name)."),
    _f("source.geo.country_iso_code", "keyword", "Country of the source address (GeoIP)."),
    _f("source.geo.city_name", "keyword", "City of the source address (GeoIP)."),
    _f("source.geo.location", "geo_point", "Location of the source address (GeoIP)."),
    _f("source.as.number", "long", "Autonomous system of the source address."),
    _f("source.as.organization.name", "keyword", "Organization of the source AS."),
    _f("destination.geo.country_iso_code", "keyword",
       "Country of the destination address (GeoIP)."),
    _f("destination.geo.city_name", "keyword", "City of the destination address (GeoIP)."),
    _f("destination.geo.location", "geo_point", "Location of the destination address (GeoIP)."),
    _f("destination.as.number", "long", "Autonomous system of the destination address."),
    _f("destination.as.organization.name", "keyword", "Organization of the destination AS."),
    # -- network sensor (collectors/sensor.py) -----------------------------------------
    _f("event.duration", "long", "Duration of the activity (flow segment, DNS transaction), ns."),
    _f("network.type", "keyword", "`ipv4` or `ipv6`."),
    _f("network.iana_number", "keyword", "IANA protocol number of the transport (`6`, `17`)."),
    _f("network.tcp_flags", "keyword",
       "TCP flags seen in the flow (`SYN`, `ACK`, `FIN`, `RST`, `PSH`, `URG`); socd extension.",
       array=True),
    _f("network.connection_state", "keyword",
       "Whether the flow became a session (sensor; socd extension): `established` "
       "(TCP handshake seen, or a reply for other transports), `midstream` (no handshake "
       "seen, packets both ways), `half_open` (SYN-ACK never acknowledged), `rejected` "
       "(answered by RST), `no_reply`."),
    _f("dns.question.registered_domain", "keyword",
       "The domain the queried name is registered under (`example.gov.vn`; sensor)."),
    # -- syslog collector / syslog and cef decoders ------------------------------------
    _f("log.syslog.priority", "long", "Syslog PRI value (facility x 8 + severity)."),
    _f("log.syslog.facility.code", "long", "Syslog facility code (0-23)."),
    _f("log.syslog.severity.code", "long", "Syslog severity code (0 emergency ... 7 debug)."),
    _f("log.syslog.version", "long", "Syslog protocol version (1 for RFC 5424)."),
    _f("log.syslog.hostname", "keyword", "HOSTNAME field of the syslog header."),
    _f("log.syslog.appname", "keyword", "APP-NAME (RFC 5424) or TAG (RFC 3164)."),
    _f("log.syslog.procid", "keyword", "PROCID of the syslog header, as text."),
    _f("log.syslog.msgid", "keyword", "MSGID of an RFC 5424 header."),
    _f("log.syslog.structured_data", "flattened",
       "RFC 5424 STRUCTURED-DATA: SD-ID -> {PARAM-NAME: value}."),
    _f("log.source.address", "keyword", "Network peer (`ip:port`) that sent the record."),
    _f("observer.version", "keyword", "Version of the observing product."),
    # -- rules engine (socd.engine, docs/rules.md) -------------------------------------
    _f("socd.correlation_id", "keyword",
       "Alerts only: event.hash of the event that caused the alert. An event's own alert "
       "(a vendor alert, an IoC match) and every alert rules raised on that event share "
       "it: one incident, one value."),
    _f("socd.rule.count", "long",
       "Events counted by the rule that fired (distinct values, sequence steps; 1 if stateless)."),
    _f("socd.rule.window", "long", "Time window of the rule that fired, seconds."),
    _f("socd.rule.group", "flattened",
       "The values of the rule's group_by / by fields that fired ({field: value})."),
    _f("socd.rule.trigger_hashes", "keyword",
       "event.hash of the events that made the rule fire (at most 20).", array=True),
    _f("socd.rule.escalated", "boolean",
       "True when the alert's severity was raised by the rule's escalate: setting."),
    _f("socd.actions.block.value", "keyword",
       "A value (IP, domain, hash) the rule asks to block.", array=True),
    _f("socd.actions.block.ttl_secs", "long", "How long to block it, seconds.", array=True),
    _f("socd.actions.block.reason", "keyword", "Why: the rule id and title.", array=True),
    _f("socd.actions.notify", "keyword",
       "Notification tags of the rule that fired (`irt`, ...).", array=True),
)

FIELDS_BY_NAME: Final[Mapping[str, Field]] = {f.name: f for f in FIELDS}


# -- socd.* belongs to socd (docs/events.md, docs/threat-model.md) -----------------------
#
# A decoder may put only these keys under ``socd``: the SOC severity and the vendor's,
# and the facts about the affected asset a source may know (the ECS ``json`` decoder
# takes them from the input, a mapping file maps vendor fields to them). Everything
# else in the namespace is written by socd's own stages and is dropped from the input:
# provenance (collector, decoder, source, transport: stamped here from the record),
# IoC marks and the alert lifecycle (classification), rule metadata and block/notify
# actions (the rules engine), asset inventory facts (enrichment).
INPUT_SOCD_KEYS: frozenset[str] = frozenset(
    {"severity", "vendor_severity", "layer", "asset_kind", "unit", "system_level", "vendor"})
# Decoders that build events from a vendor format set only the severities and the raw
# vendor record.
VENDOR_SOCD_KEYS: frozenset[str] = frozenset({"severity", "vendor_severity", "vendor"})

_INT_FIELDS = tuple(f.name for f in FIELDS if f.type in {"long", "byte"})
_IP_FIELDS = tuple(f.name for f in FIELDS if f.type == "ip")
_MISSING = object()


# Path parts -> a deeper TypedTree, or at a typed field its kind ("int" or "ip") and
# dotted path (for the refusal's message).
TypedTree = dict[str, Any]
# A typed-field plan (typed_fields_at): steps of (the parts of a parent object's path,
# the typed fields in it as (key, kind, dotted path)), in the full walk's order.
TypedPlan = tuple[tuple[tuple[str, ...], tuple[tuple[str, str, str], ...]], ...]


def _typed_tree() -> TypedTree:
    """The integer and IP fields as a tree of path parts -> (kind, dotted path), so that
    normalize() walks only the branches an event actually has and builds no path text
    unless a value is refused."""
    tree: TypedTree = {}
    for kind, paths in (("int", _INT_FIELDS), ("ip", _IP_FIELDS)):
        for path in paths:
            parts = path.split(".")
            node = tree
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = (kind, path)
    return tree


_TYPED_TREE: Final = _typed_tree()


def typed_fields_at(paths: Iterable[str]) -> TypedPlan:
    """The typed fields that an event holding values only at ``paths`` (dotted; each
    value may be a whole object) can hold, as a flat plan: ``normalize(event,
    typed=...)`` then checks exactly what the full walk would find in such an event,
    in the same order (so the same first refusal), without walking the tree.

    A typed field is kept when a path leads to it or through it (a value there, or an
    object where an integer or address belongs, is checked and refused as before) or
    when it lies under a path (the value may be an object holding it). Decoders that
    know every path they write (the mapping decoder) compute this once: the walk over
    the 31 typed fields was a fifth of decoding a server-EDR line.
    """
    split = {tuple(path.split(".")) for path in paths}

    def prune(tree: TypedTree, here: tuple[str, ...]) -> TypedTree:
        # Only branches some path goes through are entered, so "under a path" is met
        # where the path ends.
        out: TypedTree = {}
        for key, spec in tree.items():
            at = (*here, key)
            if at in split:
                out[key] = spec  # a value written here: the whole branch
            elif any(p[:len(at)] == at for p in split):  # paths written through it
                if type(spec) is not dict:
                    out[key] = spec  # under a typed leaf: an object there, refused
                elif branch := prune(spec, at):
                    out[key] = branch
        return out

    return tuple(_plan_steps(prune(_TYPED_TREE, ()), ()))


def _plan_steps(tree: TypedTree, parents: tuple[str, ...]) -> list[
        tuple[tuple[str, ...], tuple[tuple[str, str, str], ...]]]:
    """``tree`` in walk order, consecutive fields of one parent in one step."""
    steps: list[tuple[tuple[str, ...], tuple[tuple[str, str, str], ...]]] = []
    for key, spec in tree.items():
        if type(spec) is dict:
            steps.extend(_plan_steps(spec, (*parents, key)))
        elif steps and steps[-1][0] == parents:
            steps[-1] = (parents, (*steps[-1][1], (key, *spec)))
        else:
            steps.append((parents, ((key, *spec),)))
    return steps


# Dotted paths split once: get() runs for several fields of every event (classification,
# rules), and the paths come from code and configuration; bounded all the same.
_PATH_PARTS: dict[str, tuple[str, ...]] = {}
_PATHS_CACHED = 4096


def get(event: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """Value at a dotted ``path`` of a nested event, or ``default``."""
    parts = _PATH_PARTS.get(path)
    if parts is None:
        if len(_PATH_PARTS) >= _PATHS_CACHED:
            _PATH_PARTS.clear()
        parts = _PATH_PARTS[path] = tuple(path.split("."))
    node: Any = event
    for part in parts:
        if type(node) is not dict and not isinstance(node, Mapping):
            return default
        node = node.get(part, _MISSING)
        if node is _MISSING:
            return default
    return node


def put(event: Event, path: str, value: Any) -> None:
    """Set ``value`` at a dotted ``path``, creating intermediate objects."""
    put_parts(event, path.split("."), value)


def put_parts(event: Event, parts: list[str] | tuple[str, ...], value: Any) -> None:
    """:func:`put` with the path already split (for hot loops)."""
    # node_at's walk, inlined: put runs for most fields of every decoded event, and a
    # call plus a slice per field cost decoders up to a fifth of put's time.
    node = event
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def node_at(event: Event, parts: Iterable[str]) -> dict[str, Any]:
    """The object at the split path ``parts``, created where missing (a value that is
    not an object is replaced)."""
    node = event
    for part in parts:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    return node


def pop(event: Event, path: str) -> Any:
    """Remove and return the value at ``path`` (``None`` when absent)."""
    parts = path.split(".")
    node: Any = event
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node.pop(parts[-1], None) if isinstance(node, dict) else None


def unflatten(obj: Mapping[str, Any]) -> Event:
    """Turn ``{"source.ip": x}`` style keys into nested objects (recursively).

    ``@timestamp`` keeps its dot-free name; nested and dotted forms may be mixed.
    """
    out: Event = {}
    for key, value in obj.items():
        v = unflatten(value) if isinstance(value, Mapping) else value
        if "." in key:
            existing = get(out, key, _MISSING)
            if isinstance(existing, dict) and isinstance(v, dict):
                existing.update(v)
            else:
                put(out, key, v)
        elif isinstance(v, dict) and isinstance(out.get(key), dict):
            out[key].update(v)
        else:
            out[key] = v
    return out


def fingerprint(*parts: bytes | str) -> str:
    """A stable 20-byte hex digest used as the event's document id."""
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    return h.hexdigest()


def fingerprint_prefix(*parts: bytes | str) -> hashlib.blake2b:
    """The hasher of :func:`fingerprint` after ``parts``: a copy updated with the other
    parts, each followed by ``b"\\x00"``, gives ``fingerprint(*parts, *others)``
    without hashing the shared parts again (a decoder's name, once per event)."""
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    return h


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(value: Any) -> str:
    """Normalize a timestamp (ISO 8601 text or epoch seconds/ms) to RFC 3339."""
    if isinstance(value, bool):
        raise DecodeError("invalid_field", "@timestamp must be a date, not a boolean")
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
        except (OverflowError, OSError, ValueError) as exc:
            raise DecodeError("invalid_field", f"@timestamp {value!r} out of range") from exc
    if isinstance(value, str):
        try:
            # A timestamp with no offset is taken as UTC; decoders that know the
            # source's zone (Vietnam is +07:00) attach it before this point.
            parsed = parse_iso(value.strip())
        except ValueError as exc:
            raise DecodeError("invalid_field",
                              f"@timestamp {value[:64]!r} is not ISO 8601") from exc
        return parsed.isoformat()
    raise DecodeError("invalid_field", f"@timestamp has type {type(value).__name__}")


# Elasticsearch's long: a larger integer fails its bulk item, and orjson (every sink)
# refuses one beyond 64 bits outright, so it is refused here with the other bad values.
_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1


def _as_int(value: Any, path: str) -> int:
    """``value`` as an int (the same object when it already is one) in the range of a
    64-bit signed integer."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        try:
            number = int(value)
        except ValueError:  # "--5", "²": isdigit() accepts what int() refuses
            number = None
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None:
        raise DecodeError("invalid_field",
                          f"{path} must be an integer, got {str(value)[:64]!r}")
    if not _LONG_MIN <= number <= _LONG_MAX:
        raise DecodeError("invalid_field", f"{path} is outside the 64-bit integer range, "
                          f"got {str(value)[:64]!r}")
    return number


def _canonical_ip(value: Any, path: str) -> str:
    """The canonical text of an address field (the one gate, cached there): no zone id,
    no whitespace, IPv4-mapped IPv6 as IPv4, so rules, IoC lookups and block
    decisions all see one spelling of each address."""
    try:
        return netaddr.canonical_address(value)
    except netaddr.AddressError as exc:
        raise DecodeError("invalid_field", f"{path} is not an IP address ({exc.reason}): "
                          f"{str(value)[:64]!r}") from None


def _check_typed(node: dict[str, Any], tree: TypedTree) -> None:
    for key, spec in tree.items():
        value = node.get(key)
        if value is None:
            continue
        if type(spec) is dict:
            if type(value) is dict:
                _check_typed(value, spec)
            continue
        kind, path = spec
        if kind != "int" or type(value) is not int or not _LONG_MIN <= value <= _LONG_MAX:
            _check_value(node, key, value, kind, path)


def _check_plan(event: Event, plan: TypedPlan) -> None:
    """:func:`_check_typed` over the fields of a plan (no walk of absent branches).

    What :func:`plan_checker` writes out as one function for :func:`normalize`; kept as
    the readable form the tests compare the generated one with."""
    for parents, fields in plan:
        node = event
        for part in parents:
            node = node.get(part)  # type: ignore[assignment]
            if type(node) is not dict:
                break
        else:
            for key, kind, path in fields:
                value = node.get(key)
                if value is None:
                    continue
                if kind == "int":
                    if type(value) is int and _LONG_MIN <= value <= _LONG_MAX:
                        continue
                elif type(value) is str and value in _CANONICAL_IPS:
                    continue
                _check_value(node, key, value, kind, path)


# Address texts the gate found canonical already: _check_plan passes them by a set
# lookup instead of four calls down to netaddr's cache (the gate counts only refusals,
# so an accepted text has nothing else to do). Bounded by count; each text passed the
# gate, so it is no longer than an address.
_CANONICAL_IPS: set[str] = set()
_CANONICAL_IPS_KEPT = 4096


# _check_plan of a plan as one generated function (see plan_checker), by the plan's id
# with the plan itself (so an id reused by another object never matches). Plans are
# made once per decoder: a few dozen at most; bounded all the same.
_CHECKERS: dict[int, tuple[TypedPlan, Callable[[Event], None]]] = {}
_CHECKERS_KEPT = 64


def plan_checker(plan: TypedPlan) -> Callable[[Event], None]:
    """:func:`_check_plan` with ``plan`` written out as straight lines: the loop over
    steps and fields and their tuples cost half of the check. The keys and paths come
    from :data:`FIELDS` (socd's own code) and are bound as namespace constants all the
    same; every identifier comes from a counter."""
    out = Source({"_check_value": _check_value, "_ips": _CANONICAL_IPS})
    const = out.const
    for parents, fields in plan:
        depth, node = 1, "event"
        for part in parents:
            out.add(depth, f"n = {node}.get({const(part)})")
            out.add(depth, "if type(n) is dict:")
            depth, node = depth + 1, "n"
        for key, kind, path in fields:
            out.add(depth, f"v = {node}.get({const(key)})")
            if kind == "int":
                ok = f"type(v) is int and {const(_LONG_MIN)} <= v <= {const(_LONG_MAX)}"
            else:
                ok = "type(v) is str and v in _ips"
            out.add(depth, f"if v is not None and not ({ok}):")
            out.add(depth, f"    _check_value({node}, {const(key)}, v, {const(kind)}, "
                    f"{const(path)})")
    out.add(1, "return None")
    check: Callable[[Event], None] = out.build("check", "event", "typed plan")
    return check


def _check_value(node: dict[str, Any], key: str, value: Any, kind: str, path: str) -> None:
    """Coerce or refuse one typed value (a 64-bit int never gets here)."""
    if kind == "int":
        node[key] = _as_int(value, path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            text = _canonical_ip(item, path)
            if text != item:
                value[i] = text
    else:
        text = _canonical_ip(value, path)
        if text != value:
            node[key] = text
        elif type(value) is str:
            if len(_CANONICAL_IPS) >= _CANONICAL_IPS_KEPT:
                _CANONICAL_IPS.clear()
            _CANONICAL_IPS.add(value)  # at most netaddr.MAX_LENGTH characters: it passed


def normalize(event: Event, *, received: float | None = None,
              typed: TypedPlan | None = None, own_timestamp: str | None = None) -> Event:
    """Check and coerce the typed fields of ``event`` in place and return it.

    Raises :class:`DecodeError` with reason ``invalid_field`` when a field has a
    value its Elasticsearch type would reject, so such events are dead-lettered
    here instead of failing a bulk request later. Address fields must pass
    :mod:`socd.netaddr` (an IPv6 zone id is refused) and are rewritten to their
    canonical text (``::ffff:203.0.113.9`` becomes ``203.0.113.9``).

    ``typed``: the typed fields to check, :func:`typed_fields_at` of every path the
    caller's event can hold (None: all). ``own_timestamp``: the ``@timestamp``
    text the decoder formatted (``datetime.isoformat()`` of an aware time, which
    :func:`parse_timestamp` returns unchanged) or found already in that form and
    checked itself; it is trusted only when the event holds that very object, which
    the decoder put there, so any other value (an equal text included) is parsed.
    """
    ts = event.get("@timestamp")
    if ts is None:
        event["@timestamp"] = now_iso()
    elif ts is not own_timestamp:
        event["@timestamp"] = parse_timestamp(ts)
    if typed is None:
        _check_typed(event, _TYPED_TREE)
    else:
        compiled = _CHECKERS.get(id(typed))
        if compiled is None or compiled[0] is not typed:
            if len(_CHECKERS) >= _CHECKERS_KEPT:
                _CHECKERS.clear()
            compiled = _CHECKERS[id(typed)] = (typed, plan_checker(typed))
        compiled[1](event)
    socd = event.get("socd")
    if isinstance(socd, dict):
        layer = socd.get("layer")
        if layer is not None and layer not in LAYERS:
            raise DecodeError("invalid_field", f"socd.layer must be 1-4, got {layer!r}")
        level = socd.get("system_level")
        if level is not None and not (isinstance(level, int) and 1 <= level <= 5):
            raise DecodeError("invalid_field", f"socd.system_level must be 1-5, got {level!r}")
        unit = socd.get("unit")
        if isinstance(unit, str):
            socd["unit"] = unicodedata.normalize("NFC", unit)
    return event


# Each severity's code and label: enum properties cost a descriptor call each, twice
# for every decoded event.
SEVERITY_CODE_LABEL: Final[Mapping[Severity, tuple[str, str]]] = {
    s: (s.value, s.label) for s in Severity}


def set_severity(event: Event, severity: Severity) -> None:
    """Set the severity code and its Vietnamese label together."""
    socd = event.setdefault("socd", {})
    socd["severity"], socd["severity_label"] = SEVERITY_CODE_LABEL[severity]


def dumps(event: Mapping[str, Any]) -> bytes:
    """Serialize an event to compact JSON (UTF-8, non-ASCII kept)."""
    return orjson.dumps(event)


def iter_leaf_paths(event: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """Yield ``(dotted_path, value)`` for every leaf of a nested event."""
    for key, value in event.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from iter_leaf_paths(value, path + ".")
        else:
            yield path, value
