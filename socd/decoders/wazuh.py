"""The ``wazuh`` decoder: Wazuh manager alerts (``alerts.json``) into ECS events.

Every record is an alert (Wazuh writes only rule matches to alerts.json).
``rule.level`` (0-15) becomes ``socd.vendor_severity`` and ``event.severity`` and is
mapped with the built-in ``wazuh`` table: 0-3 low, 4-7 medium, 8-11 high,
12-15 critical. The agent is the host the alert is about (``host.*``), the manager
the observer. See docs/decoders.md for the field list.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from socd import netaddr
from socd.config import DecoderConfig
from socd.decoders import coerce
from socd.decoders.base import BaseDecoder
from socd.decoders.coerce import as_dict as _dict
from socd.decoders.coerce import int_or_none as _int
from socd.errors import DecodeError
from socd.event import VENDOR_SOCD_KEYS, Event, parse_timestamp
from socd.plugins import PluginContext


def _text(value: Any) -> str | None:
    """Wazuh copies log text as it came: a value of blanks alone is no value."""
    return coerce.text(value, blank_is_none=True)




def _texts(value: Any) -> list[str]:
    """A string or a list of strings as a list of non-blank strings."""
    return coerce.texts(value, blank_is_none=True)


# data.* keys of the Wazuh decoders -> event side: the address, the port. Wazuh's own
# decoders write srcip/dstip; its json decoder keeps the keys of the log it read, so a
# Suricata EVE alert (rule 86601) arrives with src_ip/dest_ip.
_DATA_ADDRESSES: tuple[tuple[str, str, str], ...] = (
    ("source", "srcip", "srcport"), ("source", "src_ip", "src_port"),
    ("destination", "dstip", "dstport"), ("destination", "dest_ip", "dest_port"),
)
_AUTH_GROUPS = {"authentication_success": "success", "authentication_failed": "failure",
                "authentication_failures": "failure", "invalid_login": "failure"}
_SYSCHECK_HASHES = (("md5_after", "md5"), ("sha1_after", "sha1"), ("sha256_after", "sha256"))


class WazuhDecoder(BaseDecoder):
    """Wazuh alerts.json in, ECS alerts out."""

    socd_keys = VENDOR_SOCD_KEYS

    class Config(DecoderConfig):
        type: Literal["wazuh"]
        severity_table: str | None = Field(
            "wazuh", description="Built-in table mapping rule.level (0-15).")
        keep_vendor: bool = Field(False,
                                  description="Keep the whole Wazuh alert in socd.vendor.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        super().__init__(ctx.name, severity_table=config.severity_table,
                         keep_original=config.keep_original)
        self.keep_vendor = config.keep_vendor

    def convert(self, obj: dict[str, Any]) -> Event:
        rule_in = obj.get("rule")
        if not isinstance(rule_in, dict):
            raise DecodeError("missing_field", "Wazuh alert without a rule object")
        raw_ts = obj.get("timestamp", obj.get("@timestamp"))
        if raw_ts is None:
            raise DecodeError("missing_field", "Wazuh alert without timestamp")
        ev: dict[str, Any] = {"kind": "alert", "module": "wazuh", "dataset": "wazuh.alerts"}
        event: Event = {"@timestamp": parse_timestamp(raw_ts), "event": ev,
                        "observer": {"type": "hids", "vendor": "Wazuh", "product": "Wazuh"},
                        "socd": {}}
        alert_id = _text(obj.get("id"))
        if alert_id:
            ev["id"] = alert_id
        self._rule(rule_in, event)
        self._agent(obj, event)
        self._data(_dict(obj.get("data")), event)
        self._syscheck(_dict(obj.get("syscheck")), event)
        manager = _text(_dict(obj.get("manager")).get("name"))
        if manager:
            event["observer"]["name"] = manager
            event["observer"]["hostname"] = manager
        decoder = _text(_dict(obj.get("decoder")).get("name"))
        if decoder:
            ev["provider"] = decoder
        location = _text(obj.get("location"))
        if location:
            event["log"] = {"file": {"path": location}}
        full_log = _text(obj.get("full_log"))
        if full_log:
            event["message"] = full_log
            ev["original"] = full_log
        elif "name" in event.get("rule", {}):
            event["message"] = event["rule"]["name"]
        if self.keep_vendor:
            event["socd"]["vendor"] = obj
        return event

    @staticmethod
    def _rule(rule_in: dict[str, Any], event: Event) -> None:
        rule: dict[str, Any] = {"ruleset": "wazuh"}
        rule_id = _text(rule_in.get("id"))
        if rule_id:
            rule["id"] = rule_id
        description = _text(rule_in.get("description"))
        if description:
            rule["name"] = description
        groups = _texts(rule_in.get("groups"))
        if groups:
            # Wazuh lists the rule file's groups first and the rule's own last.
            rule["category"] = groups[-1]
            event["tags"] = groups
            for group in groups:
                outcome = _AUTH_GROUPS.get(group)
                if outcome:
                    event["event"]["category"] = ["authentication"]
                    event["event"]["type"] = ["start"]
                    event["event"]["outcome"] = outcome
                    break
        event["rule"] = rule
        level = rule_in.get("level")
        number = _int(level)
        if number is not None:
            if not 0 <= number <= 15:
                raise DecodeError("invalid_field", f"rule.level must be 0-15, got {number}")
            event["event"]["severity"] = number
            event["socd"]["vendor_severity"] = number
        elif _text(level):
            raise DecodeError("invalid_field", f"rule.level must be 0-15, got {level!r:.64}")
        mitre = _dict(rule_in.get("mitre"))
        threat: dict[str, Any] = {}
        ids, names, tactics = (_texts(mitre.get("id")), _texts(mitre.get("technique")),
                               _texts(mitre.get("tactic")))
        if ids or names:
            technique: dict[str, Any] = {}
            if ids:
                technique["id"] = ids
            if names:
                technique["name"] = names
            threat["technique"] = technique
        if tactics:
            threat["tactic"] = {"name": tactics}
        if threat:
            threat["framework"] = "MITRE ATT&CK"
            event["threat"] = threat

    @staticmethod
    def _agent(obj: dict[str, Any], event: Event) -> None:
        agent_in = _dict(obj.get("agent"))
        agent: dict[str, Any] = {}
        host: dict[str, Any] = {}
        agent_id, name, ip = (_text(agent_in.get("id")), _text(agent_in.get("name")),
                              _text(agent_in.get("ip")))
        if agent_id:
            agent["id"] = agent_id
            host["id"] = agent_id
        if name:
            agent["name"] = name
            host["name"] = name
        if ip and ip.lower() != "any":
            host["ip"] = [ip]
        if agent:
            event["agent"] = agent
        if host:
            event["host"] = host

    @staticmethod
    def _data(data: dict[str, Any], event: Event) -> None:
        for side, ip_key, port_key in _DATA_ADDRESSES:
            if "ip" in event.get(side, {}):
                continue
            ip, port = _address(_text(data.get(ip_key)))
            if ip is None:
                continue
            node = event.setdefault(side, {})
            node["ip"] = ip
            number = _int(data.get(port_key))
            port = number if number is not None and 0 <= number <= 65535 else port
            if port is not None:
                node["port"] = port
        dstuser, srcuser = _user(data.get("dstuser")), _user(data.get("srcuser"))
        if srcuser:
            event.setdefault("source", {})["user"] = {"name": srcuser}
        # The account acted on: dstuser (su, sudo target), else the account a remote
        # peer tried to log in as (sshd reports it as srcuser).
        if dstuser or srcuser:
            event["user"] = {"name": dstuser or srcuser}
        protocol = _text(data.get("protocol")) or _text(data.get("proto"))
        if protocol and protocol.isalpha() and protocol.upper() not in {"GET", "POST", "HEAD",
                                                                         "PUT", "DELETE"}:
            event.setdefault("network", {})["transport" if protocol.lower() in {
                "tcp", "udp", "icmp"} else "protocol"] = protocol.lower()
        url = _text(data.get("url"))
        if url:
            event["url"] = {"original": url}
        action = _text(data.get("action"))
        if action:
            event["event"]["action"] = action
        win = _dict(data.get("win"))
        if win:
            _windows(win, event)

    @staticmethod
    def _syscheck(syscheck: dict[str, Any], event: Event) -> None:
        path = _text(syscheck.get("path"))
        if not path:
            return
        file: dict[str, Any] = {"path": path}
        hashes = {dst: v for src, dst in _SYSCHECK_HASHES
                  if (v := _text(syscheck.get(src)))}
        if hashes:
            file["hash"] = hashes
        event["file"] = file
        action = _text(syscheck.get("event"))
        if action:
            event["event"]["action"] = action
            event["event"]["category"] = ["file"]
            event["event"]["type"] = [{"added": "creation", "modified": "change",
                                       "deleted": "deletion"}.get(action, "info")]


def _address(value: str | None) -> tuple[str | None, int | None]:
    """An address field as (canonical address, port): Wazuh's snort decoder writes
    ``dstip`` as ``192.0.2.1:80`` (``[2001:db8::1]:80`` for IPv6). What the address gate
    refuses is dropped (counted there), so a bad value never fails the alert."""
    if value is None:
        return None, None
    text, port = value.strip(), None
    head, sep, tail = text.rpartition(":")
    if sep and tail.isdigit() and tail.isascii() and (head.count(":") == 0 or head.startswith("[")):
        text, port = head.removeprefix("[").removesuffix("]"), int(tail)
        if port > 65535:
            port = None
    address = netaddr.address_or_none(text)
    return (address, port) if address is not None else (None, None)


def _user(value: Any) -> str | None:
    """A user name without the angle brackets some logs put around it (Dovecot's
    ``user=<violet>``, decoded by Wazuh as ``<violet>``): the account is ``violet``."""
    text = _text(value)
    if text and len(text) > 2 and text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip() or None
    return text


def _windows(win: dict[str, Any], event: Event) -> None:
    """Windows event channel alerts: data.win.system / data.win.eventdata (camelCase)."""
    system, eventdata = _dict(win.get("system")), _dict(win.get("eventdata"))
    code = _text(system.get("eventID"))
    winlog: dict[str, Any] = {}
    if code:
        event["event"]["code"] = code
        winlog["event_id"] = code
    for dst, src in (("channel", "channel"), ("provider_name", "providerName"),
                     ("computer_name", "computer")):
        value = _text(system.get(src))
        if value:
            winlog[dst] = value
    if winlog:
        event["winlog"] = winlog
    user = _text(eventdata.get("targetUserName"))
    if user and user != "-" and "user" not in event:
        event["user"] = {"name": user}
        domain = _text(eventdata.get("targetDomainName"))
        if domain and domain != "-":
            event["user"]["domain"] = domain
    ip = _text(eventdata.get("ipAddress"))
    if ip and ip not in {"-", "::1", "127.0.0.1"} and "ip" not in event.get("source", {}):
        address, _ = _address(ip)
        if address is not None:
            event.setdefault("source", {})["ip"] = address
