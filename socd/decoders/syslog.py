"""The ``syslog`` decoder: RFC 3164 (BSD) and RFC 5424 lines into ECS events.

One record is one syslog message (the collector does the framing). The header
gives ``@timestamp``, ``log.syslog.*``, ``host.hostname`` and ``process.*``;
when ``parse_payloads`` is on, the message is then parsed further: CEF and LEEF
payloads (firewalls, IPS), FortiGate ``key=value`` logs and Linux sshd, sudo and
PAM authentication messages (one record may then stand for several attempts:
``message repeated N times`` of an sshd failure gives N events). Everything else
stays an ``event.kind: event`` with the message text.

Failure reasons (metric labels, a fixed set):

* ``invalid_utf8``: not UTF-8 and no ``<PRI>`` header (binary noise). A line
  with a valid header but a legacy encoding is kept, with U+FFFD replacements
  and the tag ``invalid_utf8``.
* ``invalid_syslog``: empty, or no header and control characters (garbage).
* ``invalid_cef``: the ``cef`` decoder found no CEF payload.

Typed fields are only set from values checked here (integers parsed, addresses
passed through :mod:`socd.netaddr` and written canonically: a zone id such as
``2001:db8::5%x`` is refused and counted), so a bad value never fails an event:
it stays in ``socd.vendor`` or in the message.

See ``docs/sources/syslog.md`` for the field table.
"""

from __future__ import annotations

import copy
import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal

from pydantic import Field

from socd import netaddr
from socd.config import DecoderConfig
from socd.decoders.base import (
    BaseDecoder,
    _received_iso,
    gate_socd,
    stamp_provenance,
)
from socd.decoders.cefformat import (
    TRANSPORTS,
    apply_cef,
    apply_fields,
    apply_leef,
    find_cef,
    find_leef,
    parse_cef,
    parse_leef,
)
from socd.decoders.firewall import apply_filterlog, apply_netfilter
from socd.event import VENDOR_SOCD_KEYS, Event, fingerprint_prefix
from socd.patterns import Pattern
from socd.plugins import DecodeFailure, DecodeResult, PluginContext, RawRecord
from socd.severity import BUILTIN_TABLES, LABELS_VI, SeverityTable
from socd.tz import ZoneOrOffset, parse_iso, parse_zone
from socd.zones import SenderZones

# The zone of the SOC's own servers (UTC+07:00, no daylight saving): timestamps that
# carry no zone are read in it unless a collector or sender names another.
DEFAULT_ZONE = "Asia/Ho_Chi_Minh"

FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
SEVERITIES = ("emergency", "alert", "critical", "error", "warning", "notice",
              "informational", "debug")

# Syslog severity code (0 = emergency ... 7 = debug) -> SOC severity, for plain events.
_LABELS = {sev.value: label for sev, label in LABELS_VI.items()}
SYSLOG_TABLE = SeverityTable("syslog", {"0-2": "high", "3": "medium", "4-7": "low"})

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_MONTHS.update({k.upper(): v for k, v in list(_MONTHS.items())})
_MONTHS.update({k.lower(): v for k, v in list(_MONTHS.items())})

_PRI = re.compile(r"<(\d{1,3})>")
_RFC5424 = re.compile(r"1 (\S+) (\S{1,255}) (\S{1,48}) (\S{1,128}) (\S{1,32}) ?")
_BSD_TS = re.compile(
    r"(?:\d{1,10}: )?[*.]?"  # Cisco: sequence number, '*' (unsynchronized) or '.'
    r"(?:(?P<mon>[A-Za-z]{3}) {1,2}(?P<day>\d{1,2})(?: (?P<year>\d{4}))?"
    r" (?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,9}))?"
    r"(?: (?P<tz>UTC|GMT))?"
    r"|(?P<iso>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?))"
    r":? ?")
_TAG = re.compile(r"([^\s:\[\]]{1,64})(?:\[([^\]\s]{0,32})\])?: ?")
# The common RFC 3164 header in one pass: "Jun  1 06:55:46 host prog[123]: ". Its
# classes are subsets of _BSD_TS, _HOST and _TAG, and _rfc3164 refuses the few texts on
# which the three would read it otherwise (a host "UTC..."/"GMT...", a tag "CEF"/"LEEF"),
# so a match gives exactly the fields of the general path; anything else takes that path.
_FAST_HEADER = re.compile(
    r"[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} ([A-Za-z0-9_.-]{1,255}) "
    r"([A-Za-z0-9_./-]{1,64})(?:\[([0-9]{1,9})\])?: ")
_HOST = re.compile(r"([A-Za-z0-9_.:%-]{1,255}) ")
_GARBAGE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_CISCO = re.compile(r"%([A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)?)-(\d)-([A-Za-z0-9_]+): ?")
_FORTI_DATE = re.compile(r"date=(\d{4}-\d{2}-\d{2}) time=(\d{2}:\d{2}:\d{2})")
# key=value pairs of FortiGate lines. A key starts where a run of [A-Za-z0-9_] starts
# (leading digits are skipped, as a scan from each position would): ``findall`` with a
# key allowed to start inside a run was quadratic in the length of a run without "=".
_KV = re.compile(r'(?<![A-Za-z0-9_])[0-9]*+([A-Za-z_][A-Za-z0-9_]*+)=("(?:[^"\\]|\\.)*+"|\S*)')
_SD_PARAM = re.compile(r' ([^\s="\]]{1,32})="((?:[^"\\]|\\.)*)"')
_SD_UNESCAPE = re.compile(r'\\(["\\\]])')
_ISO_FRAC = re.compile(r"\.(\d{7,})")

# sshd / sudo messages.
_SSH_FAILED = re.compile(
    r"Failed (password|publickey|none|keyboard-interactive(?:/pam)?) for (invalid user )?"
    r"(.*?) from (\S+) port (\d+)")
_SSH_ACCEPTED = re.compile(
    r"Accepted (password|publickey|keyboard-interactive(?:/pam)?|gssapi-with-mic) for (\S+) "
    r"from (\S+) port (\d+)")
_SSH_INVALID = re.compile(r"Invalid user (.*?) from (\S+)(?: port (\d+))?\s*$")
_SSH_CLOSED = re.compile(
    r"Connection closed by (?:authenticating|invalid) user (.*?) (\S+) port (\d+)")
# MaxAuthTries reached: the only record of a connection whose attempts sshd does not log
# one by one (keys, keyboard-interactive); after logged passwords it adds one failure.
_SSH_MAX_TRIES = re.compile(
    r"(?:error: )?maximum authentication attempts exceeded for (invalid user )?(.*?) "
    r"from (\S+) port (\d+)")
# rsyslog's folding of identical lines: the previous line came N more times.
_REPEATED = re.compile(r"message repeated (\d{1,9}) times: \[ ?(.*?) ?\]$")
# Copies emitted for a folded failure: enough for every threshold, bounded against a
# forged "message repeated 999999999 times" (the true count stays in socd.vendor).
MAX_REPEATS = 100
# A PAM "authentication failure" line (pam_unix and the modules that copy its format:
# pam_sss, pam_ldap...): "pam_unix(sshd:auth): ...", the pre-2006 Linux-PAM forms
# "(pam_unix) ..." and "pam_unix: ..." (the service is then the program), the legacy
# tag "sshd(pam_unix)[pid]: authentication failure; ..." and pam_unix's summary at the
# end of a session, "PAM 5 more authentication failures; ...".
_PAM_FAILURE = re.compile(
    r"(?:pam_\w{1,32}\((?:(?P<service>[\w.-]{1,64}):)?auth\): |\(pam_unix\) |pam_unix: )?"
    r"(?:PAM (?P<more>\d{1,9}) more )?authentication failures?; (?P<fields>.*)")
