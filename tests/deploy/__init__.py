"""Deployment tests: the systemd units, the drop-ins, scripts/install.sh and the .deb.

Shared helpers:

* :func:`parse_unit` reads a unit file into ``(section, key, value)`` triples
  (systemd allows a key more than once, which :mod:`configparser` does not).
* :func:`analyze_security` runs ``systemd-analyze security --offline=true``.
* :data:`SANDBOX` is a small Python program that re-creates, with seccomp, the two
  restrictions of the unit that can break a Python program without systemd
  noticing at start-up: ``MemoryDenyWriteExecute=yes`` (systemd 252 filters mmap
  with PROT_WRITE|PROT_EXEC, mprotect/pkey_mprotect with PROT_EXEC and shmat with
  SHM_EXEC: EPERM) and ``RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6``
  (socket() of any other family: EAFNOSUPPORT). It sets no_new_privs, installs the
  filter and execs its arguments: ``python3 -c SANDBOX [--family N ...] CMD ARGS``.
  The test machine has no systemd as PID 1 (a container), so ``systemd-run -p``
  cannot be used; this is the same kernel mechanism systemd uses.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO / "deploy" / "systemd"
UNIT = SYSTEMD_DIR / "socd.service"
# The template of the Kafka scale-out roles, socd@intake, socd@worker2... (docs/scaling.md).
TEMPLATE_UNIT = SYSTEMD_DIR / "socd@.service"
DROPINS = SYSTEMD_DIR / "socd.service.d"
# The privileged firewall helper and its socket (docs/blocking.md).
BLOCKER_UNIT = SYSTEMD_DIR / "socd-blocker.service"
BLOCKER_SOCKET = SYSTEMD_DIR / "socd-blocker.socket"
SYSTEM_PYTHON = "/usr/bin/python3"

AF_NETLINK, AF_PACKET = 16, 17

SANDBOX = r'''
import ctypes, os, struct, sys
args = sys.argv[1:]
families = [1, 2, 10]  # AF_UNIX AF_INET AF_INET6
while args[:1] == ["--family"]:
    families.append(int(args[1]))
    args = args[2:]
ALLOW, EPERM, EAFNOSUPPORT = 0x7FFF0000, 0x00050001, 0x00050061
LD, JEQ, JSET, RET, AND = 0x20, 0x15, 0x45, 0x06, 0x54
NR_MMAP, NR_MPROTECT, NR_PKEY_MPROTECT, NR_SHMAT, NR_SOCKET = 9, 10, 329, 30, 41
items = [
    (LD, 0, 0, 4), (JEQ, 0, "allow", 0xC000003E),  # x86-64 only
    (LD, 0, 0, 0),
    (JEQ, "mmap", 0, NR_MMAP), (JEQ, "mprot", 0, NR_MPROTECT),
    (JEQ, "mprot", 0, NR_PKEY_MPROTECT), (JEQ, "shmat", 0, NR_SHMAT),
    (JEQ, "sock", 0, NR_SOCKET),
    (RET, 0, 0, ALLOW),
    "mmap", (LD, 0, 0, 32), (AND, 0, 0, 6), (JEQ, "eperm", "allow", 6),
    "mprot", (LD, 0, 0, 32), (JSET, "eperm", "allow", 4),
    "shmat", (LD, 0, 0, 32), (JSET, "eperm", "allow", 0o100000),
    "sock", (LD, 0, 0, 16),
]
items += [(JEQ, "allow", 0, family) for family in families]
items += [(RET, 0, 0, EAFNOSUPPORT), "eperm", (RET, 0, 0, EPERM),
          "allow", (RET, 0, 0, ALLOW)]
labels, pos = {}, 0
for item in items:
    if isinstance(item, str):
        labels[item] = pos
    else:
        pos += 1
code, pos = b"", 0
for item in items:
    if isinstance(item, str):
        continue
    op, jt, jf, k = item
    jt = labels[jt] - pos - 1 if isinstance(jt, str) else jt
    jf = labels[jf] - pos - 1 if isinstance(jf, str) else jf
    code += struct.pack("HBBI", op, jt, jf, k)
    pos += 1
buf = ctypes.create_string_buffer(code)
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
prog = Prog(pos, ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
    raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
    raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")
os.execvp(args[0], args)
'''


def sandboxed(argv: list[str], families: tuple[int, ...] = ()) -> list[str]:
    """``argv`` run under the unit's MemoryDenyWriteExecute and address families."""
    extra: list[str] = []
    for family in families:
        extra += ["--family", str(family)]
    return [SYSTEM_PYTHON, "-c", SANDBOX, *extra, *argv]


def tool(name: str) -> str:
    """The path of a required tool; FAILS (never skips) when it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        pytest.fail(f"{name} is not installed (Debian: see deploy/dev/apt-packages.txt)",
                    pytrace=False)
    return path


def parse_unit(text: str) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` for every assignment, in file order."""
    out: list[tuple[str, str, str]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {raw!r}"
        out.append((section, key.strip(), value.strip()))
    return out


def values(entries: list[tuple[str, str, str]], key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in entries if s == section and k == key]


def unit_copy(directory: Path, dropins: tuple[str, ...] = (),
              socd_binary: str | None = None) -> Path:
    """socd.service (and the named drop-ins) in ``directory``.

    ``socd_binary`` replaces /opt/socd/bin/socd in Exec lines, so that
    ``systemd-analyze verify`` (which checks that every Exec binary exists) can run
    before socd is installed. Nothing else in the unit changes.
    """
    text = UNIT.read_text()
    if socd_binary is not None:
        text = text.replace("/opt/socd/bin/socd", socd_binary)
    unit = directory / "socd.service"
    unit.write_text(text)
    if dropins:
        (directory / "socd.service.d").mkdir()
        for name in dropins:
            shutil.copy(DROPINS / name, directory / "socd.service.d" / name)
    return unit


def blocker_copy(directory: Path, socd_binary: str | None = None) -> Path:
    """socd-blocker.service and its socket in ``directory`` (``socd_binary`` as in
    :func:`unit_copy`); the service's path."""
    text = BLOCKER_UNIT.read_text()
    if socd_binary is not None:
        text = text.replace("/opt/socd/bin/socd", socd_binary)
    unit = directory / BLOCKER_UNIT.name
    unit.write_text(text)
    shutil.copy(BLOCKER_SOCKET, directory / BLOCKER_SOCKET.name)
    return unit


def analyze_security(unit: Path) -> tuple[float, list[dict[str, object]]]:
    """Overall exposure and the per-setting JSON of ``systemd-analyze security``."""
    analyze = tool("systemd-analyze")
    text = subprocess.run([analyze, "security", "--offline=true", "--no-pager", unit.name],
                          cwd=unit.parent, capture_output=True, text=True, check=True).stdout
    match = re.search(rf"Overall exposure level for {re.escape(unit.name)}: ([0-9.]+)", text)
    assert match, text
    detail = subprocess.run([analyze, "security", "--offline=true", "--json=short",
                             "--no-pager", unit.name],
                            cwd=unit.parent, capture_output=True, text=True, check=True).stdout
    return float(match.group(1)), json.loads(detail)
