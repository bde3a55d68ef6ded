"""Import Sigma rules into socd's rule language (docs/sigma.md).

Sigma files are parsed by pySigma (``SigmaCollection``); this module walks pySigma's
parsed condition trees and correlation objects and writes socd rules
(docs/rules.md). Everything that cannot be expressed faithfully is *reported*, with
the reason, instead of being converted into a rule that would silently match
something else:

* keyword searches (values without a field), field references, ``expand``
  placeholders, timestamp-part modifiers, UTF-16 (``wide``) values not wrapped in
  base64, Sigma ``lt``/``lte``/``eq`` correlation conditions, nested correlations;
* fields with no socd equivalent (see :data:`FIELD_MAP`). For Windows log sources an
  unmapped field is kept as ``winlog.event_data.<Field>`` (where Winlogbeat ships
  the event data), with a warning; ``keep_unmapped=True`` keeps any unmapped field
  under its raw name instead of refusing the rule.

A parse error (bad YAML, a Sigma rule pySigma rejects) is the only *error*; the CLI
exits non-zero for it. ``socd_tests:`` in a Sigma rule (a custom attribute) becomes
the socd rule's ``tests:``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from socd.patterns import Pattern, PatternError

SEVERITY = {"informational": "low", "low": "low", "medium": "medium", "high": "high",
            "critical": "critical"}

# Sigma / Windows / web-log field names -> ECS fields of socd events (docs/events.md).
FIELD_MAP: dict[str, str] = {
    # process
    "Image": "process.executable",
    "NewProcessName": "process.executable",
    "ProcessName": "process.executable",
    "CommandLine": "process.command_line",
    "ProcessCommandLine": "process.command_line",
    "ParentImage": "process.parent.executable",
    "ParentProcessName": "process.parent.executable",
    "ParentCommandLine": "process.parent.command_line",
    "ProcessId": "process.pid",
    "NewProcessId": "process.pid",
    "ParentProcessId": "process.parent.pid",
    # users
    "User": "user.name",
    "SubjectUserName": "user.name",
    "TargetUserName": "user.name",
    "SubjectDomainName": "user.domain",
    "TargetDomainName": "user.domain",
    "SubjectUserSid": "user.id",
    "TargetUserSid": "user.id",
    "AccountName": "user.name",
    "username": "user.name",
    "user": "user.name",
    # network
    "SourceIp": "source.ip",
    "src_ip": "source.ip",
    "IpAddress": "source.ip",
    "SourceAddress": "source.ip",
    "ClientIP": "source.ip",
    "c-ip": "source.ip",
    "src": "source.ip",
    "SourcePort": "source.port",
    "src_port": "source.port",
    "IpPort": "source.port",
    "SourceHostname": "source.domain",
    "WorkstationName": "source.domain",
    "Workstation": "source.domain",
    "DestinationIp": "destination.ip",
    "dst_ip": "destination.ip",
    "dest_ip": "destination.ip",
    "DestAddress": "destination.ip",
    "dst": "destination.ip",
    "DestinationPort": "destination.port",
    "dst_port": "destination.port",
    "dest_port": "destination.port",
    "DestPort": "destination.port",
    "DestinationHostname": "destination.domain",
    "Protocol": "network.transport",
    "Initiated": "network.direction",
    # host / event
    "EventID": "event.code",
    "EventCode": "event.code",
    "Channel": "winlog.channel",
    "Provider_Name": "winlog.provider_name",
    "Computer": "host.name",
    "ComputerName": "host.name",
    "Hostname": "host.name",
    "hostname": "host.name",
    # files
    "TargetFilename": "file.path",
    "FilePath": "file.path",
    "FileName": "file.name",
    "md5": "file.hash.md5",
    "sha1": "file.hash.sha1",
    "sha256": "file.hash.sha256",
    "Imphash": "file.hash.imphash",
    # DNS
    "QueryName": "dns.question.name",
    "query": "dns.question.name",
    "record_type": "dns.question.type",
    # web server / proxy logs
    "c-uri": "url.original",
    "cs-uri": "url.original",
    "uri": "url.original",
    "cs-uri-query": "url.query",
    "cs-uri-stem": "url.path",
    "cs-host": "url.domain",
    "cs-method": "http.request.method",
    "method": "http.request.method",
    "sc-status": "http.response.status_code",
    "c-useragent": "user_agent.original",
    "cs-user-agent": "user_agent.original",
    "cs-referrer": "http.request.referrer",
    # Suricata/Zeek-style
    "signature": "rule.name",
    "alert.signature": "rule.name",
    "alert.category": "rule.category",
}
# Fields whose value is the Windows LogonType number: kept raw in winlog.event_data.
WINDOWS_EVENT_DATA_FIELDS = {"LogonType"}
# Account-management events: there the decoder puts Target* in user.target.*.
ACCOUNT_EVENT_IDS = {"4720", "4722", "4723", "4724", "4725", "4726", "4738", "4740",
                     "4767", "4781"}
TARGET_USER_FIELDS = {"TargetUserName": "user.target.name",
                      "TargetDomainName": "user.target.domain"}

SYSMON = "Microsoft-Windows-Sysmon/Operational"
WINDOWS_SERVICES = {
    "security": "Security",
    "system": "System",
    "application": "Application",
    "sysmon": SYSMON,
    "powershell": "Microsoft-Windows-PowerShell/Operational",
    "powershell-classic": "Windows PowerShell",
    "taskscheduler": "Microsoft-Windows-TaskScheduler/Operational",
    "wmi": "Microsoft-Windows-WMI-Activity/Operational",
    "windefend": "Microsoft-Windows-Windows Defender/Operational",
}
# Windows categories -> (channel, event ids) alternatives.
WINDOWS_CATEGORIES: dict[str, list[tuple[str, list[str]]]] = {
    "process_creation": [("Security", ["4688"]), (SYSMON, ["1"])],
    "network_connection": [(SYSMON, ["3"])],
    "image_load": [(SYSMON, ["7"])],
    "create_remote_thread": [(SYSMON, ["8"])],
    "process_access": [(SYSMON, ["10"])],
    "file_event": [(SYSMON, ["11"])],
    "registry_add": [(SYSMON, ["12"])],
    "registry_delete": [(SYSMON, ["12"])],
    "registry_set": [(SYSMON, ["13"])],
    "registry_event": [(SYSMON, ["12", "13", "14"])],
    "pipe_created": [(SYSMON, ["17", "18"])],
    "dns_query": [(SYSMON, ["22"])],
    "file_delete": [(SYSMON, ["23", "26"])],
    "ps_script": [("Microsoft-Windows-PowerShell/Operational", ["4104"])],
    "ps_module": [("Microsoft-Windows-PowerShell/Operational", ["4103"])],
}

_MAX_ID = 100


class SigmaImportError(Exception):
    """A Sigma file that cannot be parsed (bad YAML, invalid Sigma)."""


class Unsupported(Exception):
    """The rule uses something socd cannot express; the message says what."""


@dataclass
class Skipped:
    source: str
    title: str
    sigma_id: str | None
    reason: str


@dataclass
class Conversion:
    rules: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


# ----------------------------------------------------------------------------- loading


def _sigma_files(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix in {".yml", ".yaml"}
                              and f.is_file()))
        else:
            out.append(p)
    return out


def convert_paths(paths: Iterable[str | Path], *, keep_unmapped: bool = False,
                  id_prefix: str = "sigma-") -> Conversion:
    """Convert Sigma files and directories (recursively ``*.yml``/``*.yaml``)."""
    texts = []
    for f in _sigma_files(paths):
        try:
            texts.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            return Conversion(errors=[f"{f}: cannot read: {exc}"])
    return convert_texts(texts, keep_unmapped=keep_unmapped, id_prefix=id_prefix)


def convert_text(text: str, source: str = "<string>", **kwargs: Any) -> Conversion:
    return convert_texts([(source, text)], **kwargs)


def convert_texts(texts: Iterable[tuple[str, str]], *, keep_unmapped: bool = False,
                  id_prefix: str = "sigma-") -> Conversion:
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule
    from sigma.exceptions import SigmaError, SigmaRuleLocation

    conv = Conversion()
    parsed: list[Any] = []
    origin: dict[int, str] = {}
    for source, text in texts:
        try:
            coll = SigmaCollection.from_yaml(text, collect_errors=True,
                                             source=SigmaRuleLocation(Path(source)))
        except (yaml.YAMLError, SigmaError) as exc:
            conv.errors.append(f"{source}: {exc}")
            continue
        for err in coll.errors:
            conv.errors.append(f"{source}: {err}")
        for rule in coll.rules:
            if getattr(rule, "errors", None):
                continue  # already reported through coll.errors
            parsed.append(rule)
            origin[id(rule)] = source
    collection = SigmaCollection(parsed)
    for rule in collection.rules:
        if isinstance(rule, SigmaCorrelationRule):
            try:
                rule.resolve_rule_references(collection)
            except SigmaError as exc:
                conv.skipped.append(Skipped(origin[id(rule)], rule.title, _sid(rule),
                                            f"correlation: {exc}"))
                # pySigma 0.11 leaves disable_output unannotated (it returns None).
                rule.disable_output()  # type: ignore[no-untyped-call]
    # resolve_rule_references disabled the output of rules referenced with generate: false
    converter = _Converter(conv, keep_unmapped, id_prefix)
    used_ids: set[str] = set()
    for rule in collection.rules:
        if not rule._output:
            continue
        source = origin[id(rule)]
        try:
            if isinstance(rule, SigmaCorrelationRule):
                out = converter.correlation(rule)
            else:
                out = converter.rule(rule)
        except Unsupported as exc:
            conv.skipped.append(Skipped(source, rule.title, _sid(rule), str(exc)))
            continue
        except SigmaError as exc:  # condition parse errors surface lazily
            conv.errors.append(f"{source}: {rule.title}: {exc}")
            continue
        rid, n = out["id"], 2
        while out["id"] in used_ids:
            out["id"] = f"{rid}-{n}"
            n += 1
        used_ids.add(out["id"])
        conv.rules.append(out)
    return conv


def _sid(rule: Any) -> str | None:
    return str(rule.id) if rule.id is not None else None


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:60].rstrip("-") or "rule"


# --------------------------------------------------------------------------- converting


class _Converter:
    def __init__(self, conv: Conversion, keep_unmapped: bool, id_prefix: str) -> None:
        self.conv = conv
        self.keep_unmapped = keep_unmapped
        self.id_prefix = id_prefix

    # -- rules ------------------------------------------------------------------------

    def _common(self, rule: Any) -> dict[str, Any]:
        name = str(rule.id) if rule.id is not None else (rule.name or _slug(rule.title))
        rid = (self.id_prefix + _slug(name)) if rule.id is None else self.id_prefix + name
        rid = rid.lower()[:_MAX_ID]
        title = rule.title
        desc = (rule.description or rule.title).strip()
        level = rule.level.name.lower() if rule.level is not None else None
        if level is None:
            self.conv.warnings.append(f"{rid}: no level; severity medium")
        out: dict[str, Any] = {
            "id": rid,
            # Sigma rules are written in English; the Vietnamese text repeats it until a
            # translator edits the output.
            "title": {"vi": title, "en": title},
            "description": {"vi": desc, "en": desc},
            "severity": SEVERITY.get(level or "medium", "medium"),
            "layer": 2,
            "category": "sigma",
        }
        tags = [f"{t.namespace}.{t.name}".lower() for t in rule.tags
                if t.namespace in {"attack", "cve", "car"}]
        if tags:
            out["tags"] = tags
        refs = [str(r) for r in (rule.references or [])]
        if rule.id is not None:
            refs.append(f"sigma:{rule.id}")
        if refs:
            out["references"] = refs
        status = rule.status.name.lower() if rule.status is not None else None
        if status in {"deprecated", "unsupported"}:
            out["enabled"] = False
            self.conv.warnings.append(f"{rid}: Sigma status {status}; disabled")
        return out

    def rule(self, rule: Any) -> dict[str, Any]:
        out = self._common(rule)
        match = self.detection(rule, out["id"])
        out["category"] = rule.logsource.category or rule.logsource.service or "sigma"
        out["match"] = match
        tests = self._tests(rule, out["id"])
        if tests:
            out["tests"] = tests
        return out

    def detection(self, rule: Any, rid: str) -> dict[str, Any]:
        """The rule's condition (with its log-source condition) as a socd condition."""
        index = self.logsource(rule.logsource, rid)
        self._check_modifiers(rule)
        event_ids = self._event_ids(rule)
        conditions = [self._cond(c.parsed, rule, event_ids, rid)
                      for c in rule.detection.parsed_condition]
        cond = conditions[0] if len(conditions) == 1 else {"any": conditions}
        if index is None:
            return cond
        return _and([index, cond])

    def correlation(self, corr: Any) -> dict[str, Any]:  # noqa: PLR0915
        from sigma.correlations import (
            SigmaCorrelationConditionOperator as Op,
        )
        from sigma.correlations import (
            SigmaCorrelationRule,
            SigmaCorrelationType,
        )

        out = self._common(corr)
        rid = out["id"]
        refs = [r.rule for r in corr.rules]
        if any(isinstance(r, SigmaCorrelationRule) for r in refs):
            raise Unsupported("correlation of correlations is not supported")
        matches = []
        for r in refs:
            try:
                matches.append(self.detection(r, rid))
            except Unsupported as exc:
                raise Unsupported(f"referenced rule {r.title!r}: {exc}") from None
        group_by = [self._group_field(g, corr) for g in (corr.group_by or [])]
        window = f"{corr.timespan.seconds}s"
        ctype = corr.type
        if ctype in (SigmaCorrelationType.EVENT_COUNT, SigmaCorrelationType.VALUE_COUNT):
            cond = corr.condition
            if cond.op == Op.GTE:
                count = cond.count
            elif cond.op == Op.GT:
                count = cond.count + 1
            else:
                raise Unsupported(f"correlation condition {cond.op.name.lower()} "
                                  "(socd thresholds fire at 'at least N')")
            if count < 1:
                raise Unsupported("correlation threshold below 1")
            out["match"] = matches[0] if len(matches) == 1 else {"any": matches}
            threshold: dict[str, Any] = {"window": window}
            if ctype == SigmaCorrelationType.EVENT_COUNT:
                threshold["count"] = count
            else:
                if not cond.fieldref:
                    raise Unsupported("value_count without a field")
                threshold["distinct"] = {"field": self._plain_field(cond.fieldref, rid),
                                         "count": count}
            if group_by:
                threshold["group_by"] = group_by
            out["threshold"] = threshold
            out["category"] = "correlation"
        elif ctype in (SigmaCorrelationType.TEMPORAL, SigmaCorrelationType.TEMPORAL_ORDERED):
            if len(matches) < 2:
                raise Unsupported("temporal correlation with fewer than 2 rules")
            if ctype == SigmaCorrelationType.TEMPORAL:
                self.conv.warnings.append(
                    f"{rid}: temporal (any order) correlation converted to a sequence in "
                    "the order the rules are listed")
            seq: dict[str, Any] = {"window": window,
                                   "steps": [{"match": m} for m in matches]}
            if group_by:
                seq["by"] = group_by
            out["sequence"] = seq
            out["category"] = "correlation"
        else:  # pragma: no cover - pySigma 0.11 has no other types
            raise Unsupported(f"correlation type {ctype}")
        tests = self._tests(corr, rid)
        if tests:
            out["tests"] = tests
        return out

    def _group_field(self, name: str, corr: Any) -> str:
        alias = corr.aliases.aliases.get(name) if corr.aliases else None
        if alias is None:
            return self._plain_field(name, corr.title)
        targets = {self._plain_field(f, corr.title) for f in alias.mapping.values()}
        if len(targets) != 1:
            raise Unsupported(f"field alias {name!r} maps to different socd fields "
                              f"{sorted(targets)}")
        return targets.pop()

    def _plain_field(self, name: str, rid: str) -> str:
        if name in FIELD_MAP:
            return FIELD_MAP[name]
        if "." in name and name.split(".", maxsplit=1)[0] in _ECS_ROOTS:
            return name  # already an ECS/socd path
        if self.keep_unmapped:
            self.conv.warnings.append(f"{rid}: unmapped field {name!r} kept as is")
            return name
        raise Unsupported(f"unmapped field {name!r}")

    def _tests(self, rule: Any, rid: str) -> list[dict[str, Any]]:
        raw = (rule.custom_attributes or {}).get("socd_tests")
        if not raw:
            return []
        if not isinstance(raw, list):
            raise Unsupported("socd_tests must be a list of tests")
        tests = []
        for t in raw:
            t = dict(t)
            t["expect"] = [{"rule.id": rid, **dict(e)} for e in t.get("expect") or []]
            tests.append(t)
        return tests

    # -- log sources --------------------------------------------------------------------

    def logsource(self, ls: Any, rid: str) -> dict[str, Any] | None:
        product = (ls.product or "").lower()
        service = (ls.service or "").lower()
        category = (ls.category or "").lower()
        if product == "windows":
            if service:
                if service not in WINDOWS_SERVICES:
                    raise Unsupported(f"Windows service {service!r} has no socd source")
                return {"field": "winlog.channel", "equals": WINDOWS_SERVICES[service]}
            if category:
                if category not in WINDOWS_CATEGORIES:
                    raise Unsupported(f"Windows category {category!r} has no socd source")
                alts = [_and([{"field": "winlog.channel", "equals": ch},
                              {"field": "event.code", "in": ids} if len(ids) > 1
                              else {"field": "event.code", "equals": ids[0]}])
                        for ch, ids in WINDOWS_CATEGORIES[category]]
                return alts[0] if len(alts) == 1 else {"any": alts}
            return {"field": "winlog.channel", "exists": True}
        if product == "linux":
            if service in {"auth", "sshd"}:
                cond = [{"field": "event.dataset", "equals": "system.auth"}]
                if service == "sshd":
                    cond.append({"field": "process.name", "equals": "sshd"})
                return _and(cond)
            if service == "sudo":
                return {"field": "event.action", "equals": "sudo"}
            if service in {"syslog", "cron", "clamav"} or (not service and not category):
                return {"field": "event.dataset", "in": ["syslog", "system.auth"]}
            if category == "process_creation":
                self.conv.warnings.append(
                    f"{rid}: linux process_creation has no socd log source; the rule matches "
                    "server/workstation EDR alerts carrying process fields")
                return {"field": "event.module", "in": ["server_edr", "workstation_edr"]}
            raise Unsupported(f"linux log source {service or category!r} has no socd decoder")
        if category == "firewall":
            return {"field": "event.category", "equals": "network"}
        if category in {"webserver", "proxy"}:
            return {"field": "event.category", "equals": "web"}
        if category == "dns":
            return {"field": "dns.question.name", "exists": True}
        if product in {"suricata"}:
            return {"field": "event.module", "equals": "suricata"}
        self.conv.warnings.append(
            f"{rid}: log source {ls.product}/{ls.service}/{ls.category} has no socd "
            "equivalent; no source condition added")
        return None

    # -- detection ----------------------------------------------------------------------

    def _check_modifiers(self, rule: Any) -> None:
        from sigma import modifiers as m

        refused = {
            m.SigmaFieldReferenceModifier: "fieldref (comparing two fields)",
            m.SigmaExpandModifier: "expand (placeholders)",
        }
        for name in ("SigmaTimestampMinuteModifier", "SigmaTimestampHourModifier",
                     "SigmaTimestampDayModifier", "SigmaTimestampWeekModifier",
                     "SigmaTimestampMonthModifier", "SigmaTimestampYearModifier"):
            if hasattr(m, name):
                refused[getattr(m, name)] = "timestamp part (minute/hour/day...)"
        for item in _detection_items(rule.detection.detections.values()):
            for mod in item.modifiers:
                if mod in refused:
                    raise Unsupported(f"unsupported modifier {refused[mod]} on field "
                                      f"{item.field!r}")

    def _event_ids(self, rule: Any) -> set[str]:
        ids: set[str] = set()
        for item in _detection_items(rule.detection.detections.values()):
            if item.field in {"EventID", "EventCode"}:
                for v in item.value:
                    ids.add(str(getattr(v, "number", v)))
        return ids

    def _field(self, name: str | None, rule: Any, event_ids: set[str], rid: str) -> str:
        if name is None:
            raise Unsupported("keyword search (a value without a field)")
        windows = (rule.logsource.product or "").lower() == "windows"
        if name in TARGET_USER_FIELDS and event_ids and event_ids <= ACCOUNT_EVENT_IDS:
            return TARGET_USER_FIELDS[name]
        if windows and name in WINDOWS_EVENT_DATA_FIELDS:
            return f"winlog.event_data.{name}"
        if name in FIELD_MAP:
            return FIELD_MAP[name]
        if "." in name and name.split(".", maxsplit=1)[0] in _ECS_ROOTS:
            return name
        if windows and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
            self.conv.warnings.append(
                f"{rid}: field {name!r} mapped to winlog.event_data.{name}")
            return f"winlog.event_data.{name}"
        if self.keep_unmapped:
            self.conv.warnings.append(f"{rid}: unmapped field {name!r} kept as is")
            return name
        raise Unsupported(f"unmapped field {name!r}")

    def _cond(self, node: Any, rule: Any, event_ids: set[str], rid: str) -> dict[str, Any]:
        from sigma.conditions import (
            ConditionAND,
            ConditionFieldEqualsValueExpression,
            ConditionNOT,
            ConditionOR,
            ConditionValueExpression,
        )

        if isinstance(node, ConditionAND):
            return _and([self._cond(a, rule, event_ids, rid) for a in node.args])
        if isinstance(node, ConditionOR):
            return _or([self._cond(a, rule, event_ids, rid) for a in node.args])
        if isinstance(node, ConditionNOT):
            return {"not": self._cond(node.args[0], rule, event_ids, rid)}
        if isinstance(node, ConditionValueExpression):
            raise Unsupported("keyword search (a value without a field)")
        if isinstance(node, ConditionFieldEqualsValueExpression):
            path = self._field(node.field, rule, event_ids, rid)
            return _value_condition(path, node.value)
        raise Unsupported(f"condition element {type(node).__name__}")