# Its fields, in Linux-PAM's fixed order, to the end of the line. user= is last and
# holds whatever name the client sent (spaces included: "x rhost=10.0.0.1" is a valid
# attempt), so it is the rest of the line and rhost is the one before it; a ruser= with
# spaces makes the line ambiguous and it is not parsed: a name typed by an attacker never
# becomes source.ip. Possessive quantifiers: linear on hostile lines.
_PAM_FIELDS = re.compile(
    r"logname=(?P<logname>\S*+) uid=(?P<uid>\S*+) euid=(?P<euid>\S*+) tty=(?P<tty>\S*+) "
    r"ruser=(?P<ruser>\S*+) rhost=(?P<rhost>\S*+)(?: ++user=(?P<user>.*+)| *+)$")
# The legacy (Linux-PAM < 0.99.2, 2005) tag: "sshd(pam_unix)[19939]:".
_LEGACY_PAM_TAG = re.compile(r"(?P<service>[\w.-]{1,32})\((?P<module>pam_\w{1,32})\)")
# A host name in rhost= (the client's reverse DNS when sshd's UseDNS is on): two labels
# at least, a letter in the last one (so a mangled address is never taken for a name).
_DOMAIN = re.compile(r"(?=.{4,253}$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+"
                     r"[a-z0-9-]{0,62}[a-z][a-z0-9-]{0,62}")
# What the gate refused but meant to be an address (counted): hex, dots, colons, a zone id.
_ADDRESS_LIKE = re.compile(r"[0-9A-Fa-f.:]+(?:%\S*)?")
# Run by RE2 (socd.patterns): with a backtracking engine its lazy groups made a line of
# repeated "x ; TTY=a ; PWD=b ; " quadratic. RE2 picks the same groups, in linear time;
# longer lines than _SUDO_MAX are not parsed as sudo (sudo itself splits at ~1 KB).
_SUDO = Pattern(r"\s*(\S+) : (?:(.*?) ; )?TTY=(\S*) ; PWD=(.*?) ; USER=(\S+) ;"
                r"(?: GROUP=\S+ ;)?(?: ENV=.*? ;)? COMMAND=(.*)$", captures=True)
_SUDO_MAX = 64 * 1024
_SSH_PROCS = frozenset({"sshd", "sshd-session", "sshd-auth"})
_OWN_PAYLOADS = frozenset({"sudo", "filterlog"})  # programs _payload reads by name

# _parse_fast's view of the messages _sshd_line reads: the one regex of its elif chain
# (or _pam's) that can match a message, by the message's first character (their literal
# starts differ there: "Failed", "Accepted", "Invalid user", "Connection closed",
# "error: maximum"/"maximum", and PAM's "pam_", "(pam_unix) ", "PAM ", "authentication").
# A message none of them matches is a plain event, as in _sshd_line.
_K_PLAIN, _K_FAILED, _K_ACCEPTED, _K_INVALID, _K_CLOSED, _K_MAX_TRIES, _K_PAM = range(7)
_SSH_BY_FIRST: dict[str, tuple[int, re.Pattern[str]]] = {
    "F": (_K_FAILED, _SSH_FAILED), "A": (_K_ACCEPTED, _SSH_ACCEPTED),
    "I": (_K_INVALID, _SSH_INVALID), "C": (_K_CLOSED, _SSH_CLOSED),
    "e": (_K_MAX_TRIES, _SSH_MAX_TRIES), "m": (_K_MAX_TRIES, _SSH_MAX_TRIES),
    "p": (_K_PAM, _PAM_FAILURE), "(": (_K_PAM, _PAM_FAILURE), "P": (_K_PAM, _PAM_FAILURE),
    "a": (_K_PAM, _PAM_FAILURE),
}  # fmt: skip
# _FAST_HEADER without the hosts _rfc3164 refuses on it ("UTC...", "GMT..."), then the
# message: the rest of the text after the spaces that follow the header (what
# _fast_header's lstrip leaves; DOTALL: a record may hold line ends).
_FAST_SYSLOG = re.compile(_FAST_HEADER.pattern.replace(" (", " (?!UTC|GMT)(", 1) + " *(.*)",
                          re.DOTALL)
# The <PRI> texts _PRI reads as a priority parse() keeps (ASCII digits only: \d reads
# other digits too, which parse() alone handles).
_PRI_CODES = {f"{n:0{width}d}": n for width in (1, 2, 3) for n in range(192)
              if len(str(n)) <= width}
# Facility code and name, severity code and name of each priority.
_PRI_PARTS = tuple((pri >> 3, FACILITIES[pri >> 3], pri & 7, SEVERITIES[pri & 7])
                   for pri in range(192))
# The bytes of _GARBAGE: a UTF-8 text holds one of these characters only where its bytes
# hold the byte.
_GARBAGE_BYTES = bytes([*range(0x09), *range(0x0E, 0x20), 0x7F])

_FORTI_MAP: dict[str, tuple[str, str]] = {
    "srcip": ("source.ip", "ip"), "dstip": ("destination.ip", "ip"),
    "srcport": ("source.port", "port"), "dstport": ("destination.port", "port"),
    "action": ("event.action", "str"), "user": ("user.name", "str"),
    "sentbyte": ("source.bytes", "int"), "rcvdbyte": ("destination.bytes", "int"),
    "hostname": ("url.domain", "str"), "url": ("url.original", "str"),
    "attack": ("rule.name", "str"), "attackid": ("rule.id", "str"),
    "virus": ("rule.name", "str"), "service": ("network.protocol", "lower"),
}  # fmt: skip
_FORTI_ALERT_SUBTYPES = frozenset({"ips", "virus", "anomaly", "botnet"})


_STAMPS_CACHED = 4096
_RAW_HASHER = hashlib.blake2b(digest_size=16)  # empty: copied for each record's digest
_ADDRESS_KEY_MAX = 64  # longest address text SyslogDecoder._addresses keeps
_NO_MINUTE = ("", "")  # _minutes.get's default: not read yet (None: read, no fast path)
_CODE_TEXT = tuple(str(code) for code in range(8))  # socd.vendor_severity of plain events
_PAYLOAD_TAGS = frozenset({"CEF", "LEEF"})  # "host CEF: ..." is a payload, not a tag


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def _refused(data: bytes, exc: Exception) -> DecodeFailure:
    """The failure of a record whose parse raised: its reason, or a parser bug (which
    must not lose the record silently)."""
    if isinstance(exc, _Invalid):
        return DecodeFailure(exc.reason, data, exc.detail)
    return DecodeFailure("invalid_syslog", data,
                         f"parser error: {type(exc).__name__}: {exc}"[:500])


# ``+07:00`` / ``-0330`` / ``UTC`` / an IANA name (``Asia/Ho_Chi_Minh``); ValueError else.
parse_tz = parse_zone


def _repeats(event: Event) -> int:
    """How many events a line stands for: N for an authentication failure rsyslog folded
    into "message repeated N times" (each is one attempt for the brute-force
    thresholds), capped at :data:`MAX_REPEATS`; 1 for everything else."""
    ev = event["event"]
    if ev.get("outcome") != "failure":
        return 1
    vendor = event.get("socd", {}).get("vendor")
    sshd = vendor.get("sshd") if type(vendor) is dict else None
    repeated = sshd.get("repeated") if type(sshd) is dict else None
    return min(repeated, MAX_REPEATS) if type(repeated) is int and repeated > 1 else 1


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _copied(value: Any) -> Any:
    """``copy.deepcopy`` of an event's JSON values (dicts, lists, scalars) at a fraction
    of its cost (the copies of a folded line: 0.6 % of a replay of sshd logs); anything
    else is deep-copied. An event parse() builds holds no container twice, so no
    sharing is lost: each copy is as independent of the others as deepcopy's."""
    kind = type(value)
    if kind is dict:
        return {key: _copied(item) for key, item in value.items()}
    if kind is list:
        return [_copied(item) for item in value]
    if kind in _SCALARS:
        return value
    return copy.deepcopy(value)


