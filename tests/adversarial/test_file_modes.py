"""Finding 13: state files are private whatever the umask, and secrets never show.

A real socd runs with ``umask 022`` (outside systemd, whose ``UMask=0077`` hid the
problem): every file it and its CLI create under ``state_dir`` — SQLite stores with their
``-wal``/``-shm``, the spool, the notification queue, the dead-letter file, the ndjson
sink output, the audit log and its anchor, the exchange log — must be ``0600``/``0640``
and every folder ``0750``. A store that already exists with a looser mode is tightened
when it is opened (and logged once). Secrets from the config (webhook tokens, notifier
tokens, HMAC secrets, MISP keys) appear neither in ``repr(config)`` nor in the log of a
debug-level run, while still reaching the peers that need them.
"""

from __future__ import annotations

import http.server
import os
import stat
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from socd import config as config_mod
from tests.conftest import free_port
from tests.helpers import SocdProcess, ecs_alert, wait_for

SECRETS = {
    "SOCD_FM_WEBHOOK_TOKEN": "fm-webhook-token-7c1e5d0a9b",
    "SOCD_FM_BEARER": "fm-notifier-bearer-3f9a27c4e1",
    "SOCD_FM_HMAC": "fm-notifier-hmac-secret-b84d",
    "SOCD_FM_HEADER": "fm-notifier-api-header-52e0",
    "SOCD_FM_MISP_KEY": "fm-misp-automation-key-9d13",
    "SOCD_FM_TAXII_PASSWORD": "fm-taxii-password-61aa0f",
}