_ECS_ROOTS = {"event", "host", "source", "destination", "network", "user", "process", "file",
              "url", "dns", "rule", "threat", "observer", "agent", "log", "socd", "http",
              "tls", "winlog", "user_agent", "message", "tags"}


def _detection_items(detections: Iterable[Any]) -> Iterable[Any]:
    for d in detections:
        for item in d.detection_items:
            if hasattr(item, "detection_items"):
                yield from _detection_items([item])
            else:
                yield item


def _value_condition(path: str, value: Any) -> dict[str, Any]:
    from sigma import types as t

    if isinstance(value, t.SigmaExpansion):
        return _or([_value_condition(path, v) for v in value.values])
    if isinstance(value, t.SigmaString):
        return _string_condition(path, value)
    if isinstance(value, t.SigmaBool):
        return {"field": path, "equals": bool(value.boolean)}
    if isinstance(value, t.SigmaNumber):
        return {"field": path, "equals": value.number}
    if isinstance(value, t.SigmaNull):
        return {"field": path, "exists": False}
    if isinstance(value, t.SigmaExists):
        return {"field": path, "exists": bool(value.exists)}
    if isinstance(value, t.SigmaRegularExpression):
        flags = {f.name for f in value.flags}
        inline = "".join(c for c, n in (("m", "MULTILINE"), ("s", "DOTALL")) if n in flags)
        pattern = (f"(?{inline})" if inline else "") + value.regexp
        try:  # the rules engine runs regexes on RE2 (linear time): no lookaround etc.
            Pattern(pattern, ignore_case="IGNORECASE" in flags)
        except PatternError as exc:
            raise Unsupported(f"{exc.message} in {value.regexp!r} ({exc.hint})") from None
        leaf: dict[str, Any] = {"field": path, "regex": pattern}
        if "IGNORECASE" not in flags:
            leaf["case"] = "sensitive"  # Sigma regexes are case-sensitive by default
        return leaf
    if isinstance(value, t.SigmaCIDRExpression):
        return {"field": path, "cidr": [str(value.network)]}
    if isinstance(value, t.SigmaCompareExpression):
        op = {"LT": "lt", "LTE": "lte", "GT": "gt", "GTE": "gte"}[value.op.name]
        return {"field": path, op: value.number.number}
    if isinstance(value, t.SigmaFieldReference):
        raise Unsupported("fieldref (comparing two fields)")
    raise Unsupported(f"value type {type(value).__name__}")


