"""Windows events into ECS: what the ``winlogbeat`` and ``windows_json`` decoders share.

Both decoders end with the same Windows event: ``event.code`` and ``winlog.event_id``
(the id as text), ``winlog.channel`` and the event's own fields in
``winlog.event_data``. :func:`complete` then fills the ECS fields the rules read, from
``winlog.event_data`` only, so a rule written for one decoder works on the other:

======================= ============================= ==================================
channel / id            meaning                       ECS fields set
======================= ============================= ==================================
Security 4624, 4625     logon succeeded / failed      authentication; user, source.ip,
                                                      winlog.logon.type, event.reason
Security 4648           logon with explicit           authentication; user, user.target,
                        credentials                   destination.domain, source.ip
Security 4672           special privileges at logon   iam / admin; user
Security 4688           process created               process.*, process.parent.*
Security 4720           user account created          iam; user (who), user.target
Security 4728/4732/4756 member added to a security    iam / group; user (who),
                        group (global/local/univ.)    user.target (member), group.*
Security 4740           account locked out            iam; user.target, source.domain
Security 4768, 4769     Kerberos TGT / service        authentication; user, source.ip,
                        ticket requested              event.outcome, event.reason
Security 4771           Kerberos pre-auth failed      authentication failure; user,
                                                      source.ip, event.reason
Security 4776           NTLM credential validation    authentication; user,
                                                      source.domain (the workstation)
Security 4697           service installed             configuration; user
Security 4698/4702      scheduled task created /      configuration; user,
                        updated                       winlog.logon.id
Security 5140/5145      network share accessed /      file / access; user, source.ip
                        object checked
Security 1102           Security log cleared          configuration / deletion; user
System 104              an event log was cleared      configuration / deletion
System 7045             service installed             configuration / creation
Sysmon 1                process created               process.*, process.parent.*, user
======================= ============================= ==================================

Every address goes through :mod:`socd.netaddr`: Windows writes ``-``, IPv4-mapped
IPv6 (``::ffff:10.0.0.5``) and, from hostile input, anything at all; an address the
gate refuses is left out of ``source.ip`` (the raw text stays in
``winlog.event_data``) instead of failing the event, whose other facts still count.
"""

from __future__ import annotations

import ntpath
import re
from collections.abc import Callable
from typing import Any

from socd import netaddr
from socd.decoders import coerce
from socd.decoders.coerce import as_dict
from socd.event import Event
from socd.severity import Severity

LOGON_TYPES = {
    "0": "System", "2": "Interactive", "3": "Network", "4": "Batch", "5": "Service",
    "7": "Unlock", "8": "NetworkCleartext", "9": "NewCredentials", "10": "RemoteInteractive",
    "11": "CachedInteractive", "12": "CachedRemoteInteractive", "13": "CachedUnlock",
}  # fmt: skip

# Status / SubStatus of 4625 and 4776 as NTSTATUS codes, lower case.
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

# Result codes of 4768 / 4769 / 4771 (Kerberos error codes, RFC 4120), lower case.
KERBEROS_FAILURES = {
    "0x6": "user name does not exist",
    "0x12": "account disabled, expired or locked out",
    "0x17": "password expired",
    "0x18": "wrong password",
    "0x25": "clock out of sync with the domain controller",
}

SYSMON_CHANNEL = "microsoft-windows-sysmon/operational"

RULE_NAMES = {
    "1102": "Windows security audit log cleared",
    "4720": "Windows user account created",
    "4625": "Windows logon failed",
    "4740": "Windows user account locked out",
}

# What Windows and its shippers write for "no value" (besides the empty string).
_NO_VALUE = frozenset({"-", "null"})
# "Account Name:  wardog" in the rendered message of 1102 (its UserData is not always
# shipped as fields); only the head of a message is searched.
_MESSAGE_FIELD = re.compile(r"^[ \t]*(Security ID|Account Name|Domain Name):([^\r\n]*)",
                            re.MULTILINE)
_MESSAGE_HEAD_CHARS = 4096


def text(value: Any) -> str | None:
    """A Windows field as stripped text; ``-``, ``null``, empty, floats (Windows
    writes integers or text) and non-scalars are no value."""
    return coerce.text(value, strip=True, absent=_NO_VALUE, floats=False)


