"""The docs say one thing, and what the code and the shipped files do (issue 14, point 14).

* The blocking drop-in: docs/blocking.md and docs/deployment-systemd.md describe the
  shipped deploy/systemd files (the drop-in only orders socd after the helper's socket;
  the helper unit holds CAP_NET_ADMIN with AF_UNIX/AF_NETLINK, PrivateUsers=no).
* TLS paths: the MQTT collector resolves them against the config folder, as
  docs/sources/mqtt.md says; docs/configuration.md says so too.
* Generated option tables: YAML keys (`continue`, not `continue_`), readable types (no
  "Annotated", no "item(s)"), one description per option.
* docs/decoders.md describes every built-in decoder.
"""

from __future__ import annotations

import re
from pathlib import Path

from socd.config import BUILTIN_DECODERS

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
SYSTEMD = REPO / "deploy" / "systemd"


def directives(path: Path) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file (comments left out), by key."""
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_blocking_drop_in_is_what_the_docs_say() -> None:
    drop_in = directives(SYSTEMD / "socd.service.d" / "blocking.conf")
    # It only orders socd after the helper's socket: no capability, no sandbox change.
    assert drop_in == {"Wants": ["socd-blocker.socket"], "After": ["socd-blocker.socket"]}
    deployment = (DOCS / "deployment-systemd.md").read_text(encoding="utf-8")
    row = next(line for line in deployment.splitlines() if line.startswith("| `blocking.conf`"))
    assert "| none |" in row
    assert "Wants=" in row
    assert "After=socd-blocker.socket" in row
    blocking = (DOCS / "blocking.md").read_text(encoding="utf-8")
    assert "Wants/After the socket only" in blocking
    base = directives(SYSTEMD / "socd.service")
    assert base["CapabilityBoundingSet"] == [""]  # the daemon holds none, blocking or not
    for doc in (blocking, deployment):
        assert "systemctl enable --now socd-blocker.socket" in doc
        assert "helper_socket: /run/socd-blocker.sock" in doc


def test_the_helper_unit_is_what_the_docs_say() -> None:
    helper = directives(SYSTEMD / "socd-blocker.service")
    assert helper["CapabilityBoundingSet"] == ["CAP_NET_ADMIN"]
    assert helper["AmbientCapabilities"] == ["CAP_NET_ADMIN"]
    assert helper["RestrictAddressFamilies"] == ["AF_UNIX AF_NETLINK"]
    assert helper["PrivateUsers"] == ["no"]
    assert helper["PrivateNetwork"] == ["no"]
    assert helper["IPAddressDeny"] == ["any"]
    socket = directives(SYSTEMD / "socd-blocker.socket")
    assert socket["ListenStream"] == ["/run/socd-blocker.sock"]
    assert (socket["SocketGroup"], socket["SocketMode"]) == (["socd"], ["0660"])
    for name in ("blocking.md", "deployment-systemd.md"):
        text = " ".join((DOCS / name).read_text(encoding="utf-8").split())
        assert "`AF_UNIX` and `AF_NETLINK`" in text, name
        assert "`0660 root:socd`" in text, name


def test_mqtt_tls_paths_are_documented_as_resolved() -> None:
    source = (REPO / "socd" / "config" / "tls.py").read_text(encoding="utf-8")
    assert "resolve_path(base, p)" in source  # what the collector does
    mqtt = (DOCS / "sources" / "mqtt.md").read_text(encoding="utf-8")
    assert "ca_file: pki/ca.crt            # relative to the config file's folder" in mqtt
    configuration = (DOCS / "configuration.md").read_text(encoding="utf-8")
    row = next(line for line in configuration.splitlines()
               if line.startswith("| `collectors.<name>.tls` "))
    assert "relative to the config file's folder" in row
    paths = configuration.split("## Relative paths", 1)[1].split("\n## ", 1)[0]
    tls_row = next(line for line in paths.splitlines() if "(`mqtt`" in line)
    assert tls_row.endswith("| the folder of the config file |")
    assert "TLS paths are not resolved" not in configuration


def test_generated_tables_show_yaml_keys_and_readable_types() -> None:
    configuration = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = [line for line in configuration.splitlines() if line.startswith("| `")]
    assert any(row.startswith("| `notifications.routes[].continue` ") for row in rows)
    assert not any("continue_" in row for row in rows)
    for row in rows:
        kind = row.split(" | ")[1]
        assert "Annotated" not in kind, row
        assert "item(s)" not in kind, row
    assert any(" | duration (" in row for row in rows)
    assert any(" | time zone (" in row for row in rows)


def test_every_option_has_one_description() -> None:
    configuration = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for row in (line for line in configuration.splitlines() if line.startswith("| `")):
        text = row.rstrip(" |").split(" | ")[-1]
        sentences = [s.strip().lower() for s in re.split(r"(?<=\.) ", text) if s.strip()]
        assert len(sentences) == len(set(sentences)), row
        firsts = [" ".join(s.split()[:3]) for s in sentences]
        assert len(firsts) == len(set(firsts)), row  # "Verify the server ..." twice


def test_every_builtin_decoder_is_described() -> None:
    decoders = (DOCS / "decoders.md").read_text(encoding="utf-8")
    assert "Described by their authors" not in decoders
    headings = re.findall(r"^## (.+)$", decoders, re.MULTILINE)
    types = {spec["type"] for spec in BUILTIN_DECODERS.values()}
    for decoder in types:
        assert any(f"`{decoder}`" in h for h in headings), decoder
    for name in ("syslog", "cef"):
        section = decoders.split(f"## `{name}`", 1)[1].split("\n## ", 1)[0]
        assert len(section.split()) > 120, name  # a description, not a pointer
