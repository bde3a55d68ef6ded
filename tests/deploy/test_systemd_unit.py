"""The systemd units, the drop-ins and the production config example.

* The unit holds every directive issue 6 asks for (notify + watchdog, config check
  before start and reload, restart limits, directories, stop timeout longer than the
  drain, hardening, no capability at all).
* ``systemd-analyze verify`` accepts it, alone and with each drop-in, with no
  warning. verify checks that every Exec binary exists, and socd is not installed
  here: the test verifies a copy whose /opt/socd/bin/socd is replaced by an
  executable stub in a temporary folder (the only change; ``--root=`` is no help,
  as it would also need a whole systemd tree below the root). Drop-ins are picked
  up from ``socd.service.d/`` next to the copy, as systemd does.
* ``systemd-analyze security --offline=true`` rates the base unit 2.5 or lower;
  the sensor drop-in adds exactly one capability, the blocking drop-in none (issue
  12, finding 15): the firewall is changed by the privileged helper
  socd-blocker.service, which holds CAP_NET_ADMIN and nothing else, rates 2.5 or
  lower too, and listens on socd-blocker.socket (0660 root:socd).
* The template socd@.service of the Kafka scale-out roles (socd@intake, socd@worker2)
  has socd.service's directives line for line but its name, its per-instance
  environment file and state directory and the role, which it takes from the
  instance name (trailing digits removed) and socd's own parser accepts; it verifies
  and rates as the base unit does.
* socd really runs under the restrictions that can break Python silently
  (MemoryDenyWriteExecute, RestrictAddressFamilies), re-created with seccomp (see
  tests/deploy/__init__.py), and logs JSON lines for the journal.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from socd import cli
from socd.block import helper
from socd.block.protocol import DEFAULT_SOCKET
from socd.config import PipelineConfig
from tests.conftest import free_port
from tests.deploy import (
    BLOCKER_SOCKET,
    BLOCKER_UNIT,
    DROPINS,
    SYSTEMD_DIR,
    TEMPLATE_UNIT,
    UNIT,
    analyze_security,
    blocker_copy,
    parse_unit,
    sandboxed,
    tool,
    unit_copy,
    values,
)

SOCD = str(Path(sys.executable).parent / "socd")
MAX_EXPOSURE = 2.5
CAPABILITY_OF = {"sensor.conf": "CAP_NET_RAW"}
# What a drop-in may set: its capability and what makes that capability usable.
DROPIN_KEYS = {"CapabilityBoundingSet", "AmbientCapabilities", "RestrictAddressFamilies",
               "PrivateUsers"}


@pytest.fixture(scope="module")
def unit() -> list[tuple[str, str, str]]:
    return parse_unit(UNIT.read_text())


def one(entries: list[tuple[str, str, str]], key: str, section: str = "Service") -> str:
    found = values(entries, key, section)
    assert len(found) == 1, f"{section}.{key}: expected once, found {found}"
    return found[0]


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "min": 60, "m": 60, "h": 3600}
    for suffix in sorted(units, key=len, reverse=True):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * units[suffix]
    return float(value)


def test_service_lifecycle_directives(unit: list[tuple[str, str, str]]) -> None:
    assert one(unit, "Type") == "notify"
    assert one(unit, "NotifyAccess") == "main"
    assert seconds(one(unit, "WatchdogSec")) >= 20
    assert one(unit, "ExecStartPre") == "/opt/socd/bin/socd check-config -c /etc/socd/socd.yaml"
    assert one(unit, "ExecStart") == "/opt/socd/bin/socd run -c /etc/socd/socd.yaml"
    # Reload: check first, SIGHUP only when the check passed (systemd stops at the
    # first failing ExecReload= line).
    assert values(unit, "ExecReload") == [
        "/opt/socd/bin/socd check-config -c /etc/socd/socd.yaml", "/bin/kill -HUP $MAINPID"]
    assert one(unit, "Restart") == "on-failure"
    assert seconds(one(unit, "RestartSec")) >= 1
    assert seconds(one(unit, "StartLimitIntervalSec", "Unit")) >= 60
    assert 1 <= int(one(unit, "StartLimitBurst", "Unit")) <= 10
    assert one(unit, "User") == "socd"
    assert one(unit, "Group") == "socd"
    assert one(unit, "EnvironmentFile") == "-/etc/socd/socd.env"
    for key in ("StateDirectory", "ConfigurationDirectory", "LogsDirectory"):
        assert one(unit, key) == "socd"
    assert one(unit, "WantedBy", "Install") == "multi-user.target"


def test_stop_timeout_outlasts_the_drain(unit: list[tuple[str, str, str]]) -> None:
    stop = seconds(one(unit, "TimeoutStopSec"))
    default_drain = PipelineConfig().drain_timeout_secs
    example = yaml.safe_load((SYSTEMD_DIR / "socd.yaml").read_text())
    example_drain = example["pipeline"]["drain_timeout_secs"]
    # Room for the sinks' last flush and the store's close after the drain timeout.
    assert stop >= max(default_drain, example_drain) + 30, (stop, default_drain, example_drain)


def test_hardening_directives(unit: list[tuple[str, str, str]]) -> None:
    expected = {
        "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "PrivateDevices": "yes", "PrivateUsers": "yes", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
        "RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }
    for key, value in expected.items():
        assert one(unit, key) == value, key
    assert values(unit, "SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    # No capability anywhere in the base unit.
    assert not [line for line in UNIT.read_text().splitlines()
                if "CAP_" in line and not line.lstrip().startswith("#")]


def test_sysusers_entry() -> None:
    lines = [line.split() for line in (SYSTEMD_DIR / "socd.sysusers").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert len(lines) == 1
    kind, name, uid = lines[0][:3]
    assert (kind, name, uid) == ("u", "socd", "-")
    assert lines[0][-2:] == ["/var/lib/socd", "/usr/sbin/nologin"]


@pytest.fixture
def stub_binary(tmp_path: Path) -> str:
    stub = tmp_path / "bin" / "socd"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return str(stub)


def verify(unit_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("systemd-analyze"), "verify", "--no-pager", unit_file.name],
                          cwd=unit_file.parent, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("dropins", [(), ("sensor.conf",), ("blocking.conf",),
                                     ("sensor.conf", "blocking.conf")],
                         ids=["base", "sensor", "blocking", "both"])
def test_systemd_analyze_verify(tmp_path: Path, stub_binary: str,
                                dropins: tuple[str, ...]) -> None:
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    if "blocking.conf" in dropins:
        blocker_copy(unit_dir, socd_binary=stub_binary)  # the drop-in wants its socket
    result = verify(unit_copy(unit_dir, dropins, socd_binary=stub_binary))
    # verify exits 0 even for unknown keys or bad values; those are warnings on stderr.
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_catches_a_bad_unit(tmp_path: Path, stub_binary: str) -> None:
    """The check above is not vacuous: a typo in a key or value is reported."""
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    unit_file = unit_copy(unit_dir, socd_binary=stub_binary)
    unit_file.write_text(unit_file.read_text().replace("Type=notify", "Type=notfy\nProtectSytem=1"))
    result = verify(unit_file)
    assert "notfy" in result.stderr
    assert "ProtectSytem" in result.stderr


def test_security_exposure_of_the_base_unit(tmp_path: Path) -> None:
    exposure, detail = analyze_security(unit_copy(tmp_path))
    print(f"systemd-analyze security exposure of socd.service: {exposure}")
    assert exposure <= MAX_EXPOSURE
    capabilities = [d for d in detail if str(d["name"]).startswith("CapabilityBoundingSet")]
    assert capabilities
    assert all(d["set"] for d in capabilities), [d["name"] for d in capabilities if not d["set"]]


@pytest.mark.parametrize("dropin", sorted(CAPABILITY_OF))
def test_dropin_adds_exactly_one_capability(tmp_path: Path, dropin: str) -> None:
    entries = parse_unit((DROPINS / dropin).read_text())
    capability = CAPABILITY_OF[dropin]
    assert {k for _, k, _ in entries} <= DROPIN_KEYS
    assert {s for s, _, _ in entries} == {"Service"}
    assert one(entries, "CapabilityBoundingSet") == capability
    assert one(entries, "AmbientCapabilities") == capability
    assert one(entries, "PrivateUsers") == "no"
    # The explanation is part of the file.
    assert capability in (DROPINS / dropin).read_text().split("[Service]")[0]

    base_dir, dropin_dir = tmp_path / "base", tmp_path / "dropin"
    base_dir.mkdir()
    dropin_dir.mkdir()
    base_exposure, base = analyze_security(unit_copy(base_dir))
    exposure, with_dropin = analyze_security(unit_copy(dropin_dir, (dropin,)))
    print(f"exposure with {dropin}: {exposure} (base {base_exposure})")
    assert exposure <= MAX_EXPOSURE
    lost = {str(d["name"]) for d in base if d["set"]} - {
        str(d["name"]) for d in with_dropin if d["set"]}
    lost_capabilities = {name for name in lost if name.startswith("CapabilityBoundingSet")}
    assert len(lost_capabilities) == 1, lost_capabilities
    (lost_capability,) = lost_capabilities
    assert capability.removeprefix("CAP_").split("_")[-1] in lost_capability
    assert lost - lost_capabilities <= {"PrivateUsers=", "RestrictAddressFamilies=~AF_PACKET",
                                        "RestrictAddressFamilies=~AF_NETLINK",
                                        "AmbientCapabilities="}


def test_blocking_dropin_adds_no_capability(tmp_path: Path) -> None:
    """With blocking on, socd.service keeps its empty capability set: the drop-in only
    pulls in and orders after the helper's socket."""
    text = (DROPINS / "blocking.conf").read_text()
    entries = parse_unit(text)
    assert entries == [("Unit", "Wants", "socd-blocker.socket"),
                       ("Unit", "After", "socd-blocker.socket")]
    assert "CAP_" not in text.split("[Unit]")[1]
    assert DEFAULT_SOCKET in text  # the explanation names the sink's helper_socket

    base_dir, dropin_dir = tmp_path / "base", tmp_path / "dropin"
    base_dir.mkdir()
    dropin_dir.mkdir()
    base_exposure, base = analyze_security(unit_copy(base_dir))
    blocker_copy(dropin_dir)
    exposure, with_dropin = analyze_security(unit_copy(dropin_dir, ("blocking.conf",)))
    print(f"exposure with blocking.conf: {exposure} (base {base_exposure})")
    assert exposure == base_exposure
    assert {str(d["name"]) for d in base if d["set"]} == {
        str(d["name"]) for d in with_dropin if d["set"]}