def _pam_action(service: str, legacy: bool) -> str:
    """``event.action`` of a PAM failure: one attempt must count once.

    sshd and sudo log their own line for every attempt they refuse ("Failed password
    for ...", "3 incorrect password attempts ; ..."), which the rules count; the PAM
    line logged under their tag is a second record of the same attempt
    (``ssh_pam_failure``, ``sudo_pam_failure``; fail2ban ignores it too). The legacy
    ``sshd(pam_unix)`` line is counted (``ssh_login``): Linux-PAM then logged to the auth
    facility (/var/log/messages) and sshd to authpriv (/var/log/secure), and a stream
    that carries the first is usually all a SOC receives. Other services log their
    failures only through PAM: ``<service>_auth``.
    """
    if service.startswith("sshd"):
        return "ssh_login" if legacy else "ssh_pam_failure"
    if service.startswith("sudo"):
        return "sudo_pam_failure"
    return f"{service}_auth"


def _set_rhost(event: Event, rhost: str) -> bool:
    """PAM's rhost= as ``source.ip`` (through the address gate) or, when it is a host
    name (the client's reverse DNS, sshd's UseDNS), as ``source.domain``.

    A name is never resolved or blocked: its owner chooses what the reverse zone says.
    True when it set ``source.ip``.
    """
    try:
        address = netaddr.canonical_address(rhost, count=False)
    except netaddr.AddressError as exc:
        name = rhost.rstrip(".").lower()
        if _DOMAIN.fullmatch(name):
            event["source"] = {"domain": name}
        elif _ADDRESS_LIKE.fullmatch(rhost):
            netaddr.count_refusal(exc.reason)  # an address the gate refuses (zone id, junk)
        return False
    event["source"] = {"ip": address}
    return True


def parse_structured_data(text: str) -> tuple[dict[str, dict[str, str]] | None, str]:
    """RFC 5424 STRUCTURED-DATA at the start of ``text``: ``(sd, rest)``.

    ``-`` gives ``None``; malformed data raises ``ValueError``.
    """
    if text.startswith("-"):
        return None, text[2:] if text.startswith("- ") else text[1:]
    sd: dict[str, dict[str, str]] = {}
    i = 0
    n = len(text)
    while i < n and text[i] == "[":
        j = i + 1
        while j < n and text[j] not in " ]":
            j += 1
        sd_id = text[i + 1:j]
        if not sd_id or j >= n:
            raise ValueError("unterminated SD-ELEMENT")
        params: dict[str, str] = {}
        while j < n and text[j] == " ":
            m = _SD_PARAM.match(text, j)
            if m is None:
                raise ValueError(f"bad SD-PARAM in [{sd_id[:32]}]")
            value = m.group(2)
            params[m.group(1)] = _SD_UNESCAPE.sub(r"\1", value) if "\\" in value else value
            j = m.end()
        if j >= n or text[j] != "]":
            raise ValueError(f"unterminated SD-ELEMENT [{sd_id[:32]}]")
        sd[sd_id] = params
        i = j + 1
    if not sd:
        raise ValueError("STRUCTURED-DATA is neither '-' nor '[...]'")
    if i < n and text[i] == " ":
        i += 1
    return sd, text[i:]