def _string_condition(path: str, value: Any) -> dict[str, Any]:
    from sigma import types as t

    parts = list(value.s)
    if any(isinstance(p, t.Placeholder) for p in parts):
        raise Unsupported("placeholder (expand modifier)")
    text = "".join(p for p in parts if isinstance(p, str))
    if "\x00" in text:
        raise Unsupported("UTF-16 value (wide modifier without base64)")
    cased = isinstance(value, t.SigmaCasedString)
    multi, single = t.SpecialChars.WILDCARD_MULTI, t.SpecialChars.WILDCARD_SINGLE
    lead = bool(parts) and parts[0] is multi
    trail = len(parts) > 1 and parts[-1] is multi
    inner = parts[1 if lead else 0: len(parts) - (1 if trail else 0)]
    leaf: dict[str, Any]
    if all(isinstance(p, str) for p in inner) and inner:
        literal = "".join(inner)
        if lead and trail:
            leaf = {"field": path, "contains": literal}
        elif lead:
            leaf = {"field": path, "suffix": literal}
        elif trail:
            leaf = {"field": path, "prefix": literal}
        else:
            leaf = {"field": path, "equals": literal}
    elif not inner and (lead or trail):
        return {"field": path, "exists": True}  # '*' alone: any value
    elif not parts:
        leaf = {"field": path, "equals": ""}
    else:
        pattern = "".join(re.escape(p) if isinstance(p, str) else
                          (".*" if p is multi else "." if p is single else "")
                          for p in parts)
        leaf = {"field": path, "regex": f"^{pattern}$"}
        Pattern(leaf["regex"])  # escaped literals and wildcards: always linear-time RE2
    if cased:
        leaf["case"] = "sensitive"
    return leaf