@pytest.fixture(scope="module")
def blocker() -> list[tuple[str, str, str]]:
    return parse_unit(BLOCKER_UNIT.read_text())


def test_blocker_unit_holds_only_net_admin(blocker: list[tuple[str, str, str]]) -> None:
    assert one(blocker, "Type") == "notify"
    assert one(blocker, "Requires", "Unit") == "socd-blocker.socket"
    assert one(blocker, "After", "Unit") == "socd-blocker.socket"
    assert one(blocker, "DynamicUser") == "yes"
    assert not values(blocker, "User")
    assert one(blocker, "CapabilityBoundingSet") == "CAP_NET_ADMIN"
    assert one(blocker, "AmbientCapabilities") == "CAP_NET_ADMIN"
    assert one(blocker, "RestrictAddressFamilies") == "AF_UNIX AF_NETLINK"
    assert one(blocker, "IPAddressDeny") == "any"
    expected = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
        "RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native", "ProtectProc": "invisible", "ProcSubset": "pid",
        # The capability must count for the host's firewall.
        "PrivateUsers": "no", "PrivateNetwork": "no",
    }
    for key, value in expected.items():
        assert one(blocker, key) == value, key
    assert values(blocker, "SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    capabilities = {c for line in BLOCKER_UNIT.read_text().splitlines()
                    if not line.lstrip().startswith("#") for c in re.findall(r"CAP_\w+", line)}
    assert capabilities == {"CAP_NET_ADMIN"}