def _pid(value: Any) -> int | None:
    """Windows writes process ids in hex (``0x1a2c``) in the Security log."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    value_t = text(value)
    if value_t is None:
        return None
    try:
        return int(value_t, 16) if value_t.lower().startswith("0x") else int(value_t)
    except ValueError:
        return None


def _port(value: Any) -> int | None:
    number = _pid(value)
    return number if number is not None and 0 < number <= 65535 else None


def ip(value: Any) -> str | None:
    """The canonical address of a Windows ``IpAddress``, or None.

    ``-`` and empty mean no address; IPv4-mapped IPv6 becomes IPv4; anything the
    address gate refuses (a host name, a zone id, a huge text) is counted there and
    left out."""
    value_t = text(value)
    return None if value_t is None else netaddr.address_or_none(value_t)


def _set(node: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        node[key] = value


def child(event: Event, key: str) -> dict[str, Any]:
    """``event[key]`` as a dict (replaced when the input had a non-object there)."""
    node = event.get(key)
    if not isinstance(node, dict):
        node = {}
        event[key] = node
    return node


def is_server(event: Event) -> bool:
    """True when ``host.os`` names a Windows Server edition."""
    os_ = as_dict(as_dict(event.get("host")).get("os"))
    for key in ("name", "full", "platform", "type", "family"):
        value = os_.get(key)
        if isinstance(value, str) and "server" in value.lower():
            return True
    return False


def mark_alert(event: Event, code: str, severity: Severity) -> None:
    """Make ``event`` the decoder's own alert for an event id that is one by nature."""
    child(event, "event")["kind"] = "alert"
    child(event, "socd").setdefault("severity", severity.value)
    rule = child(event, "rule")
    rule.setdefault("id", f"windows-security-{code}")
    rule.setdefault("name", RULE_NAMES.get(code, f"Windows Security event {code}"))
    rule.setdefault("ruleset", "socd-windows")


def complete(event: Event, code: str, channel: str | None, data: dict[str, Any],
             winlog: dict[str, Any]) -> None:
    """Fill the ECS fields of a known Windows event from its ``data`` (event_data).

    Security events are recognised on the Security channel or when no channel is
    given (Winlogbeat records trimmed by a shipper); System and Sysmon events only on
    their channel: event ids repeat across channels (TaskScheduler has a 1102 too)."""
    family = "security" if channel is None else channel.lower()
    handler = _HANDLERS.get(family, {}).get(code)
    if handler is not None:
        handler(event, child(event, "event"), data, winlog)


def _user(event: Event, name: Any, domain: Any, sid: Any = None) -> None:
    name_t = text(name)
    if name_t is None:
        return
    user = child(event, "user")
    user["name"] = name_t
    _set(user, "domain", text(domain))
    _set(user, "id", text(sid))


def _subject(event: Event, data: dict[str, Any]) -> None:
    _user(event, data.get("SubjectUserName"), data.get("SubjectDomainName"),
          data.get("SubjectUserSid"))


def _source_ip(event: Event, data: dict[str, Any]) -> None:
    address = ip(data.get("IpAddress"))
    if address:
        source = child(event, "source")
        source["ip"] = address
        _set(source, "port", _port(data.get("IpPort")))


def _logon_id(winlog: dict[str, Any], value: Any) -> None:
    logon_id = text(value)
    if logon_id:
        logon = as_dict(winlog.get("logon"))
        logon["id"] = logon_id
        winlog["logon"] = logon


def _categorize(ev: dict[str, Any], category: str, types: list[str], action: str,
                outcome: str = "success") -> None:
    ev["category"] = [category]
    ev["type"] = types
    ev["outcome"] = outcome
    ev["action"] = action


def _reason(ev: dict[str, Any], table: dict[str, str], *values: Any) -> None:
    for value in values:
        status = text(value)
        if status and status.lower() in table:
            ev["reason"] = table[status.lower()]
            return


def _succeeded(status: Any) -> bool:
    """A Kerberos/NTLM result code of 0 (``0x0``) is success."""
    value = text(status)
    if value is None:
        return True
    try:
        return int(value, 16 if value.lower().startswith("0x") else 10) == 0
    except ValueError:
        return False


def _logon(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any], success: bool) -> None:
    _categorize(ev, "authentication", ["start"], "logged-in" if success else "logon-failed",
                "success" if success else "failure")
    _user(event, data.get("TargetUserName"), data.get("TargetDomainName"),
          data.get("TargetUserSid"))
    _source_ip(event, data)
    workstation = text(data.get("WorkstationName"))
    if workstation:
        child(event, "source")["domain"] = workstation
    logon = as_dict(winlog.get("logon"))
    logon_type = text(data.get("LogonType"))
    if logon_type:
        logon["type"] = LOGON_TYPES.get(logon_type, logon_type)
    _set(logon, "id", text(data.get("TargetLogonId")))
    if logon:
        winlog["logon"] = logon
    if not success:
        _reason(ev, LOGON_FAILURES, data.get("SubStatus"), data.get("Status"))
    _process_from(event, data.get("ProcessName"), data.get("ProcessId"))