_MERGEABLE = {"equals": "in", "in": "in", "prefix": "prefix", "suffix": "suffix",
              "contains": "contains", "cidr": "cidr"}


def _and(items: list[dict[str, Any]]) -> dict[str, Any]:
    flat: list[dict[str, Any]] = []
    for i in items:
        flat.extend(i["all"] if set(i) == {"all"} else [i])
    return flat[0] if len(flat) == 1 else {"all": flat}


def _or(items: list[dict[str, Any]]) -> dict[str, Any]:
    """OR of conditions; leaves on the same field and operator become one list leaf."""
    flat: list[dict[str, Any]] = []
    for i in items:
        flat.extend(i["any"] if set(i) == {"any"} else [i])
    order: list[dict[str, Any] | tuple[str, str, str]] = []
    slots: dict[tuple[str, str, str], list[Any]] = {}
    for leaf in flat:
        op = next((k for k in leaf if k in _MERGEABLE), None)
        if op is None or set(leaf) - {"field", op, "case"} or isinstance(leaf[op], bool):
            order.append(leaf)
            continue
        key = (leaf["field"], _MERGEABLE[op], leaf.get("case", ""))
        values = leaf[op] if isinstance(leaf[op], list) else [leaf[op]]
        if key not in slots:
            slots[key] = []
            order.append(key)
        slots[key].extend(v for v in values if v not in slots[key])
    merged: list[dict[str, Any]] = []
    for item in order:
        if isinstance(item, dict):
            merged.append(item)
            continue
        path, op, case = item
        values = slots[item]
        if len(values) == 1 and op != "cidr":
            leaf = {"field": path, "equals" if op == "in" else op: values[0]}
        else:
            leaf = {"field": path, op: values}
        if case:
            leaf["case"] = case
        merged.append(leaf)
    return merged[0] if len(merged) == 1 else {"any": merged}