class SyslogDecoder(BaseDecoder):
    """RFC 3164 / RFC 5424 syslog; CEF, LEEF, FortiGate and sshd/sudo payloads parsed."""

    socd_keys = VENDOR_SOCD_KEYS

    class Config(DecoderConfig):
        type: Literal["syslog"]
        timezone: ZoneOrOffset = Field(
            DEFAULT_ZONE, description="Zone of timestamps written without one (RFC 3164 "
            "has none): an IANA name (`UTC`) or an offset like `+07:00`. A collector's "
            "`timezone` and `sender_timezones` take precedence for its records.")
        parse_payloads: bool = Field(True, description="Parse CEF, LEEF, FortiGate and "
                                     "sshd/sudo messages into fields.")

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self._setup(ctx.name, config.timezone, config.parse_payloads, config.severity_table,
                    config.keep_original, None)

    @classmethod
    def create(cls, name: str, *, timezone: str = DEFAULT_ZONE, parse_payloads: bool = True,
               severity_table: str | None = None, keep_original: bool = False,
               require: str | None = None) -> SyslogDecoder:
        self = cls.__new__(cls)
        self._setup(name, timezone, parse_payloads, severity_table, keep_original, require)
        return self

    def _setup(self, name: str, tz: str, parse_payloads: bool, severity_table: str | None,
               keep_original: bool, require: str | None) -> None:
        BaseDecoder.__init__(self, name, severity_table=None, keep_original=keep_original)
        self.tz = parse_tz(tz)
        # The zone of the record being parsed: the decoder's, or its sender's (assume_zones).
        self._zone = self.tz
        self._zones: dict[str, SenderZones] = {}
        self.parse_payloads = parse_payloads
        self.require = require
        self.table = BUILTIN_TABLES[severity_table] if severity_table else SYSLOG_TABLE
        self.cef_table = BUILTIN_TABLES["cef"]
        self._now_key: tuple[int, tzinfo] | None = None
        self._now: datetime = datetime.now(self.tz)
        self._stamps: dict[str, str | None] = {}  # see _clock_stamp
        self._minutes: dict[str, tuple[str, str] | None] = {}  # see _minute_text
        self._hours: dict[str, tuple[str, str] | None] = {}  # see _hour_text
        self._fingerprint_prefix: tuple[str, hashlib.blake2b] | None = None  # see _finish
        # socd keys gate_socd() keeps without looking at their values (it checks these two).
        self._ungated_keys = self.socd_keys - {"asset_kind", "unit"}
        # The table's severity for each plain syslog severity code (parse's common case).
        self._code_severity = tuple(
            None if sev is None else sev.value for sev in map(self.table.lookup, _CODE_TEXT))
        # _parse_fast reads only lines that give the events of the general path with
        # payload parsing on and no required payload; its socd keys pass the gate as is.
        self._fast = (parse_payloads and require is None
                      and {"vendor_severity", "vendor", "severity"} <= self._ungated_keys)
        # One-entry caches of per-record values that repeat from record to record (a
        # replay or collector batch shares its receive time and its source): the last
        # receive time and its event.created text, the last ingest millisecond and its
        # event.ingested text, the last record source and its log.source address.
        self._created: tuple[float, str] | None = None
        self._ingested: tuple[int, str] = (-1, "")
        self._source: tuple[str, str | None] = ("", None)
        # The receive time _stamps was last checked against (see _parse_fast): reset by
        # _local_now whenever it takes another now (another minute or zone).
        self._stamps_for: float | None = None
        # Canonical text of the addresses sshd lines name (accepted ones only: a refusal
        # is counted on every line); bounded in count and in key length.
        self._addresses: dict[str, str] = {}

    def assume_zones(self, zones: Mapping[str, SenderZones]) -> None:
        """The zones of the collectors that name one (:class:`~socd.plugins.ZoneAware`)."""
        self._zones = dict(zones)

    # -- the decoder protocol ------------------------------------------------------------

    def decode(self, record: RawRecord) -> DecodeResult:
        data = record.data
        zones = self._zones.get(record.collector) if self._zones else None
        if zones is None and self._fast:
            try:
                fast = self._parse_fast(data, record.received)
            except Exception as exc:  # as the general path's: see _refused
                return DecodeResult(failures=[_refused(data, exc)])
            if fast is not None:
                # _finish for _parse_fast's event (decode_lines does the same inline):
                # one copy (no "message repeated"), no event.created yet, socd keys the
                # gate keeps (see _setup). The helpers' one-entry caches are read here
                # (a call each per record), the helpers called on a miss.
                source = record.source
                if source:
                    last = self._source
                    address = last[1] if last[0] == source else self._source_address(source)
                    if address is not None:
                        fast["log"]["source"] = {"address": address}
                ev = fast["event"]
                received = record.received
                created = self._created
                ev["created"] = (created[1] if created is not None and created[0] == received
                                 else self._created_text(received))
                hasher = _RAW_HASHER.copy()  # hashlib.blake2b(data, digest_size=16),
                hasher.update(data)  # without parsing the constructor's arguments
                prefix = self._fingerprint_prefix
                h = (prefix[1] if prefix is not None and prefix[0] == self.name
                     else self._name_hasher()).copy()
                h.update(hasher.digest() + b"\x000\x00")  # index 0
                ev["hash"] = h.hexdigest()
                now = time.time()
                ingested = self._ingested
                ev["ingested"] = (ingested[1] if ingested[0] == int(now * 1000)
                                  else self._ingested_text(now))
                if self.keep_original:
                    ev["original"] = data.decode("utf-8", "replace")
                socd = fast["socd"]
                stamp_provenance(socd, record, self.name)
                severity = socd.get("severity")
                if severity is not None:
                    socd["severity_label"] = _LABELS[severity]
                return DecodeResult([fast], [])
        return self._decode_general(record, zones)

    def decode_lines(self, lines: Sequence[bytes], collector: str,  # noqa: PLR0915 - hot
                     source: str, received: float) -> tuple[list[Event], list[DecodeFailure]]:
        """:meth:`decode` of ``RawRecord(line, self.name, collector, source, received)``
        for each of ``lines``: their events and failures, each in the order of the lines
        (:class:`~socd.plugins.LineDecoder`, used by ``socd replay``).

        The events are decode()'s, byte for byte (hashes included); a line is not made a
        record, its result is not a result object, and what depends only on the call's
        arguments (the source's address, event.created, provenance) is found once, the
        decoder's hot attributes bound to locals. Lines _parse_fast does not read go
        through decode()'s general path one record each.
        """
        name = self.name
        events: list[Event] = []
        failures: list[DecodeFailure] = []
        if not self._fast or (self._zones and collector in self._zones):
            decode = self.decode
            for line in lines:
                result = decode(RawRecord(line, name, collector, source, received))
                events += result.events
                failures += result.failures
            return events, failures
        address = self._source_address(source)
        created = self._created_text(received)
        name_copy = self._name_hasher().copy
        raw_copy = _RAW_HASHER.copy
        keep_original = self.keep_original
        parse_fast = self._parse_fast
        labels = _LABELS
        clock = time.time
        last_ms, ingested = self._ingested
        # now*1000 in [low, high): int(now * 1000) == last_ms without making the int.
        low, high = float(last_ms), float(last_ms + 1)
        append = events.append
        for data in lines:
            try:
                event = parse_fast(data, received)
            except Exception as exc:  # as decode()
                failures.append(_refused(data, exc))
                continue
            if event is None:
                result = self._decode_general(RawRecord(data, name, collector, source,
                                                        received), None)
                events += result.events
                failures += result.failures
                continue
            # decode()'s finishing of a fast event, in its order.
            if address is not None:
                event["log"]["source"] = {"address": address}
            ev = event["event"]
            ev["created"] = created
            hasher = raw_copy()
            hasher.update(data)
            h = name_copy()
            h.update(hasher.digest() + b"\x000\x00")
            ev["hash"] = h.hexdigest()
            now = clock()
            if not low <= now * 1000 < high:  # _ingested_text, its cache in locals
                last_ms, ingested = int(now * 1000), _received_iso(now)
                low, high = float(last_ms), float(last_ms + 1)
            ev["ingested"] = ingested
            if keep_original:
                ev["original"] = data.decode("utf-8", "replace")
            socd = event["socd"]
            # stamp_provenance of an authenticated record.
            socd["collector"] = collector
            socd["decoder"] = name
            if source:
                socd["source"] = source
            severity = socd.get("severity")
            if severity is not None:
                socd["severity_label"] = labels[severity]
            append(event)
        self._ingested = (last_ms, ingested)
        return events, failures

    def _decode_general(self, record: RawRecord, zones: SenderZones | None) -> DecodeResult:
        """decode() of a record _parse_fast does not read (or is not used for)."""
        data = record.data
        try:
            if zones is None:
                event = self.parse(data, record.received)
            else:
                event = self._parse_in_zones(zones, record)
        except Exception as exc:  # a parser bug must not lose the record silently
            return DecodeResult(failures=[_refused(data, exc)])
        address = self._source_address(record.source)
        if address is not None:
            event["log"]["source"] = {"address": address}
        hasher = _RAW_HASHER.copy()
        hasher.update(data)
        digest = hasher.digest()
        ingested = self._ingested_text(time.time())
        copies = _repeats(event) if event["event"].get("outcome") == "failure" else 1
        if copies == 1:
            self._finish(event, record, digest, ingested)
            return DecodeResult(events=[event])
        events = [event] + [_copied(event) for _ in range(copies - 1)]
        for index, each in enumerate(events):
            self._finish(each, record, digest, ingested, index)
        return DecodeResult(events=events)

    def _source_address(self, source: str) -> str | None:
        """The address of a network ``source`` (``udp://``, ``tcp://``, ``tls://``) for
        ``log.source.address``; None for others (a file). The last one is remembered."""
        if not source:
            return None
        last = self._source
        if last[0] == source:
            return last[1]
        scheme, sep, address = source.partition("://")
        found = address if sep and scheme in ("udp", "tcp", "tls") else None
        self._source = (source, found)
        return found

    def _created_text(self, received: float) -> str:
        """event.created: the text of ``received``; the last one is remembered."""
        created = self._created
        if created is None or created[0] != received:
            created = self._created = (received, _received_iso(received))
        return created[1]

    def _ingested_text(self, now: float) -> str:
        """event.ingested: the text of ``now`` (the clock's), looked up once a millisecond."""
        ms = int(now * 1000)
        if self._ingested[0] == ms:
            return self._ingested[1]
        ingested = _received_iso(now)
        self._ingested = (ms, ingested)
        return ingested

    def _name_hasher(self) -> hashlib.blake2b:
        """The fingerprint hasher after the decoder's name (:func:`fingerprint_prefix`)."""
        prefix = self._fingerprint_prefix
        if prefix is None or prefix[0] != self.name:
            prefix = self._fingerprint_prefix = (self.name, fingerprint_prefix(self.name))
        return prefix[1]

    def _finish(self, event: Event, record: RawRecord, digest: bytes, ingested: str,
                index: int = 0) -> None:
        """:meth:`BaseDecoder.finish` for events this parser built itself.

        The parser only ever sets integers it parsed, addresses it validated and
        timestamps it formatted, so ``normalize()``'s generic walk over the typed
        fields (a third of the decode time) is skipped; the unit tests check that
        ``normalize()`` leaves these events unchanged. ``index`` tells apart the copies
        of a folded line (their hashes differ, so no sink takes them for redeliveries).
        The hash is :func:`~socd.event.fingerprint` of (name, digest, index), from a
        copy of the hasher that has already read the name.
        """
        ev = event["event"]
        if "created" not in ev:
            ev["created"] = self._created_text(record.received)
        h = self._name_hasher().copy()
        h.update(digest + (b"\x00%d\x00" % index))
        ev["hash"] = h.hexdigest()
        ev["ingested"] = ingested
        if self.keep_original:
            ev["original"] = record.data.decode("utf-8", "replace")
        socd = event.get("socd")
        if type(socd) is not dict or not socd.keys() <= self._ungated_keys:
            socd = gate_socd(event, self.name, self.socd_keys)  # else the gate keeps all
        stamp_provenance(socd, record, self.name)
        severity = socd.get("severity")
        if severity is not None:
            socd["severity_label"] = _LABELS[severity]

    # -- parsing -------------------------------------------------------------------------

    def _parse_fast(self, data: bytes, received: float) -> Event | None:  # noqa: PLR0915
        """:meth:`parse` of the common line, or None when it is not one this reads
        (parse() then reads it).

        It reads a UTF-8 RFC 3164 line with the fast header (:data:`_FAST_SYSLOG`), a
        stamp that is a date, and a plain message or one of the sshd and PAM messages
        of _sshd_line, for a decoder that parses payloads and requires none, without
        zones by sender. Its event is the one parse() builds, with the same keys in the
        same order (the equivalence runs of issue 17 compare the bytes). Anything else
        (a CEF or LEEF text, "message repeated", sudo, firewall, Cisco or FortiGate
        payloads, a bad date, control characters) returns None before any side effect
        but the caches'.
        """
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
        text = text.rstrip("\r\n\x00 ")
        if text[:1] == "<":
            end = text.find(">", 2, 5)
            pri = _PRI_CODES.get(text[1:end]) if end > 0 else None
            if pri is None:
                return None
            pos = end + 1
        else:
            if len(data.translate(None, _GARBAGE_BYTES)) != len(data):
                return None  # parse() refuses control characters without a <PRI>
            pri = 13  # RFC 3164 4.3.3: a message without PRI is user.notice
            pos = 0
        m = _FAST_SYSLOG.match(text, pos)
        if m is None:
            return None
        host, name, pid, message = m.groups()
        if name in _PAYLOAD_TAGS:
            return None
        if "EF:" in message and ("CEF:" in message or "LEEF:" in message):
            return None  # one scan of the message when it holds neither (the usual case)
        kind = _K_PLAIN
        sm: re.Match[str] | None = None
        if name in _SSH_PROCS:
            entry = _SSH_BY_FIRST.get(message[:1])
            if entry is not None:
                sm = entry[1].match(message)
                if sm is not None:
                    kind = entry[0]
                elif message.startswith("message repeated "):
                    return None
        elif (name in _OWN_PAYLOADS
              or message.find("authentication failure", 0, 160) >= 0
              or ("IN=" in message and " SRC=" in message) or message[:1] == "%"
              or ("date=" in message[:64] and "devname=" in message)):
            return None  # _payload has more to read in it
        stamp = text[pos:pos + 15]
        # _stamps holds the texts of the current now (minute and zone): valid for this
        # receive time when it is the one last checked and no other now was taken since.
        self._zone = self.tz
        ts = None
        if received == self._stamps_for:
            ts = self._stamps.get(stamp)
            if ts is None:
                # _clock_stamp's miss, inline for a minute _minute_text has read
                # (_minutes belongs to the same now as _stamps).
                minute = self._minutes.get(stamp[:12])
                second = stamp[13:15]
                if minute is not None and second < "60":
                    ts = minute[0] + second + minute[1]
                    if len(self._stamps) >= _STAMPS_CACHED:
                        self._stamps.clear()
                    self._stamps[stamp] = ts
        if ts is None:
            ts = self._clock_stamp(stamp, received)
            if ts is None:
                return None  # no date: tagged by the general path
            self._stamps_for = received
        facility, facility_name, severity, severity_name = _PRI_PARTS[pri]
        # Whole literals: a dict built key by key past 5 keys is resized on the way.
        syslog: dict[str, Any]
        process: dict[str, Any]
        if pid is None:
            syslog = {"priority": pri, "facility": {"code": facility, "name": facility_name},
                      "severity": {"code": severity, "name": severity_name},
                      "hostname": host, "appname": name}
            process = {"name": name}
        else:
            syslog = {"priority": pri, "facility": {"code": facility, "name": facility_name},
                      "severity": {"code": severity, "name": severity_name},
                      "hostname": host, "appname": name, "procid": pid}
            process = {"name": name, "pid": int(pid)}
        socd: dict[str, Any] = {"vendor_severity": _CODE_TEXT[severity]}
        # _auth's keys, in its order whichever way it sets them; action and outcome are
        # set below (PAM's _auth sets all of them again, in place).
        ev: dict[str, Any] = (
            {"kind": "event", "dataset": "syslog"} if kind == _K_PLAIN
            else {"kind": "event", "dataset": "system.auth", "category": ["authentication"],
                  "action": "", "outcome": "failure", "module": "system"})
        event: Event = {"event": ev, "log": {"syslog": syslog}, "@timestamp": ts,
                        "host": {"hostname": host, "name": host}, "process": process,
                        "message": message, "socd": socd}
        if pos == 0:
            event["tags"] = ["syslog_no_pri"]
        if sm is not None:
            # _sshd_line's fields (or _pam's), from the match of its regex, in their order.
            if kind == _K_PAM:
                service, more, after = sm.group("service", "more", "fields")
                service = service or name
                fields = _PAM_FIELDS.match(after)
                if fields is None:  # tagged
                    self._pam_failure(event, service, more, after, False)
                else:
                    # _pam_failure's fields, in its order.
                    logname, uid, euid, tty, ruser, rhost, user = fields.groups("")
                    user = user.rstrip()
                    pam: dict[str, Any] = (
                        {"service": service, "logname": logname, "uid": uid, "euid": euid,
                         "tty": tty, "ruser": ruser, "rhost": rhost, "user": user}
                        if more is None
                        else {"service": service, "more_failures": int(more),
                              "logname": logname, "uid": uid, "euid": euid, "tty": tty,
                              "ruser": ruser, "rhost": rhost, "user": user})
                    ev["action"] = _pam_action(service, False)
                    user = user or logname or ruser
                    if user:
                        event["user"] = {"name": user}
                    if rhost:
                        addresses = self._addresses
                        address = addresses.get(rhost)
                        if address is not None:
                            event["source"] = {"ip": address}  # what _set_rhost sets for it
                        elif _set_rhost(event, rhost) and len(rhost) <= _ADDRESS_KEY_MAX:
                            if len(addresses) >= _STAMPS_CACHED:
                                addresses.clear()
                            addresses[rhost] = event["source"]["ip"]
                    socd["vendor"] = {"pam": pam}
            else:
                port: str | None
                if kind == _K_FAILED:
                    method, invalid, user, ip, port = sm.groups()
                    action, outcome = "ssh_login", "failure"
                    socd["vendor"] = {"sshd": {"method": method, "invalid_user": bool(invalid)}}
                elif kind == _K_INVALID:
                    user, ip, port = sm.groups()
                    action, outcome = "ssh_invalid_user", "failure"
                elif kind == _K_ACCEPTED:
                    method, user, ip, port = sm.groups()
                    action, outcome = "ssh_login", "success"
                    socd["vendor"] = {"sshd": {"method": method}}
                elif kind == _K_CLOSED:
                    user, ip, port = sm.groups()
                    action, outcome = "ssh_preauth_closed", "failure"
                else:
                    invalid, user, ip, port = sm.groups()
                    action, outcome = "ssh_max_auth_tries", "failure"
                    socd["vendor"] = {"sshd": {"invalid_user": bool(invalid)}}
                ev["action"] = action  # _auth's fields (the others are in ev already)
                ev["outcome"] = outcome
                if user:
                    event["user"] = {"name": user}
                addresses = self._addresses
                addr = addresses.get(ip)
                if addr is None:
                    addr = netaddr.address_or_none(ip)
                    if addr is not None and len(ip) <= _ADDRESS_KEY_MAX:
                        if len(addresses) >= _STAMPS_CACHED:
                            addresses.clear()
                        addresses[ip] = addr
                if addr is not None:
                    number = int(port) if port and port.isdigit() and port.isascii() else -1
                    event["source"] = ({"ip": addr, "port": number} if 0 <= number <= 65535
                                       else {"ip": addr})
        value = self._code_severity[severity]  # the payload left vendor_severity alone
        if value is not None:
            socd["severity"] = value
        return event

    def _parse_in_zones(self, zones: SenderZones, record: RawRecord) -> Event:
        """Parse with the zone of the record's sender: by its address first; a host
        name listed for another zone means a second parse in that one."""
        zone = zones.for_source(record.source)
        event = self.parse(record.data, record.received, zone)
        if zones.hosts:
            host = event.get("host")
            by_host = zones.for_host(host.get("hostname") if host else None)
            if by_host is not None and by_host != (zone or self.tz):
                event = self.parse(record.data, record.received, by_host)
        return event

    def parse(self, data: bytes, received: float,  # noqa: PLR0915 - hot path
              zone: tzinfo | None = None) -> Event:
        """Parse one message into an event (without the finishing touches); times
        without a zone are read in ``zone`` (default: the decoder's ``timezone``)."""
        self._zone = zone if zone is not None else self.tz
        tags: list[str] | None = None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if not _PRI.match(data.decode("latin-1", "replace")[:5]):
                raise _Invalid("invalid_utf8", str(exc)) from None
            text = data.decode("utf-8", "replace")
            tags = ["invalid_utf8"]
        text = text.rstrip("\r\n\x00 ")
        if text.startswith("\ufeff"):
            text = text[1:]
        if not text or text.isspace():
            raise _Invalid("invalid_syslog", "empty message")

        event: Event
        syslog: dict[str, Any]
        m = _PRI.match(text) if text[0] == "<" else None
        if m is not None and int(m.group(1)) <= 191:
            pri = int(m.group(1))
            pos = m.end()
        else:
            if _GARBAGE.search(text):
                raise _Invalid("invalid_syslog", "no <PRI> header and control characters")
            pri = 13  # RFC 3164 4.3.3: a message without PRI is user.notice
            pos = 0
        facility, severity = pri >> 3, pri & 7
        syslog = {
            "priority": pri,
            "facility": {"code": facility, "name": FACILITIES[facility]},
            "severity": {"code": severity, "name": SEVERITIES[severity]},
        }
        event = {"event": {"kind": "event", "dataset": "syslog"}, "log": {"syslog": syslog}}
        if pos == 0:
            tags = [*(tags or []), "syslog_no_pri"]
        m5 = _RFC5424.match(text, pos) if pos else None
        if m5 is not None:
            message = self._rfc5424(event, syslog, text, m5, received)
        else:
            message = self._rfc3164(event, syslog, text, pos, received)
        event["message"] = message
        socd: dict[str, Any] = {"vendor_severity": _CODE_TEXT[severity]}
        event["socd"] = socd
        if tags:
            event.setdefault("tags", []).extend(tags)
        kind = None
        if self.parse_payloads or self.require:
            kind = self._payload(event, message)
        if "@timestamp" not in event:
            event["@timestamp"] = _received_iso(received)  # no usable time in the message
        if self.require == "cef" and kind != "cef":
            raise _Invalid("invalid_cef", "no CEF:<version>| payload")
        if kind in ("cef", "leef"):
            table = self.cef_table
        elif kind == "fortigate_alert":
            table = BUILTIN_TABLES["vietnamese"]
        else:
            table = self.table
        vendor_severity = socd.get("vendor_severity")
        if table is self.table and vendor_severity is _CODE_TEXT[severity]:
            value = self._code_severity[severity]  # untouched by the payload: looked up once
        else:
            sev = table.lookup(vendor_severity)
            value = None if sev is None else sev.value
        if value is not None:
            socd["severity"] = value
        return event

    def _rfc5424(self, event: Event, syslog: dict[str, Any], text: str, m: re.Match[str],
                 received: float) -> str:
        ts, host, app, procid, msgid = m.groups()
        syslog["version"] = 1
        if ts != "-":
            iso = _ISO_FRAC.sub(lambda f: "." + f.group(1)[:6], ts) if "." in ts else ts
            try:
                event["@timestamp"] = parse_iso(iso, naive=self._zone).isoformat()
            except ValueError:
                self._tag(event, "syslog_bad_timestamp")
        if host != "-":
            event["host"] = {"hostname": host, "name": host}
            syslog["hostname"] = host
        if app != "-":
            event["process"] = {"name": app}
            syslog["appname"] = app
        if procid != "-":
            syslog["procid"] = procid
            if procid.isdigit() and procid.isascii() and len(procid) < 10:
                event.setdefault("process", {})["pid"] = int(procid)
        if msgid != "-":
            syslog["msgid"] = msgid
        rest = text[m.end():]
        try:
            sd, rest = parse_structured_data(rest)
        except ValueError:
            self._tag(event, "syslog_bad_structured_data")
            return rest
        if sd is not None:
            syslog["structured_data"] = sd
        if rest.startswith("\ufeff"):
            rest = rest[1:]
        return rest

    def _rfc3164(self, event: Event, syslog: dict[str, Any], text: str, pos: int,
                 received: float) -> str:
        rest = self._fast_header(event, syslog, text, pos, received)
        if rest is not None:
            return rest
        m = _BSD_TS.match(text, pos)
        if m is not None:
            ts = self._bsd_time(m, received)
            if ts is not None:
                event["@timestamp"] = ts
            else:
                self._tag(event, "syslog_bad_timestamp")
            rest = text[m.end():]
        else:
            rest = text[pos:]
            fd = _FORTI_DATE.search(rest, 0, 64)
            if fd is not None:
                return rest
        if rest.startswith(("CEF:", "LEEF:", "%")):
            return rest
        # A tag holds no whitespace: without a ':' before the first space there is none.
        space = rest.find(" ")
        tag = _TAG.match(rest) if space < 0 or rest.find(":", 0, space) >= 0 else None
        if tag is None and m is not None:
            host = _HOST.match(rest)
            if host is not None and not host.group(1).startswith(("CEF:", "LEEF:")):
                name = host.group(1).rstrip(":")
                event["host"] = {"hostname": name, "name": name}
                syslog["hostname"] = name
                rest = rest[host.end():]
                if rest.startswith(("CEF:", "LEEF:")):
                    return rest
                tag = _TAG.match(rest)
        if tag is not None and m is not None:
            name, pid = tag.groups()
            process: dict[str, Any] = {"name": name}
            syslog["appname"] = name
            if pid:
                syslog["procid"] = pid
                if pid.isdigit() and pid.isascii() and len(pid) < 10:
                    process["pid"] = int(pid)
            event["process"] = process
            rest = rest[tag.end():].lstrip(" ")
        return rest

    def _fast_header(self, event: Event, syslog: dict[str, Any], text: str, pos: int,
                     received: float) -> str | None:
        """The message after a common header (see :data:`_FAST_HEADER`), its fields
        set as the general path sets them, in the same order; None: not that header."""
        fast = _FAST_HEADER.match(text, pos)
        if fast is None:
            return None
        host, name, pid = fast.groups()
        if host.startswith(("UTC", "GMT")) or name in _PAYLOAD_TAGS:
            return None
        ts = self._clock_stamp(text[pos:pos + 15], received)
        if ts is not None:
            event["@timestamp"] = ts
        else:
            self._tag(event, "syslog_bad_timestamp")
        event["host"] = {"hostname": host, "name": host}
        syslog["hostname"] = host
        syslog["appname"] = name
        if pid is None:
            event["process"] = {"name": name}
        else:
            syslog["procid"] = pid
            event["process"] = {"name": name, "pid": int(pid)}
        return text[fast.end():].lstrip(" ")

    def _bsd_time(self, m: re.Match[str], received: float) -> str | None:
        iso = m.group("iso")
        if iso is not None:
            iso = iso.replace("Z", "+00:00")
            if "." in iso:
                iso = _ISO_FRAC.sub(lambda f: "." + f.group(1)[:6], iso)
            if len(iso) > 5 and iso[-5] in "+-" and iso[-3] != ":":
                iso = iso[:-2] + ":" + iso[-2:]
            try:
                return parse_iso(iso, naive=self._zone).isoformat()
            except ValueError:
                return None
        frac = m.group("frac")
        return self._clock(m.group("mon"), int(m.group("day")), int(m.group("h")),
                           int(m.group("m")), int(m.group("s")),
                           int(frac[:6].ljust(6, "0")) if frac else 0,
                           UTC if m.group("tz") else self._zone, m.group("year"), received)

    def _clock(self, month: str, day: int, h: int, mi: int, s: int, us: int, tz: tzinfo,
               year_text: str | None, received: float) -> str | None:
        """An RFC 3164 date and time as RFC 3339 text, None when it is no date."""
        mon = _MONTHS.get(month)
        if mon is None:
            return None
        try:
            if year_text:
                return datetime(int(year_text), mon, day, h, mi, s, us, tz).isoformat()
            now = self._local_now(received)
            stamp = datetime(now.year, mon, day, h, mi, s, us, tz)
            # No year in RFC 3164: the current one, or the previous one when that
            # would put the message more than a day in the future (December logs
            # read in January).
            if stamp - now > timedelta(days=1):
                stamp = stamp.replace(year=now.year - 1)
            return stamp.isoformat()
        except ValueError:
            return None

    def _clock_stamp(self, stamp: str, received: float) -> str | None:
        """:meth:`_clock` of a plain ``Mmm dd hh:mm:ss`` (the fast header), cached.

        Consecutive lines mostly share their second, and the text of a stamp depends
        only on it, the zone and the "now" that picks the year: the cache is emptied
        whenever :meth:`_local_now` takes another now (each minute, or another zone).
        """
        if (int(received) // 60, self._zone) != self._now_key:
            self._local_now(received)
        if stamp in self._stamps:
            return self._stamps[stamp]
        minute = self._minutes.get(stamp[:12], _NO_MINUTE)
        if minute is _NO_MINUTE:
            minute = self._minute_text(stamp, received)
        second = stamp[13:15]
        if minute is not None and second < "60":
            text: str | None = minute[0] + second + minute[1]
        else:
            text = self._clock(stamp[:3], int(stamp[4:6]), int(stamp[7:9]), int(stamp[10:12]),
                               int(second), 0, self._zone, None, received)
        if len(self._stamps) >= _STAMPS_CACHED:
            self._stamps.clear()
        self._stamps[stamp] = text
        return text

    def _minute_text(self, stamp: str, received: float) -> tuple[str, str] | None:
        """The text of every second of ``stamp``'s minute as (before the seconds, after
        them), or None when the seconds must each be read by :meth:`_clock`; cached.

        A miss of the per-second cache cost a ``datetime`` and its ``isoformat`` (1.5 µs;
        40 % of the lines of a busy sshd log start a new second, one in 30 a new minute).
        The text of second ``ss`` is that of second 00 with ``ss`` in place when seconds
        00 and 59 both fall in the current year and read alike around their seconds
        (same date and zone offset). Their offset is then that of the whole minute (a
        zone changes its offset at most once in a minute: tzdata's transitions are
        months apart), so the instants of the minute's seconds grow with them and the
        previous-year rule of :meth:`_clock` (a stamp more than a day ahead of now),
        which leaves both ends in the current year, leaves every second between them
        there too. A minute whose ends differ (a transition at an odd second), that
        the rule moves to the previous year, or that is no date (day 31 of June, hour
        25) is left to :meth:`_clock`, second by second.
        """
        hour = self._hours.get(stamp[:9], _NO_MINUTE)
        if hour is _NO_MINUTE:
            hour = self._hour_text(stamp, received)
        minute: tuple[str, str] | None = None
        if hour is not None and stamp[10:12] < "60":  # two ASCII digits (the fast header)
            minute = (hour[0] + stamp[10:13], hour[1])
        else:
            mon, day, h, mi = stamp[:3], int(stamp[4:6]), int(stamp[7:9]), int(stamp[10:12])
            first = self._clock(mon, day, h, mi, 0, 0, self._zone, None, received)
            last = self._clock(mon, day, h, mi, 59, 0, self._zone, None, received)
            if (first is not None and last is not None and first[17:19] == "00"
                    and last[17:19] == "59" and first[:17] == last[:17]
                    and first[19:] == last[19:] and first[:4] == str(self._now.year)):
                minute = (first[:17], first[19:])
        if len(self._minutes) >= _STAMPS_CACHED:
            self._minutes.clear()
        self._minutes[stamp[:12]] = minute
        return minute

    def _hour_text(self, stamp: str, received: float) -> tuple[str, str] | None:
        """:meth:`_minute_text` one level up: the text of every minute of ``stamp``'s
        hour as (before the minutes, after the seconds), or None when each minute must
        be read on its own; cached.

        A busy log starts a new minute one line in 30 (two ``_clock`` calls, 4 µs), an
        hour 60 times less often. The argument is the minute's: when seconds 00:00 and
        59:59 of the hour fall in the current year and read alike around their minutes
        and seconds (same date, hour and offset), no offset change falls inside the hour
        (changes are months apart), so every minute of it has that offset and, the
        previous-year rule being monotonic in the instant, the current year.
        """
        mon, day, h = stamp[:3], int(stamp[4:6]), int(stamp[7:9])
        first = self._clock(mon, day, h, 0, 0, 0, self._zone, None, received)
        last = self._clock(mon, day, h, 59, 59, 0, self._zone, None, received)
        hour: tuple[str, str] | None = None
        if (first is not None and last is not None and first[14:19] == "00:00"
                and last[14:19] == "59:59" and first[:14] == last[:14]
                and first[19:] == last[19:] and first[:4] == str(self._now.year)):
            hour = (first[:14], first[19:])
        if len(self._hours) >= _STAMPS_CACHED:
            self._hours.clear()
        self._hours[stamp[:9]] = hour
        return hour

    def _local_now(self, received: float) -> datetime:
        key = (int(received) // 60, self._zone)
        if key != self._now_key:
            self._now_key = key
            self._now = datetime.fromtimestamp(received, self._zone)
            self._stamps.clear()  # they were read with the previous now or zone
            self._minutes.clear()
            self._hours.clear()
            self._stamps_for = None
        return self._now

    @staticmethod
    def _tag(event: Event, tag: str) -> None:
        event.setdefault("tags", []).append(tag)

    # -- payloads ------------------------------------------------------------------------

    def _payload(self, event: Event, message: str) -> str | None:
        """Parse a known payload in ``message``; returns its kind or ``None``."""
        idx = find_cef(message) if "CEF:" in message else -1
        if idx >= 0:
            cef = parse_cef(message[idx:])
            if cef is not None:
                apply_cef(event, cef, self._zone)
                return "cef"
        if "LEEF:" in message:
            idx = find_leef(message)
            if idx >= 0:
                leef = parse_leef(message[idx:])
                if leef is not None:
                    apply_leef(event, leef)
                    return "leef"
        process = event.get("process")
        name = process.get("name") if process else None
        if process is not None and name is not None:
            if name in _SSH_PROCS:
                return self._sshd(event, message)
            if name == "sudo":
                return self._sudo(event, message)
            legacy = _LEGACY_PAM_TAG.fullmatch(name) if "(pam_" in name else None
            if legacy is not None:
                # Linux-PAM before 0.99.2 logged under its own tag, "sshd(pam_unix)[pid]":
                # the process is the service (the pid is its own); the tag stays in
                # log.syslog.appname.
                process["name"] = legacy.group("service")
                return self._pam(event, message, legacy=True)
            if message.find("authentication failure", 0, 160) >= 0:
                kind = self._pam(event, message)  # su, login, vsftpd, dovecot, gdm...
                if kind is not None:
                    return kind
            if name == "filterlog":
                return "filterlog" if apply_filterlog(event, message) else None
        if "IN=" in message and " SRC=" in message and apply_netfilter(event, message):
            return "netfilter"
        if message.startswith("%"):
            cm = _CISCO.match(message)
            if cm is not None:
                event["event"]["code"] = f"%{cm.group(1)}-{cm.group(2)}-{cm.group(3)}"
                event["event"]["provider"] = cm.group(1)
                event["event"]["action"] = cm.group(3).lower()
                return "cisco"
        if "date=" in message[:64] and "devname=" in message:
            return self._fortigate(event, message)
        return None

    @staticmethod
    def _auth(event: Event, action: str, outcome: str, user: str | None,
              ip: str | None = None, port: str | None = None) -> None:
        ev = event["event"]
        ev["category"] = ["authentication"]
        ev["action"] = action
        ev["outcome"] = outcome
        ev["module"] = "system"
        ev["dataset"] = "system.auth"
        if user:
            event["user"] = {"name": user}
        addr = netaddr.address_or_none(ip) if ip else None
        if addr is not None:
            source: dict[str, Any] = {"ip": addr}
            if port and port.isdigit() and port.isascii() and int(port) <= 65535:
                source["port"] = int(port)
            event["source"] = source

    def _sshd(self, event: Event, message: str) -> str | None:
        repeated = 1
        if message.startswith("message repeated "):
            rm = _REPEATED.match(message)
            if rm is None:
                return None
            repeated, message = int(rm.group(1)), rm.group(2)
        kind = self._sshd_line(event, message)
        if kind is not None and repeated > 1:
            vendor = event["socd"].setdefault("vendor", {}).setdefault("sshd", {})
            vendor["repeated"] = repeated  # decode() emits the copies (failures only)
        return kind

    def _sshd_line(self, event: Event, message: str) -> str | None:
        if message.startswith("Failed "):
            m = _SSH_FAILED.match(message)
            if m:
                method, invalid, user, ip, port = m.groups()
                self._auth(event, "ssh_login", "failure", user, ip, port)
                event.setdefault("socd", {})["vendor"] = {"sshd": {
                    "method": method, "invalid_user": bool(invalid)}}
                return "sshd"
        elif message.startswith("Accepted "):
            m = _SSH_ACCEPTED.match(message)
            if m:
                method, user, ip, port = m.groups()
                self._auth(event, "ssh_login", "success", user, ip, port)
                event.setdefault("socd", {})["vendor"] = {"sshd": {"method": method}}
                return "sshd"
        elif message.startswith("Invalid user "):
            m = _SSH_INVALID.match(message)
            if m:
                user, ip, port = m.groups()
                self._auth(event, "ssh_invalid_user", "failure", user, ip, port)
                return "sshd"
        elif message.startswith("Connection closed by "):
            m = _SSH_CLOSED.match(message)
            if m:
                user, ip, port = m.groups()
                self._auth(event, "ssh_preauth_closed", "failure", user, ip, port)
                return "sshd"
        elif message.startswith(("error: maximum authentication", "maximum authentication")):
            m = _SSH_MAX_TRIES.match(message)
            if m:
                invalid, user, ip, port = m.groups()
                self._auth(event, "ssh_max_auth_tries", "failure", user, ip, port)
                event.setdefault("socd", {})["vendor"] = {"sshd": {
                    "invalid_user": bool(invalid)}}
                return "sshd"
        elif message.find("authentication failure", 0, 160) >= 0:
            return self._pam(event, message)
        return None

    def _pam(self, event: Event, message: str, *, legacy: bool = False) -> str | None:
        """A PAM "authentication failure" line, of any service, as a failed authentication.

        The service is named in the message (``pam_unix(su:auth)``) or is the program
        (the legacy tag ``sshd(pam_unix)``, the ``(pam_unix)`` and ``pam_unix:`` forms,
        ``PAM 5 more authentication failures``). See :func:`_pam_action` for which of
        these the brute-force rules count.
        """
        m = _PAM_FAILURE.match(message)
        if m is None:
            return None
        process = event.get("process")
        service = m.group("service") or (process.get("name") if process else None) or "pam"
        return self._pam_failure(event, service, m.group("more"), m.group("fields"), legacy)

    def _pam_failure(self, event: Event, service: str, more: str | None, text: str,
                     legacy: bool) -> str:
        """:meth:`_pam` after its match: the service, the count of a summary line and
        the text after "authentication failure; "."""
        pam: dict[str, Any] = {"service": service}
        if more is not None:
            pam["more_failures"] = int(more)
        user = rhost = None
        fields = _PAM_FIELDS.match(text)
        if fields is not None:
            # The groups in _PAM_FIELDS' order; one that took no part is "".
            logname, uid, euid, tty, ruser, rhost_, user_ = fields.groups("")
            user_ = user_.rstrip()
            pam["logname"] = logname
            pam["uid"] = uid
            pam["euid"] = euid
            pam["tty"] = tty
            pam["ruser"] = ruser
            pam["rhost"] = rhost_
            pam["user"] = user_
            user = user_ or logname or ruser or None
            rhost = rhost_ or None
        else:
            self._tag(event, "pam_fields_unparsed")  # not Linux-PAM's layout: no source
        self._auth(event, _pam_action(service, legacy), "failure", user)
        if rhost is not None:
            address = self._addresses.get(rhost)
            if address is not None:
                event["source"] = {"ip": address}  # what _set_rhost sets for it
            elif _set_rhost(event, rhost) and len(rhost) <= _ADDRESS_KEY_MAX:
                if len(self._addresses) >= _STAMPS_CACHED:
                    self._addresses.clear()
                self._addresses[rhost] = event["source"]["ip"]
        event.setdefault("socd", {})["vendor"] = {"pam": pam}
        return "pam"

    def _sudo(self, event: Event, message: str) -> str | None:
        groups = _SUDO.match_groups(message) if len(message) <= _SUDO_MAX else None
        if groups is None:
            return self._pam(event, message)
        user, problem, tty, pwd, target, command = groups
        outcome = "failure" if problem else "success"
        self._auth(event, "sudo", outcome, user)
        event["process"]["command_line"] = command
        sudo: dict[str, Any] = {"tty": tty, "pwd": pwd, "target_user": target}
        if problem:
            sudo["error"] = problem
        event.setdefault("socd", {})["vendor"] = {"sudo": sudo}
        return "sudo"

    def _fortigate(self, event: Event, message: str) -> str | None:
        kv: dict[str, str] = {}
        for key, value in _KV.findall(message):
            if value.startswith('"') and value.endswith('"') and len(value) >= 2:
                value = value[1:-1].replace('\\"', '"')
            kv[key] = value
        if "devname" not in kv:
            return None
        ev = event["event"]
        ev["module"] = "fortinet"
        ev["dataset"] = "fortinet.firewall"
        date, time_ = kv.get("date"), kv.get("time")
        if date and time_:
            tz = self._zone
            zone = kv.get("tz")
            if zone:
                try:
                    tz = parse_tz(zone)
                except Exception:
                    tz = self._zone
            try:
                # The device's zone (tz=) replaces whatever the text says.
                event["@timestamp"] = parse_iso(f"{date}T{time_}", naive=None).replace(
                    tzinfo=tz).isoformat()
            except ValueError:
                self._tag(event, "syslog_bad_timestamp")
        dev = kv["devname"]
        event["host"] = {"hostname": dev, "name": dev}
        event["observer"] = {"hostname": dev, "vendor": "Fortinet", "product": "FortiGate",
                             "type": "firewall"}
        apply_fields(event, _FORTI_MAP, kv)
        proto = kv.get("proto")
        if proto:
            event.setdefault("network", {})["transport"] = TRANSPORTS.get(proto, proto)
        if kv.get("msg"):
            event["message"] = kv["msg"]
        if kv.get("logid"):
            ev["code"] = kv["logid"]
        subtype = kv.get("subtype", "")
        if kv.get("type") == "utm" and subtype in _FORTI_ALERT_SUBTYPES:
            ev["kind"] = "alert"
            level = kv.get("crlevel") or kv.get("severity")
            if level:
                event["socd"]["vendor_severity"] = level
        event["socd"]["vendor"] = {"fortigate": kv}
        return "fortigate" if ev["kind"] != "alert" else "fortigate_alert"
