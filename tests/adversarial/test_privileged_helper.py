"""Finding 15 (and finding 1's batch rule): firewall writes live in a separate helper.

The helper (``socd block-helper``, :mod:`socd.block.helper`) is the only process
with CAP_NET_ADMIN. It runs here for real, as root, inside a network namespace
created for the test (nft and ipset change that namespace only), and listens on a
Unix socket in a temporary folder. The tests talk to it as the daemon would, and
as an attacker who took over the daemon (or another local user) would: raw JSON
lines written to the socket, bypassing every check of the daemon side.

* a valid sync/add/remove reaches the kernel (``nft list set`` in the namespace);
* a batch holding crafted elements (zone id, newline, ``; flush ruleset``, ``}``,
  mapped or non-canonical forms, bad timeouts, wrong types) applies the good
  elements, refuses and counts each bad one, and leaves the table and every other
  table intact;
* an element the firewall itself rejects (a wrapper around the real nft refuses
  one address; ipset refuses ``0.0.0.0/0``) is refused alone: the rest applies;
* an unknown op, another table or set, another backend or version, broken JSON and
  an oversized request are refused, the connection is closed and the helper lives;
* a peer whose uid is not allowed is refused (socket file mode first, then
  SO_PEERCRED when the file mode would let it through);
* end to end: a real ``socd run`` as the unprivileged user ``nobody`` (no
  capability at all) blocks an address through the helper.

These tests FAIL (never skip) when ``ip``, ``nft``, ``ipset`` or ``setpriv`` is
missing or namespaces cannot be created.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.timeout(240)

PY = sys.executable
SYSTEM_PY = "/usr/bin/python3"
STALE = re.compile(r"^socdh[0-9a-f]{4}$")
TABLE = "socd"


def _need(cmd: str, package: str) -> str:
    path = shutil.which(cmd) or shutil.which(cmd, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        pytest.fail(f"`{cmd}` not found: install the Debian package `{package}`",
                    pytrace=False)
    return path


def sh(*argv: str, check: bool = True, timeout: float = 60,
       input_: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout,
                          input=input_)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def exchange(path: str, data: bytes, timeout: float = 60) -> tuple[dict[str, Any] | None, bool]:
    """Send ``data`` on a new connection; (the response line as JSON, closed after it)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        buf = b""
        closed = False
        try:
            while b"\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    closed = True
                    break
                buf += chunk
            if not closed:
                closed = s.recv(1) == b""
        except ConnectionResetError:
            closed = True
        line = buf.split(b"\n", 1)[0]
        return (json.loads(line) if line else None), closed


def request(path: str, message: dict[str, Any]) -> dict[str, Any]:
    response, closed = exchange(path, json.dumps(message).encode() + b"\n")
    assert response is not None, "the helper answered nothing"
    assert closed, "the helper keeps a connection open after its answer"
    return response


def nft_sync(elements: list[Any], **extra: Any) -> dict[str, Any]:
    return {"v": 1, "op": "sync", "backend": "nftables", "table": TABLE, "priority": -10,
            "direction": "both", "add": elements, **extra}


def nft_apply(add: list[Any] | None = None, remove: list[Any] | None = None
              ) -> dict[str, Any]:
    return {"v": 1, "op": "apply", "backend": "nftables", "table": TABLE,
            "add": add or [], "remove": remove or []}


def el(value: Any, timeout: Any = 3600) -> dict[str, Any]:
    return {"value": value, "timeout_secs": timeout}


class Helper:
    """socd block-helper running as root in its own network namespace."""

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.ns = f"socdh{secrets.token_hex(2)}"
        self.workdir = workdir
        self.socket = str(workdir / "blocker.sock")
        self.log = workdir / f"helper-{self.ns}.log"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Helper:
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, PY, "-m", "socd", "block-helper",
                 "--socket", self.socket, "--log-format", "json", *self.extra],
                stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._ready, 30, "the helper's socket")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the helper exited with {self.proc.returncode}:\n"
                                 f"{self.log.read_text(errors='replace')}")
        if not os.path.exists(self.socket):
            return False
        try:
            exchange(self.socket, b"", timeout=5)
        except OSError:
            return False
        return True

    def alive(self) -> bool:
        assert self.proc is not None
        return self.proc.poll() is None

    def nft(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns, "nft", *argv, check=check)

    def set4(self) -> str:
        return self.nft("list", "set", "inet", TABLE, "blocked4").stdout

    def set6(self) -> str:
        return self.nft("list", "set", "inet", TABLE, "blocked6").stdout

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        sh("ip", "netns", "delete", self.ns, check=False)


