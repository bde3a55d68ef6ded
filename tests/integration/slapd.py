"""A real OpenLDAP directory (Debian's ``slapd``) in a temporary folder, for sign-in tests.

The directory ``dc=soc,dc=example,dc=vn`` holds people and ``groupOfNames`` groups,
loaded with ``slapadd`` before ``slapd`` starts on free loopback ports: plain LDAP
(StartTLS offered) and LDAPS, with a certificate a test CA made by ``openssl`` signed.
Passwords are stored as ``{SSHA}`` hashes, as a real directory has them. Anonymous
users can read nothing; a bound user can read entries (how group membership is found).
When ``slapd`` or ``openssl`` is missing the fixture fails, naming the Debian package.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
BASE = "dc=soc,dc=example,dc=vn"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
SERVICE_DN = f"uid=svc-socd,{PEOPLE}"
SERVICE_PASSWORD = "svc-password-2026"
ANALYSTS = f"cn=soc-analysts,{GROUPS}"
ADMINS = f"cn=soc-admins,{GROUPS}"

# uid -> (display name, password, groups)
PEOPLE_ENTRIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "lan": ("Nguyễn Thị Lan", "Lan-mật-khẩu-2026", (ANALYSTS,)),
    "minh": ("Trần Văn Minh", "Minh-mật-khẩu-2026", (ADMINS, ANALYSTS)),
    "hoa": ("Lê Thị Hoa", "Hoa-mật-khẩu-2026", ()),
    "svc-socd": ("socd service", SERVICE_PASSWORD, ()),
}


def _ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()  # noqa: S324 - LDAP's {SSHA}
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _ldif() -> str:
    parts = [f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: soc\n"
             "o: SOC\n",
             f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
             f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n"]
    for uid, (display, password, _groups) in PEOPLE_ENTRIES.items():
        parts.append(f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
                     f"cn:: {_b64(display)}\nsn:: {_b64(display.split()[-1])}\n"
                     f"userPassword: {_ssha(password)}\n")
    for group in (ANALYSTS, ADMINS):
        members = [f"uid={uid},{PEOPLE}" for uid, (_d, _p, groups) in PEOPLE_ENTRIES.items()
                   if group in groups]
        cn = group.split(",")[0].split("=")[1]
        parts.append(f"dn: {group}\nobjectClass: groupOfNames\ncn: {cn}\n"
                     + "".join(f"member: {m}\n" for m in members))
    return "\n".join(parts)


def _config(folder: Path, tls: tuple[Path, Path, Path]) -> str:
    ca, cert, key = tls
    return f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {folder}/slapd.pid
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
maxsize 16777216
suffix "{BASE}"
rootdn "cn=admin,{BASE}"
directory {folder}/db
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none
"""


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1: (ca, cert, key)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed for the directory's certificate (Debian: openssl)")
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=socd ldap test CA", "-keyout", "ca.key", "-out", "ca.crt")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                    "extendedKeyUsage=serverAuth\n")
    _openssl(folder, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr")
    _openssl(folder, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt")
    (folder / "server.key").chmod(0o600)
    return folder / "ca.crt", folder / "server.crt", folder / "server.key"


@dataclass(frozen=True)
class Directory:
    """A running slapd: its plain and TLS URLs and the CA of its certificate."""

    url: str
    ldaps_url: str
    ca_file: Path
    folder: Path


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"slapd exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)  # polling for the port to open, not synchronising on time
    pytest.fail(f"slapd did not listen on {port} within 30 s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    for tool in (SLAPD, SLAPADD):
        if not os.path.exists(tool):
            pytest.fail(f"{tool} is missing: install the Debian packages slapd and ldap-utils")
    folder = tmp_path_factory.mktemp("slapd")
    (folder / "db").mkdir()
    tls = make_certificates(folder / "tls")
    conf = folder / "slapd.conf"
    conf.write_text(_config(folder, tls))
    (folder / "data.ldif").write_text(_ldif(), encoding="utf-8")
    subprocess.run([SLAPADD, "-f", str(conf), "-l", str(folder / "data.ldif")], check=True,
                   capture_output=True, timeout=60)
    port, tls_port = free_port(), free_port()
    log = folder / "slapd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([SLAPD, "-f", str(conf), "-d", "0", "-h",
                                 f"ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, proc, log)
        _wait_listening(tls_port, proc, log)
        yield Directory(f"ldap://127.0.0.1:{port}", f"ldaps://127.0.0.1:{tls_port}", tls[0],
                        folder)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