def test_blocker_command_line_is_the_helpers(blocker: list[tuple[str, str, str]]) -> None:
    """ExecStart= uses options the helper has (a typo would only show at run time)."""
    program, command, *args = one(blocker, "ExecStart").split()
    assert (program, command) == ("/opt/socd/bin/socd", "block-helper")
    parser = argparse.ArgumentParser()
    helper.add_arguments(parser)
    parsed = parser.parse_args(args)
    assert parsed.allow_user == ["socd"]
    assert parsed.allow_group == ["socd"]
    assert (parsed.table, parsed.ipset_name) == ("socd", "socd")
    assert parsed.log_format == "json"


def test_blocker_socket() -> None:
    entries = parse_unit(BLOCKER_SOCKET.read_text())
    assert one(entries, "ListenStream", "Socket") == DEFAULT_SOCKET
    assert one(entries, "SocketUser", "Socket") == "root"
    assert one(entries, "SocketGroup", "Socket") == "socd"
    assert one(entries, "SocketMode", "Socket") == "0660"
    assert one(entries, "WantedBy", "Install") == "sockets.target"


def test_blocker_units_verify(tmp_path: Path, stub_binary: str) -> None:
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    unit = blocker_copy(unit_dir, socd_binary=stub_binary)
    for name in (unit.name, BLOCKER_SOCKET.name):
        result = subprocess.run([tool("systemd-analyze"), "verify", "--no-pager", name],
                                cwd=unit_dir, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout + result.stderr == "", name


def test_security_exposure_of_the_blocker_unit(tmp_path: Path) -> None:
    exposure, detail = analyze_security(blocker_copy(tmp_path))
    print(f"systemd-analyze security exposure of socd-blocker.service: {exposure}")
    assert exposure <= MAX_EXPOSURE
    open_capabilities = {str(d["name"]) for d in detail
                         if str(d["name"]).startswith("CapabilityBoundingSet") and not d["set"]}
    assert open_capabilities == {"CapabilityBoundingSet=~CAP_NET_ADMIN"}


def test_production_config_is_valid(tmp_path: Path) -> None:
    rules_d = tmp_path / "rules.d"
    rules_d.mkdir()
    text = (SYSTEMD_DIR / "socd.yaml").read_text().replace("/etc/socd/rules.d", str(rules_d))
    config = tmp_path / "socd.yaml"
    config.write_text(text)
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path / "state")}
    result = subprocess.run([SOCD, "check-config", "-c", str(config)], env=env,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(text)
    assert document["log"]["format"] == "json"
    assert document["rules"]["paths"] == ["builtin", str(rules_d)]
    assert document["http"]["host"] == "127.0.0.1"
    env_example = (SYSTEMD_DIR / "socd.env").read_text()
    assert all(line.startswith("#") or not line.strip() for line in env_example.splitlines())


def test_sandbox_enforces_the_restrictions() -> None:
    """The seccomp re-creation of the unit's restrictions does refuse W+X memory and
    netlink sockets, and leaves ordinary memory and Internet sockets alone."""
    probe = (
        "import ctypes, mmap, socket\n"
        "try:\n    mmap.mmap(-1, 4096, prot=7)\n    print('wx-allowed')\n"
        "except OSError as e:\n    print('wx-refused', e.errno)\n"
        "try:\n    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)\n    print('nl-allowed')\n"
        "except OSError as e:\n    print('nl-refused', e.errno)\n"
        "socket.socket(socket.AF_INET6).close()\n"
        "print('callback', ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 7)())\n")
    result = subprocess.run(sandboxed([sys.executable, "-c", probe]), capture_output=True,
                            text=True, check=True)
    assert result.stdout.split("\n")[:3] == ["wx-refused 1", "nl-refused 97", "callback 7"]


def test_socd_runs_under_the_unit_restrictions(tmp_path: Path) -> None:
    """check-config and the embedded default `socd run` (sample replay into the
    SQLite store, /metrics) work with MemoryDenyWriteExecute=yes and
    RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6; stderr (the journal) is JSON."""
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path / "state"),
           "SOCD_HTTP_PORT": str(free_port()), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("SOCD_CONFIG", None)
    check = subprocess.run(sandboxed([SOCD, "check-config"]), env=env, capture_output=True,
                           text=True, check=False)
    assert check.returncode == 0, check.stderr

    proc = subprocess.Popen(sandboxed([SOCD, "run"]), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        # The summary is printed once the sample replay is done (at most a few seconds).
        for line in proc.stdout:
            if line.startswith("Metrics:"):
                break
        else:
            pytest.fail(f"socd run ended early: {proc.wait()} {proc.stderr.read()}")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    events = [r["event"] for r in records]
    assert "socd started" in events
    assert "socd stopped" in events
    assert all({"event", "level", "timestamp"} <= r.keys() for r in records)
    assert (tmp_path / "state" / "alerts.db").exists()


# -- socd@.service: the Kafka scale-out roles -------------------------------------------

# What the template sets differently from socd.service: its name and documentation,
# the per-instance environment file and state directory, and the role.
TEMPLATE_OWN = {("Unit", "Description"), ("Unit", "Documentation"),
                ("Service", "EnvironmentFile"), ("Service", "SyslogIdentifier"),
                ("Service", "ExecStart"), ("Service", "StateDirectory")}
ROLE_OF_INSTANCE = {"intake": "intake", "intake2": "intake", "worker": "worker",
                    "worker2": "worker", "worker12": "worker", "all": "all"}


@pytest.fixture(scope="module")
def template() -> list[tuple[str, str, str]]:
    return parse_unit(TEMPLATE_UNIT.read_text())


def test_template_has_the_base_units_directives(unit: list[tuple[str, str, str]],
                                                template: list[tuple[str, str, str]]) -> None:
    """Same hardening, lifecycle and directories as socd.service, in the same order:
    a change to one unit that is not made to the other fails here."""
    def shared(entries: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        return [(s, k, v) for s, k, v in entries if (s, k) not in TEMPLATE_OWN]

    assert shared(template) == shared(unit)
    assert values(template, "EnvironmentFile") == ["-/etc/socd/socd.env",
                                                   "-/etc/socd/socd@%i.env"]
    assert one(template, "StateDirectory") == "socd/%i"
    assert one(template, "SyslogIdentifier") == "socd@%i"
    assert "%i" in one(template, "Description", "Unit")
    assert one(template, "Documentation", "Unit").endswith("/scaling.md")


def systemd_argv(line: str, instance: str) -> list[str]:
    """An Exec line as systemd runs it for socd@<instance>: the specifiers %i and %%
    resolved, the words split (systemd's quoting is the shell's for these lines), then
    $$ turned into $. Any other specifier or variable fails: the unit uses none."""
    def specifier(match: re.Match[str]) -> str:
        replacement = {"%": "%", "i": instance}.get(match.group(1))
        assert replacement is not None, f"unexpected specifier %{match.group(1)} in {line}"
        return replacement

    words = shlex.split(re.sub(r"%(.)", specifier, line))
    for word in words:
        assert "$" not in word.replace("$$", ""), f"unexpected variable in {word!r}"
    return [word.replace("$$", "$") for word in words]


def exec_start_argv(tmp_path: Path, template: list[tuple[str, str, str]],
                    instance: str) -> list[str]:
    """The arguments socd gets from ExecStart= of socd@<instance>, run as systemd would
    with a stand-in socd that prints them."""
    stand_in = tmp_path / "socd"
    stand_in.write_text(f"#!{sys.executable}\nimport json, sys\n"
                        "print(json.dumps(sys.argv[1:]))\n")
    stand_in.chmod(0o755)
    line = one(template, "ExecStart").replace("/opt/socd/bin/socd", str(stand_in))
    result = subprocess.run(systemd_argv(line, instance), capture_output=True, text=True,
                            timeout=30, check=True)
    argv: list[str] = json.loads(result.stdout)
    return argv


@pytest.mark.parametrize("instance", sorted(ROLE_OF_INSTANCE))
def test_template_runs_the_role_of_its_instance_name(
        tmp_path: Path, template: list[tuple[str, str, str]], instance: str) -> None:
    """socd@<instance> passes --role <instance without its trailing digits>, and socd's
    own command-line parser accepts it."""
    argv = exec_start_argv(tmp_path, template, instance)
    assert argv == ["run", "-c", "/etc/socd/socd.yaml", "--role", ROLE_OF_INSTANCE[instance]]
    args = cli._parser("run").parse_args(argv)
    assert (args.command, args.role) == ("run", ROLE_OF_INSTANCE[instance])


def test_template_instance_with_an_unknown_role_is_refused(
        tmp_path: Path, template: list[tuple[str, str, str]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """socd@wroker2 (a typo) does not start as some default role: socd refuses it."""
    argv = exec_start_argv(tmp_path, template, "wroker2")
    assert argv[-2:] == ["--role", "wroker"]
    with pytest.raises(SystemExit) as exit_info:
        cli._parser("run").parse_args(argv)
    assert exit_info.value.code == 2
    assert "invalid choice: 'wroker'" in capsys.readouterr().err


@pytest.mark.parametrize("instance", ["intake", "worker", "worker2"])
def test_template_verifies(tmp_path: Path, stub_binary: str, instance: str) -> None:
    """systemd-analyze verify loads socd@.service from the folder for the instance."""
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    text = TEMPLATE_UNIT.read_text().replace("/opt/socd/bin/socd", stub_binary)
    (unit_dir / TEMPLATE_UNIT.name).write_text(text)
    result = verify(unit_dir / f"socd@{instance}.service")
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_template_verify_is_not_vacuous(tmp_path: Path, stub_binary: str) -> None:
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    text = TEMPLATE_UNIT.read_text().replace("/opt/socd/bin/socd", stub_binary)
    (unit_dir / TEMPLATE_UNIT.name).write_text(text.replace("Type=notify", "Type=notfy"))
    assert "notfy" in verify(unit_dir / "socd@worker.service").stderr


def test_security_exposure_of_the_template(tmp_path: Path) -> None:
    base_dir, template_dir = tmp_path / "base", tmp_path / "template"
    base_dir.mkdir()
    template_dir.mkdir()
    base_exposure, base = analyze_security(unit_copy(base_dir))
    shutil.copy(TEMPLATE_UNIT, template_dir / TEMPLATE_UNIT.name)
    exposure, detail = analyze_security(template_dir / "socd@worker2.service")
    print(f"systemd-analyze security exposure of socd@worker2.service: {exposure}")
    assert exposure == base_exposure <= MAX_EXPOSURE
    assert {str(d["name"]) for d in detail if d["set"]} == {
        str(d["name"]) for d in base if d["set"]}
