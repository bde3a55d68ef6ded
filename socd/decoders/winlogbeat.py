"""The ``winlogbeat`` decoder: Windows events as shipped by Winlogbeat 8 (ECS JSON).

The record is passed through like the ``json`` decoder (nested or dotted keys), then
the Windows Security events the SOC watches are completed from
``winlog.event_data``:

===== =============================== ======================== ==========================
id    meaning                         event.category / type    kind
===== =============================== ======================== ==========================
4624  logon succeeded                 authentication / start   event
4625  logon failed                    authentication / start   event
4672  special privileges at logon     iam / admin              event
4688  process created                 process / start          event
4720  user account created            iam / user, creation     alert, medium
4740  user account locked out         iam / user, change       event
1102  security audit log cleared      configuration / deletion alert, high
===== =============================== ======================== ==========================

Clearing the audit log and creating accounts are alerts by nature: both are rare,
both are what an intruder does (hide tracks, keep access), and a SOC wants every
occurrence reviewed. Logons, failures and lockouts are events: one alone means little,
the rules engine counts them. ``socd.asset_kind`` is ``server`` when ``host.os`` names
a Windows Server edition, else ``workstation``.
"""

from __future__ import annotations

import ntpath
from typing import Any, Literal

from pydantic import Field

from socd.config import DecoderConfig
from socd.decoders.base import BaseDecoder
from socd.errors import DecodeError
from socd.event import Event, unflatten
from socd.plugins import PluginContext
from socd.severity import Severity

LOGON_TYPES = {
    "0": "System", "2": "Interactive", "3": "Network", "4": "Batch", "5": "Service",
    "7": "Unlock", "8": "NetworkCleartext", "9": "NewCredentials", "10": "RemoteInteractive",
    "11": "CachedInteractive", "12": "CachedRemoteInteractive", "13": "CachedUnlock",
}  # fmt: skip

# Status / SubStatus of 4625 (and 4771/4776) as NTSTATUS codes, lower case.
LOGON_FAILURES = {
    "0xc0000064": "user name does not exist",
    "0xc000006a": "wrong password",
    "0xc000006d": "bad user name or password",
    "0xc000006e": "account restriction",
    "0xc000006f": "logon outside allowed hours",
    "0xc0000070": "workstation not allowed",
    "0xc0000071": "password expired",
    "0xc0000072": "account disabled",
    "0xc0000133": "clock out of sync with the domain controller",
    "0xc000015b": "logon type not granted",
    "0xc0000193": "account expired",
    "0xc0000224": "password must change at next logon",
    "0xc0000234": "account locked out",
}