class Receiver:
    """A loopback HTTP server standing in for a notification endpoint and MISP."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.requests.append((self.command, self.path, dict(self.headers)))
                body = b'{"Event": {"id": "1", "uuid": "5f0c0000-0000-4000-8000-000000000001"}}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_HEAD = _answer

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual interactive umask: files 0644 and folders 0755 unless socd says otherwise."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SOCD_CONFIG", raising=False)
    monkeypatch.setenv("USER", "truc-ban")


def site_config(tmp_path: Path, receiver: Receiver, wh_port: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{receiver.port}"
    return {
        "state_dir": str(tmp_path / "state"),
        "rules": {"paths": []},
        "log": {"format": "json", "level": "debug"},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "collectors": {"hook": {"type": "webhook", "port": wh_port, "sources": {
            "ids": {"token": "${SOCD_FM_WEBHOOK_TOKEN}"}}}},
        "sinks": {
            "store": {"type": "sqlite", "path": "alerts.db", "flush_interval_secs": 0.1},
            "out": {"type": "ndjson", "path": "out/alerts.ndjson", "select": "all",
                    "flush_interval_secs": 0.1, "spool": {"enabled": True}},
        },
        "notifiers": {"hook": {"type": "webhook", "url": f"{base}/notify",
                               "bearer_token": "${SOCD_FM_BEARER}",
                               "hmac_secret": "${SOCD_FM_HMAC}",
                               "headers": {"X-Api-Key": "${SOCD_FM_HEADER}"}}},
        "notifications": {"routes": [{"name": "all", "notifiers": ["hook"],
                                      "grouping": {"group_wait_secs": 0}}]},
        "sharing": {"targets": {
            "ncsc": {"type": "misp", "url": base, "api_key": "${SOCD_FM_MISP_KEY}"},
            "taxii": {"type": "taxii", "url": f"{base}/api/", "collection_id": "c1",
                      "username": "socd", "password": "${SOCD_FM_TAXII_PASSWORD}"}}},
    }


def post(port: int, body: bytes) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/ingest/ids", data=body, method="POST",
                                 headers={"Authorization":
                                          f"Bearer {SECRETS['SOCD_FM_WEBHOOK_TOKEN']}",
                                          "Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return int(resp.status)


def cli(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "socd", *argv, "-c", str(config)],
                          capture_output=True, text=True, timeout=120, check=False)


def modes(root: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return out


@pytest.mark.usefixtures("umask_022", "secrets_env")
def test_state_files_are_private_and_secrets_stay_hidden(tmp_path: Path,
                                                        receiver: Receiver) -> None:
    wh_port = free_port()
    config = site_config(tmp_path, receiver, wh_port)
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    # a store left world-readable by an earlier version (or a careless copy)
    loose = state / "alerts.db"
    loose.touch()
    loose.chmod(0o644)
    socd = SocdProcess(config, tmp_path)
    socd.start()
    try:
        alert = ecs_alert(1, "fm")
        assert post(wh_port, orjson.dumps(alert) + b"\n{broken json\n") == 202
        wait_for(lambda: (state / "out" / "alerts.ndjson").exists()
                 and (state / "dead-letter" / "dead-letter.ndjson").exists()
                 and any(p == "/notify" for _, p, _ in receiver.requests), 60,
                 "the alert stored, the bad line dead-lettered and the notification sent")
    finally:
        assert socd.stop() == 0
    listed = cli(socd.config_path, "alert", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    alert_id = orjson.loads(listed.stdout.splitlines()[0])["event"]["hash"]
    done = cli(socd.config_path, "alert", "ack", alert_id, "--note", "đã xem")
    assert done.returncode == 0, done.stderr
    pushed = cli(socd.config_path, "share", "push", "--target", "ncsc",
                 "--from", "2026-11-01", "--to", "2026-11-30")
    outputs = [socd.log_text(), listed.stderr, done.stdout, done.stderr, pushed.stdout,
               pushed.stderr]

    found = modes(state)
    expected_files = {"alerts.db", "audit.db", "audit.db.anchor", "notify.db",
                      "out/alerts.ndjson", "dead-letter/dead-letter.ndjson", "sharing.db"}
    assert expected_files <= set(found), sorted(found)
    assert any(name.startswith("spool/") for name in found), sorted(found)
    loose_modes = {}
    for name, mode in found.items():
        is_dir = (state / name).is_dir()
        if (is_dir and mode != 0o750) or (not is_dir and mode not in (0o600, 0o640)):
            loose_modes[name] = oct(mode)
    assert loose_modes == {}, loose_modes
    tightened = [e for e in socd.log_events() if e.get("event") == "file mode tightened"]
    assert [e.get("path") for e in tightened].count(str(loose)) == 1, tightened

    # the secrets went where they belong ...
    notify = next(h for _, p, h in receiver.requests if p == "/notify")
    assert notify.get("Authorization") == f"Bearer {SECRETS['SOCD_FM_BEARER']}"
    assert notify.get("X-Api-Key") == SECRETS["SOCD_FM_HEADER"]
    assert any(h.get("Authorization") == SECRETS["SOCD_FM_MISP_KEY"]
               for _, _, h in receiver.requests), receiver.requests
    # ... and nowhere else
    for text in outputs:
        for name, value in SECRETS.items():
            assert value not in text, f"{name} shows in the output"


@pytest.mark.usefixtures("secrets_env")
def test_repr_of_a_loaded_config_shows_no_secret(tmp_path: Path, receiver: Receiver) -> None:
    import yaml

    path = tmp_path / "socd.yaml"
    path.write_text(yaml.safe_dump(site_config(tmp_path, receiver, free_port())))
    loaded = config_mod.load(path)
    texts = [repr(loaded), str(loaded), repr(loaded.document), str(loaded.document)]
    texts += [repr(p) for group in (loaded.collectors, loaded.sinks, loaded.notifiers)
              for p in group.values()]
    for text in texts:
        for name, value in SECRETS.items():
            assert value not in text, f"{name} shows in repr/str of the config"
    checked = cli(path, "check-config")
    for name, value in SECRETS.items():
        assert value not in checked.stdout + checked.stderr, f"{name} shows in check-config"