# ------------------------------------------------------------------------------- output


def to_yaml(conv: Conversion, sources: Iterable[str] = ()) -> str:
    """The converted rules as a socd rule file, the report as a comment header."""
    lines = ["# socd rules converted from Sigma by `socd rules import-sigma` (docs/sigma.md)."]
    srcs = list(sources)
    if srcs:
        lines.append("# sources: " + ", ".join(srcs))
    lines.append(f"# converted: {len(conv.rules)}, not converted: {len(conv.skipped)}")
    for s in conv.skipped:
        lines.append(f"#   not converted: {s.title!r} ({s.sigma_id or s.source}): {s.reason}")
    for w in conv.warnings:
        lines.append(f"#   warning: {w}")
    lines.append("# Titles and descriptions are the Sigma (English) text in both languages;")
    lines.append("# translate the `vi` entries before shipping.")
    body = yaml.dump({"rules": conv.rules}, Dumper=_Dumper, sort_keys=False,
                     allow_unicode=True, width=100, default_flow_style=False)
    return "\n".join(lines) + "\n" + body


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> Any:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)


def report_lines(conv: Conversion) -> list[str]:
    """Human-readable report for stderr."""
    out = [f"error: {e}" for e in conv.errors]
    out += [f"not converted: {s.source}: {s.title!r}"
            f"{f' ({s.sigma_id})' if s.sigma_id else ''}: {s.reason}" for s in conv.skipped]
    out += [f"warning: {w}" for w in conv.warnings]
    total = len(conv.rules) + len(conv.skipped)
    out.append(f"{len(conv.rules)} of {total} Sigma rules converted, {len(conv.skipped)} "
               f"not converted, {len(conv.errors)} parse errors")
    return out


def summary(conv: Conversion) -> Mapping[str, int]:
    return {"converted": len(conv.rules), "skipped": len(conv.skipped),
            "errors": len(conv.errors), "warnings": len(conv.warnings)}