def _process_from(event: Event, path: Any, pid: Any) -> None:
    executable = text(path)
    if executable is None:
        return
    process = child(event, "process")
    process["executable"] = executable
    process["name"] = ntpath.basename(executable)
    _set(process, "pid", _pid(pid))


def _h4624(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _logon(event, ev, data, winlog, success=True)


def _h4625(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _logon(event, ev, data, winlog, success=False)


def _h4648(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _categorize(ev, "authentication", ["start"], "explicit-credential-logon")
    _subject(event, data)
    _target(event, data)
    server = text(data.get("TargetServerName"))
    if server:
        child(event, "destination")["domain"] = server
    _source_ip(event, data)
    _process_from(event, data.get("ProcessName"), data.get("ProcessId"))


def _h4672(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _categorize(ev, "iam", ["admin"], "logged-in-special")
    _subject(event, data)
    _logon_id(winlog, data.get("SubjectLogonId"))


def _h4688(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _categorize(ev, "process", ["start"], "created-process")
    _process_from(event, data.get("NewProcessName"), data.get("NewProcessId"))
    command_line = text(data.get("CommandLine"))
    if command_line:
        child(event, "process")["command_line"] = command_line
    _parent(event, data.get("ParentProcessName"), data.get("ProcessId"))
    _subject(event, data)


def _parent(event: Event, path: Any, pid: Any, command_line: Any = None) -> None:
    parent_path = text(path)
    parent_pid = _pid(pid)
    if parent_path or parent_pid is not None:
        parent = child(child(event, "process"), "parent")
        if parent_path:
            parent["executable"] = parent_path
            parent["name"] = ntpath.basename(parent_path)
        _set(parent, "pid", parent_pid)
        _set(parent, "command_line", text(command_line))


def _target(event: Event, data: dict[str, Any]) -> None:
    name = text(data.get("TargetUserName"))
    if name:
        target = {"name": name}
        _set(target, "domain", text(data.get("TargetDomainName")))
        child(event, "user")["target"] = target


def _h4720(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _categorize(ev, "iam", ["user", "creation"], "added-user-account")
    _subject(event, data)
    _target(event, data)


def _member_name(value: Any) -> str | None:
    """The account of a group-membership event's MemberName: the CN of a DN
    (``CN=support_tmp,CN=Users,DC=tinh,DC=local``), else the text itself."""
    name = text(value)
    if name and name[:3].upper() == "CN=":
        # A comma inside a CN is escaped as "\,".
        head = re.split(r"(?<!\\),", name[3:], maxsplit=1)[0]
        return head.replace("\\,", ",") or None
    return name


def _group_member_added(event: Event, ev: dict[str, Any], data: dict[str, Any],
                        winlog: dict[str, Any]) -> None:
    _categorize(ev, "iam", ["group", "change"], "added-member-to-group")
    _subject(event, data)
    group: dict[str, Any] = {}
    _set(group, "name", text(data.get("TargetUserName")))
    _set(group, "domain", text(data.get("TargetDomainName")))
    _set(group, "id", text(data.get("TargetSid")))
    if group:
        event["group"] = group
    target: dict[str, Any] = {}
    _set(target, "name", _member_name(data.get("MemberName")))
    _set(target, "id", text(data.get("MemberSid")))
    if target:
        child(event, "user")["target"] = target


def _h4740(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _categorize(ev, "iam", ["user", "change"], "locked-out-user-account")
    _subject(event, data)
    name = text(data.get("TargetUserName"))
    if name:
        child(event, "user")["target"] = {"name": name}
    # In 4740 TargetDomainName is the "Caller Computer Name": where the bad logons came from.
    caller = text(data.get("TargetDomainName"))
    if caller:
        child(event, "source")["domain"] = caller


def _kerberos(event: Event, ev: dict[str, Any], data: dict[str, Any], action: str,
              success: bool) -> None:
    _categorize(ev, "authentication", ["start"], action, "success" if success else "failure")
    name = text(data.get("TargetUserName"))
    if name:
        # 4769 names the account as user@REALM.
        account, _, realm = name.partition("@")
        _user(event, account or name, realm or data.get("TargetDomainName"),
              data.get("TargetSid"))
    _source_ip(event, data)
    if not success:
        _reason(ev, KERBEROS_FAILURES, data.get("Status"))


def _h4768(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _kerberos(event, ev, data, "kerberos-tgt-requested", _succeeded(data.get("Status")))


def _h4769(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _kerberos(event, ev, data, "kerberos-service-ticket-requested",
              _succeeded(data.get("Status")))


def _h4771(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _kerberos(event, ev, data, "kerberos-preauth-failed", success=False)


def _h4776(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    success = _succeeded(data.get("Status"))
    _categorize(ev, "authentication", ["start"], "ntlm-credential-validation",
                "success" if success else "failure")
    _user(event, data.get("TargetUserName"), None)
    workstation = text(data.get("Workstation"))
    if workstation:
        child(event, "source")["domain"] = workstation
    if not success:
        _reason(ev, LOGON_FAILURES, data.get("Status"))


def _service_installed(event: Event, ev: dict[str, Any], data: dict[str, Any],
                       winlog: dict[str, Any]) -> None:
    _categorize(ev, "configuration", ["creation"], "service-installed")
    _subject(event, data)
    _logon_id(winlog, data.get("SubjectLogonId"))  # 4697: the session that installed it


def _task(event: Event, ev: dict[str, Any], data: dict[str, Any], winlog: dict[str, Any],
          types: list[str], action: str) -> None:
    _categorize(ev, "configuration", types, action)
    _subject(event, data)
    _logon_id(winlog, data.get("SubjectLogonId"))


def _h4698(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _task(event, ev, data, winlog, ["creation"], "scheduled-task-created")


def _h4702(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _task(event, ev, data, winlog, ["change"], "scheduled-task-updated")


def _share(event: Event, ev: dict[str, Any], data: dict[str, Any], winlog: dict[str, Any],
           action: str) -> None:
    _categorize(ev, "file", ["access"], action)
    _subject(event, data)
    _source_ip(event, data)
    _logon_id(winlog, data.get("SubjectLogonId"))


def _h5140(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _share(event, ev, data, winlog, "network-share-object-accessed")


def _h5145(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _share(event, ev, data, winlog, "network-share-object-access-checked")


def _message_subject(event: Event) -> dict[str, str]:
    """Subject fields from the rendered message (``Account Name:``...), when a shipper
    sent the message but not the event's UserData."""
    message = event.get("message")
    if not isinstance(message, str):
        return {}
    found: dict[str, str] = {}
    keys = {"Security ID": "SubjectUserSid", "Account Name": "SubjectUserName",
            "Domain Name": "SubjectDomainName"}
    for match in _MESSAGE_FIELD.finditer(message[:_MESSAGE_HEAD_CHARS]):
        value = match.group(2).strip()
        if value:
            found.setdefault(keys[match.group(1)], value)
    return found


def _h1102(event: Event, ev: dict[str, Any], data: dict[str, Any],
           winlog: dict[str, Any]) -> None:
    _categorize(ev, "configuration", ["deletion"], "audit-log-cleared")
    # 1102 carries its data in user_data (LogFileCleared), not event_data.
    subject = as_dict(winlog.get("user_data")) or data
    if text(subject.get("SubjectUserName")) is None:
        subject = _message_subject(event)
    _subject(event, subject)


def _h104(event: Event, ev: dict[str, Any], data: dict[str, Any],
          winlog: dict[str, Any]) -> None:
    _categorize(ev, "configuration", ["deletion"], "log-cleared")
    _subject(event, as_dict(winlog.get("user_data")) or data)


def _sysmon_process(event: Event, ev: dict[str, Any], data: dict[str, Any],
                    winlog: dict[str, Any]) -> None:
    """Sysmon 1, unless the shipper already filled ``process`` (Winlogbeat 7's module)."""
    _categorize(ev, "process", ["start"], "created-process")
    if "executable" in as_dict(event.get("process")):
        return
    _process_from(event, data.get("Image"), data.get("ProcessId"))
    command_line = text(data.get("CommandLine"))
    if command_line:
        child(event, "process")["command_line"] = command_line
    _parent(event, data.get("ParentImage"), data.get("ParentProcessId"),
            data.get("ParentCommandLine"))
    account = text(data.get("User"))
    if account and "user" not in event:
        domain, _, name = account.rpartition("\\")
        _user(event, name, domain or None)


Handler = Callable[[Event, dict[str, Any], dict[str, Any], dict[str, Any]], None]

_HANDLERS: dict[str, dict[str, Handler]] = {
    "security": {
        "4624": _h4624, "4625": _h4625, "4648": _h4648, "4672": _h4672, "4688": _h4688,
        "4720": _h4720, "4728": _group_member_added, "4732": _group_member_added,
        "4756": _group_member_added, "4740": _h4740, "4768": _h4768, "4769": _h4769,
        "4771": _h4771, "4776": _h4776, "4697": _service_installed, "4698": _h4698,
        "4702": _h4702, "5140": _h5140, "5145": _h5145, "1102": _h1102,
    },
    "system": {"7045": _service_installed, "104": _h104},
    SYSMON_CHANNEL: {"1": _sysmon_process},
}