def _delete_stale() -> None:
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if STALE.match(name):
            sh("ip", "netns", "delete", name, check=False)


@pytest.fixture
def tools() -> None:
    for cmd, package in (("ip", "iproute2"), ("nft", "nftables"), ("ipset", "ipset"),
                         ("setpriv", "util-linux")):
        _need(cmd, package)
    assert os.geteuid() == 0, "network namespaces and a privileged helper need root"
    _delete_stale()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A folder every user may traverse (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="socd-helper-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def helper(tools: None, workdir: Path) -> Iterator[Helper]:
    h = Helper(workdir, "--max-request-bytes", "65536")
    try:
        yield h.start()
    finally:
        h.close()


def test_valid_requests_reach_the_kernel(helper: Helper) -> None:
    assert stat.S_IMODE(os.stat(helper.socket).st_mode) == 0o660
    done = request(helper.socket, nft_sync([el("198.51.100.7"), el("2001:db8:1::/48", 90)]))
    assert done == {"v": 1, "ok": True, "applied": 2, "refused": [], "refused_count": 0}
    table = helper.nft("list", "table", "inet", TABLE).stdout
    assert "hook input priority filter - 10" in table
    assert "ip daddr @blocked4 counter" in table
    assert "198.51.100.7" in helper.set4()
    assert "2001:db8:1::/48" in helper.set6()

    done = request(helper.socket, nft_apply(add=[el("198.51.100.8", 60)],
                                            remove=["198.51.100.7"]))
    assert done["ok"], done
    assert done["applied"] == 2
    elements = helper.set4()
    assert "198.51.100.8" in elements
    assert "198.51.100.7" not in elements

    check = request(helper.socket, {"v": 1, "op": "check", "backend": "nftables",
                                    "table": TABLE})
    assert check["ok"], check


CRAFTED: list[tuple[Any, str]] = [
    (el("2001:db8:bad::99%x"), "scope_id"),
    (el("2001:db8:bad::98%eth0 port 4022"), "scope_id"),
    (el("198.51.100.20\n; flush ruleset"), "bad_character"),
    (el("198.51.100.21 timeout 1s }; flush ruleset; add table inet evil {"), "bad_character"),
    (el("}"), "bad_character"),
    (el("198.51.100.22, 0.0.0.0/0"), "bad_character"),
    (el("example.com"), "bad_character"),
    (el(""), "empty"),
    (el("1" * 200), "too_long"),
    (el("::ffff:198.51.100.23"), "not_canonical"),
    (el("2001:DB8::1"), "not_canonical"),
    (el("198.51.100.24/32"), "not_canonical"),
    (el("198.51.100.0/16"), "host_bits"),
    (el("1.2.3"), "syntax"),
    (el("198.51.100.25", "3600; flush ruleset"), "bad_timeout"),
    (el("198.51.100.26", 10**12), "bad_timeout"),
    (el("198.51.100.27", 0), "bad_timeout"),
    (el("198.51.100.28", True), "bad_timeout"),
    ({"value": "198.51.100.29", "timeout_secs": 60, "comment": "x"}, "malformed"),
    ({"value": "198.51.100.30"}, "malformed"),
    ("198.51.100.31", "malformed"),
    (12345, "malformed"),
    (None, "malformed"),
    ([["198.51.100.32"]], "malformed"),
    (el(["198.51.100.33"]), "malformed"),
]
GOOD4 = ["198.51.100.40", "198.51.100.41", "198.51.100.64/27"]
GOOD6 = ["2001:db8:2::1", "2001:db8:3::/64"]


def _check_crafted(helper: Helper, done: dict[str, Any]) -> None:
    assert done["ok"], done
    assert done["applied"] == len(GOOD4) + len(GOOD6)
    assert done["refused_count"] == len(CRAFTED)
    got = [(r["value"], r["reason"]) for r in done["refused"]]
    # A refused value is reported as sent (shortened); a malformed item as its JSON.
    shown = [(e["value"] if reason != "malformed" else None, reason) for e, reason in CRAFTED]
    assert [r for _, r in got] == [r for _, r in shown]
    for (value, _), (expected, _) in zip(got, shown, strict=True):
        if expected is not None:
            assert value == expected[:80]
    set4, set6 = helper.set4(), helper.set6()
    for value in GOOD4:
        assert value in set4
    for value in GOOD6:
        assert value in set6
    # Nothing of the crafted text reached nft: the table and its neighbours are intact.
    ruleset = helper.nft("list", "ruleset").stdout
    assert "table inet sentinel" in ruleset
    assert "evil" not in ruleset
    assert "0.0.0.0/0" not in ruleset
    assert "198.51.100.2" not in set4  # none of .20 - .29
    assert "hook input priority filter - 10" in ruleset
    assert helper.alive()


def test_crafted_elements_are_refused_one_by_one(helper: Helper) -> None:
    helper.nft("add", "table", "inet", "sentinel")
    bad = [e for e, _ in CRAFTED]
    good = [el(v) for v in GOOD4 + GOOD6]
    # A full sync with the crafted elements mixed in...
    _check_crafted(helper, request(helper.socket, nft_sync(good[:2] + bad + good[2:])))
    # ... and an incremental add with them.
    request(helper.socket, nft_sync([]))
    _check_crafted(helper, request(helper.socket, nft_apply(add=bad + good)))
    # Removals are screened the same way.
    done = request(helper.socket, nft_apply(remove=["198.51.100.40", "}; flush ruleset",
                                                    "2001:db8:bad::99%x"]))
    assert done["ok"], done
    assert (done["applied"], done["refused_count"]) == (1, 2)
    assert "198.51.100.40" not in helper.set4()
    assert "table inet sentinel" in helper.nft("list", "ruleset").stdout


def test_overlapping_elements_in_a_sync_are_refused_alone(helper: Helper) -> None:
    done = request(helper.socket, nft_sync([el("198.51.100.0/24"), el("198.51.100.7"),
                                            el("198.51.101.7"), el("198.51.101.7")]))
    assert done["ok"], done
    assert done["applied"] == 2
    assert [r["reason"] for r in done["refused"]] == ["overlap", "overlap"]
    assert "198.51.100.0/24" in helper.set4()
    assert "198.51.101.7" in helper.set4()


PROTOCOL_VIOLATIONS: list[tuple[str, bytes]] = [
    ("not json", b"add 198.51.100.7; flush ruleset\n"),
    ("json array", b"[1, 2, 3]\n"),
    ("unknown op", json.dumps({**nft_sync([]), "op": "flush ruleset"}).encode() + b"\n"),
    ("op delete table", json.dumps({**nft_sync([]), "op": "delete"}).encode() + b"\n"),
    ("another table", json.dumps({**nft_sync([]), "table": "filter"}).encode() + b"\n"),
    ("table with text", json.dumps({**nft_sync([]), "table": "socd; flush ruleset"}
                                   ).encode() + b"\n"),
    ("another backend", json.dumps({**nft_sync([]), "backend": "iptables"}).encode() + b"\n"),
    ("another version", json.dumps({**nft_sync([]), "v": 2}).encode() + b"\n"),
    ("unknown key", json.dumps({**nft_sync([]), "script": "flush ruleset"}).encode() + b"\n"),
    ("priority as text", json.dumps({**nft_sync([]), "priority": "-10; flush ruleset"}
                                    ).encode() + b"\n"),
    ("priority out of range", json.dumps({**nft_sync([]), "priority": 10**6}).encode() + b"\n"),
    ("bad direction", json.dumps({**nft_sync([]), "direction": "all"}).encode() + b"\n"),
    ("remove in a sync", json.dumps({**nft_sync([]), "remove": ["198.51.100.7"]}
                                    ).encode() + b"\n"),
    ("add is not a list", json.dumps({**nft_sync([]), "add": "198.51.100.7"}).encode() + b"\n"),
    ("ipset name", json.dumps({"v": 1, "op": "sync", "backend": "ipset",
                               "set_name": "other", "add": []}).encode() + b"\n"),
    ("deep nesting", b"[" * 30_000 + b"]" * 30_000 + b"\n"),
    ("oversized", b'{"v": 1, "op": "sync", "add": [' + b'"1.2.3.4", ' * 10_000 + b"]}\n"),
    ("oversized without newline", b"x" * 200_000),
    ("invalid utf-8", b'{"v": 1, "op": "\xff\xfe"}\n'),
]


@pytest.mark.parametrize(("name", "data"), PROTOCOL_VIOLATIONS,
                         ids=[n for n, _ in PROTOCOL_VIOLATIONS])
def test_protocol_violations_are_refused_and_the_helper_lives(helper: Helper, name: str,
                                                              data: bytes) -> None:
    response, closed = exchange(helper.socket, data)
    assert response is not None, name
    assert response["ok"] is False
    assert response["kind"] == "protocol", response
    assert closed, f"{name}: the connection stays open"
    assert helper.alive()
    assert "filter" not in helper.nft("list", "tables").stdout
    # The next well-formed request is served.
    done = request(helper.socket, nft_sync([el("198.51.100.7")]))
    assert done["ok"], done
    assert "198.51.100.7" in helper.set4()


def test_a_silent_client_cannot_hold_the_helper(tools: None, workdir: Path) -> None:
    h = Helper(workdir, "--read-timeout-secs", "1")
    try:
        h.start()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
            idle.settimeout(10)
            idle.connect(h.socket)
            idle.sendall(b'{"v": 1, ')
            started = time.monotonic()
            data = idle.recv(65536)
            assert time.monotonic() - started < 8
            assert b'"kind": "protocol"' in data or b'"kind":"protocol"' in data, data
            # Meanwhile other clients were served.
        assert request(h.socket, nft_sync([el("198.51.100.7")]))["ok"]
    finally:
        h.close()


CLIENT = textwrap.dedent("""
    import json, socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    try:
        s.connect(sys.argv[1])
    except PermissionError:
        print("EACCES")
        sys.exit(0)
    try:
        s.sendall(sys.argv[2].encode() + b"\\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused before the request was read: the answer is waiting
    print(s.recv(65536).decode().strip())
""")


def _as_nobody(*argv: str) -> str:
    return sh("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
              "--bounding-set=-all", "--inh-caps=-all", *argv).stdout.strip()


def test_a_peer_with_another_uid_is_refused(helper: Helper) -> None:
    message = json.dumps(nft_sync([el("198.51.100.9")]))
    # The socket file (0660, root's group) keeps other users out...
    assert _as_nobody(SYSTEM_PY, "-c", CLIENT, helper.socket, message) == "EACCES"
    # ... and when an operator's mistake opens it, the peer credentials still do.
    os.chmod(helper.socket, 0o666)
    answer = json.loads(_as_nobody(SYSTEM_PY, "-c", CLIENT, helper.socket, message))
    assert answer["ok"] is False
    assert answer["kind"] == "denied", answer
    helper.nft("list", "tables")
    assert "198.51.100.9" not in helper.nft("list", "ruleset").stdout
    assert helper.alive()
    assert "peer refused" in helper.log.read_text()


NFT_WRAPPER = """#!/bin/sh
# nft, except that it rejects any batch holding 198.51.100.66 (as nft rejects junk).
input=$(cat)
case "$input" in
*198.51.100.66*)
    echo "/dev/stdin:1:40-52: Error: syntax error, unexpected junk" >&2
    exit 1 ;;
esac
printf '%s\\n' "$input" | exec {nft} "$@"
"""


def test_an_element_the_firewall_rejects_fails_alone(tools: None, workdir: Path) -> None:
    wrapper = workdir / "nft-wrapper"
    wrapper.write_text(NFT_WRAPPER.replace("{nft}", _need("nft", "nftables")))
    wrapper.chmod(0o755)
    h = Helper(workdir, "--nft", str(wrapper))
    try:
        h.start()
        good = [f"198.51.100.{i}" for i in range(60, 80) if i != 66]
        elements = [el(v) for v in good[:6]] + [el("198.51.100.66")] + [el(v) for v in good[6:]]
        done = request(h.socket, nft_sync(elements))
        assert done["ok"], done
        assert done["applied"] == len(good)
        assert done["refused"] == [{"value": "198.51.100.66", "reason": "firewall"}]
        set4 = h.set4()
        assert all(v in set4 for v in good)
        assert "198.51.100.66" not in set4
        # The same for an incremental add.
        done = request(h.socket, nft_apply(add=[el("198.51.100.90"), el("198.51.100.66"),
                                                el("198.51.100.91")]))
        assert (done["applied"], done["refused_count"]) == (2, 1), done
        assert "198.51.100.91" in h.set4()
    finally:
        h.close()


def test_ipset_batches_survive_a_rejected_element(tools: None, workdir: Path) -> None:
    h = Helper(workdir, "--ipset-name", "socdt")
    try:
        h.start()
        probe = sh("ip", "netns", "exec", h.ns, "ipset", "create", "socdprobe", "hash:net",
                   "family", "inet", "timeout", "60", check=False)
        if probe.returncode != 0:
            pytest.fail(f"`ipset create` does not work in this kernel ({probe.stderr.strip()})",
                        pytrace=False)
        sync = {"v": 1, "op": "sync", "backend": "ipset", "set_name": "socdt",
                "add": [el("198.51.100.7"), el("0.0.0.0/0"), el("2001:db8::5%x"),
                        el("198.51.100.8\nflush"), el("2001:db8::/32"), el("198.51.100.9")]}
        done = request(h.socket, sync)
        assert done["ok"], done
        assert done["applied"] == 3
        assert [(r["value"], r["reason"]) for r in done["refused"]] == [
            ("2001:db8::5%x", "scope_id"), ("198.51.100.8\nflush", "bad_character"),
            ("0.0.0.0/0", "firewall")]
        listing = sh("ip", "netns", "exec", h.ns, "ipset", "list").stdout
        assert "198.51.100.7 timeout" in listing
        assert "198.51.100.9 timeout" in listing
        assert "2001:db8::/32 timeout" in listing
        assert "socdprobe" in listing  # another set: untouched
        done = request(h.socket, {"v": 1, "op": "apply", "backend": "ipset",
                                  "set_name": "socdt", "add": [el("198.51.100.10", 60)],
                                  "remove": ["198.51.100.7"]})
        assert (done["ok"], done["applied"]) == (True, 2), done
        listing = sh("ip", "netns", "exec", h.ns, "ipset", "list", "socdt4").stdout
        assert "198.51.100.10 timeout" in listing
        assert "198.51.100.7 " not in listing
    finally:
        h.close()


RULES = """
rules:
  - id: adv-helper-block
    title: {vi: "Chặn thử qua tiến trình chặn", en: "Block through the helper"}
    severity: high
    actions:
      - block: {field: source.ip, ttl: 1h}
    match: {field: event.dataset, equals: adv.helper}
"""
TOKEN = "adv-helper-webhook-token-0123456789"


def _capabilities(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v, 16) for k, v in re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", status, re.M)}


def test_unprivileged_socd_blocks_through_the_helper(tools: None, workdir: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    h = Helper(workdir, "--socket-group", "nogroup", "--allow-user", "nobody")
    state = workdir / "state"
    state.mkdir()
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    (workdir / "rules").mkdir()
    (workdir / "rules" / "helper.yaml").write_text(RULES)
    wh_port, http_port = free_port(), free_port()
    config = {
        "state_dir": str(state),
        "log": {"format": "json"},
        "http": {"host": "127.0.0.1", "port": http_port},
        "rules": {"paths": [str(workdir / "rules")]},
        "collectors": {"hook": {"type": "webhook", "host": "127.0.0.1", "port": wh_port,
                                "sources": {"edr": {"token": "${SOCD_ADV_TOKEN}"}}}},
        "sinks": {"block": {"type": "blocker", "select": "alerts", "backend": "nftables",
                            "table": TABLE, "helper_socket": h.socket,
                            "expiry_interval_secs": 0.5}},
    }
    (workdir / "socd.yaml").write_text(yaml.safe_dump(config))
    log_path = workdir / "socd.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        h.start()
        assert stat.S_IMODE(os.stat(h.socket).st_mode) == 0o660
        env = {**os.environ, "SOCD_ADV_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1",
               "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(state)}
        env.pop("NOTIFY_SOCKET", None)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                 "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs",
                 PY, "-m", "socd", "run", "-c", str(workdir / "socd.yaml")],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)

        def ready() -> bool:
            assert proc is not None
            if proc.poll() is not None:
                raise AssertionError(f"socd exited:\n{log_path.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz",
                                            timeout=5) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_for(ready, 60, "socd /readyz")
        caps = _capabilities(proc.pid)
        assert all(caps[k] == 0 for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")), caps
        # The start-up sync went through the helper: the table exists in the namespace.
        assert "hook input" in h.nft("list", "table", "inet", TABLE).stdout

        event = {"@timestamp": "2026-11-16T01:00:00Z",
                 "event": {"kind": "event", "dataset": "adv.helper", "id": "adv-1"},
                 "source": {"ip": "203.0.113.77"}, "message": "probe"}
        req = urllib.request.Request(
            f"http://127.0.0.1:{wh_port}/ingest/edr", data=json.dumps(event).encode(),
            method="POST", headers={"Authorization": f"Bearer {TOKEN}",
                                    "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 202
        wait_for(lambda: "203.0.113.77" in h.set4(), 30, "the block in the namespace's set")
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        h.close()
    assert proc is not None
    assert proc.returncode == 0, log_path.read_text(errors="replace")[-4000:]
    events = [json.loads(line)["event"] for line in log_path.read_text().splitlines()
              if line.startswith("{")]
    assert "blocker started" in events