_NO_VALUE = {"", "-", "null"}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        text = value.strip()
        return None if text in _NO_VALUE else text
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _pid(value: Any) -> int | None:
    """Windows writes process ids in hex (``0x1a2c``) in the Security log."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    text = _text(value)
    if text is None:
        return None
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None


def _port(value: Any) -> int | None:
    number = _pid(value)
    return number if number is not None and 0 < number <= 65535 else None


def _ip(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    if text.lower().startswith("::ffff:") and "." in text:
        return text[7:]  # IPv4-mapped, as Windows writes IPv4 peers of dual-stack sockets
    return text


def _set(node: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        node[key] = value


def _child(event: Event, key: str) -> dict[str, Any]:
    """``event[key]`` as a dict (replaced when the input had a non-object there)."""
    node = event.get(key)
    if not isinstance(node, dict):
        node = {}
        event[key] = node
    return node


class WinlogbeatDecoder(BaseDecoder):
    """Winlogbeat ECS JSON in, ECS events out (Security events completed)."""

    class Config(DecoderConfig):
        type: Literal["winlogbeat"]
        alert_event_ids: dict[str, Severity] = Field(
            default_factory=lambda: {"1102": Severity.HIGH, "4720": Severity.MEDIUM},
            description="Security event ids that are alerts by nature, with their severity.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        super().__init__(ctx.name, severity_table=config.severity_table,
                         keep_original=config.keep_original)
        self.alert_ids = dict(config.alert_event_ids)

    def convert(self, obj: dict[str, Any]) -> Event:
        event: Event = unflatten(obj) if any("." in key for key in obj) else obj
        for key in ("event", "winlog", "socd"):
            if key in event and not isinstance(event[key], dict):
                raise DecodeError("invalid_field", f"{key} must be an object")
        ev = _child(event, "event")
        winlog = _child(event, "winlog")
        code = _text(winlog.get("event_id")) or _text(ev.get("code"))
        ev.setdefault("kind", "event")
        ev.setdefault("module", "windows")
        channel = _text(winlog.get("channel"))
        if channel:
            ev.setdefault("dataset", f"windows.{channel.lower().replace('/', '_')}")
        socd = _child(event, "socd")
        if "asset_kind" not in socd:
            socd["asset_kind"] = "server" if _is_server(event) else "workstation"
        if code is None:
            return event
        winlog["event_id"] = code
        ev["code"] = code
        if channel is None or channel.lower() == "security":
            handler = _HANDLERS.get(code)
            if handler is not None:
                handler(event, ev, _dict(winlog.get("event_data")), winlog)
            severity = self.alert_ids.get(code)
            if severity is not None:
                ev["kind"] = "alert"
                socd.setdefault("severity", severity.value)
                rule = _child(event, "rule")
                rule.setdefault("id", f"windows-security-{code}")
                rule.setdefault("name", _RULE_NAMES.get(code, f"Windows Security event {code}"))
                rule.setdefault("ruleset", "socd-windows")
        return event


def _is_server(event: Event) -> bool:
    os_ = _dict(_dict(event.get("host")).get("os"))
    for key in ("name", "full", "platform", "type", "family"):
        value = os_.get(key)
        if isinstance(value, str) and "server" in value.lower():
            return True
    return False


def _user(event: Event, name: Any, domain: Any, sid: Any = None) -> None:
    name_t = _text(name)
    if name_t is None:
        return
    user = _child(event, "user")
    user["name"] = name_t
    _set(user, "domain", _text(domain))
    _set(user, "id", _text(sid))


def _logon(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any], success: bool) -> None:
    ev["category"] = ["authentication"]
    ev["type"] = ["start"]
    ev["outcome"] = "success" if success else "failure"
    ev["action"] = "logged-in" if success else "logon-failed"
    _user(event, data.get("TargetUserName"), data.get("TargetDomainName"),
          data.get("TargetUserSid"))
    ip = _ip(data.get("IpAddress"))
    if ip:
        source = _child(event, "source")
        source["ip"] = ip
        _set(source, "port", _port(data.get("IpPort")))
    workstation = _text(data.get("WorkstationName"))
    if workstation:
        _child(event, "source")["domain"] = workstation
    logon = winlog.get("logon") if isinstance(winlog.get("logon"), dict) else {}
    logon_type = _text(data.get("LogonType"))
    if logon_type:
        logon["type"] = LOGON_TYPES.get(logon_type, logon_type)
    _set(logon, "id", _text(data.get("TargetLogonId")))
    if logon:
        winlog["logon"] = logon
    if not success:
        for key in ("SubStatus", "Status"):
            status = _text(data.get(key))
            if status and status.lower() in LOGON_FAILURES:
                ev["reason"] = LOGON_FAILURES[status.lower()]
                break
    _process_from(event, data.get("ProcessName"), data.get("ProcessId"))


def _process_from(event: Event, path: Any, pid: Any) -> None:
    executable = _text(path)
    if executable is None:
        return
    process = _child(event, "process")
    process["executable"] = executable
    process["name"] = ntpath.basename(executable)
    _set(process, "pid", _pid(pid))


def _h4624(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _logon(event, ev, data, winlog, success=True)


def _h4625(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _logon(event, ev, data, winlog, success=False)


def _h4672(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    ev["category"] = ["iam"]
    ev["type"] = ["admin"]
    ev["outcome"] = "success"
    ev["action"] = "logged-in-special"
    _user(event, data.get("SubjectUserName"), data.get("SubjectDomainName"),
          data.get("SubjectUserSid"))
    logon_id = _text(data.get("SubjectLogonId"))
    if logon_id:
        logon = winlog.get("logon") if isinstance(winlog.get("logon"), dict) else {}
        logon["id"] = logon_id
        winlog["logon"] = logon


def _h4688(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    ev["category"] = ["process"]
    ev["type"] = ["start"]
    ev["outcome"] = "success"
    ev["action"] = "created-process"
    _process_from(event, data.get("NewProcessName"), data.get("NewProcessId"))
    command_line = _text(data.get("CommandLine"))
    if command_line:
        _child(event, "process")["command_line"] = command_line
    parent_path = _text(data.get("ParentProcessName"))
    parent_pid = _pid(data.get("ProcessId"))
    if parent_path or parent_pid is not None:
        parent = _child(_child(event, "process"), "parent")
        if parent_path:
            parent["executable"] = parent_path
            parent["name"] = ntpath.basename(parent_path)
        _set(parent, "pid", parent_pid)
    _user(event, data.get("SubjectUserName"), data.get("SubjectDomainName"),
          data.get("SubjectUserSid"))


def _target(event: Event, data: dict[str, Any]) -> None:
    name = _text(data.get("TargetUserName"))
    if name:
        target = {"name": name}
        _set(target, "domain", _text(data.get("TargetDomainName")))
        _child(event, "user")["target"] = target


def _h4720(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    ev["category"] = ["iam"]
    ev["type"] = ["user", "creation"]
    ev["outcome"] = "success"
    ev["action"] = "added-user-account"
    _user(event, data.get("SubjectUserName"), data.get("SubjectDomainName"),
          data.get("SubjectUserSid"))
    _target(event, data)


def _h4740(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    ev["category"] = ["iam"]
    ev["type"] = ["user", "change"]
    ev["outcome"] = "success"
    ev["action"] = "locked-out-user-account"
    _user(event, data.get("SubjectUserName"), data.get("SubjectDomainName"),
          data.get("SubjectUserSid"))
    name = _text(data.get("TargetUserName"))
    if name:
        _child(event, "user")["target"] = {"name": name}
    # In 4740 TargetDomainName is the "Caller Computer Name": where the bad logons came from.
    caller = _text(data.get("TargetDomainName"))
    if caller:
        _child(event, "source")["domain"] = caller


def _h1102(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    ev["category"] = ["configuration"]
    ev["type"] = ["deletion"]
    ev["outcome"] = "success"
    ev["action"] = "audit-log-cleared"
    # 1102 carries its data in user_data (LogFileCleared), not event_data.
    subject = _dict(winlog.get("user_data")) or data
    _user(event, subject.get("SubjectUserName"), subject.get("SubjectDomainName"),
          subject.get("SubjectUserSid"))


_HANDLERS = {"4624": _h4624, "4625": _h4625, "4672": _h4672, "4688": _h4688,
             "4720": _h4720, "4740": _h4740, "1102": _h1102}
_RULE_NAMES = {
    "1102": "Windows security audit log cleared",
    "4720": "Windows user account created",
    "4625": "Windows logon failed",
    "4740": "Windows user account locked out",
}
