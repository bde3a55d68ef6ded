"""`socd share push` to a MISP target: an aiohttp receiver run by the test (there is no MISP
server here) that speaks MISP's REST API ``POST /events/add`` over HTTPS (a CA made with
openssl), checks the ``Authorization`` key and the event's shape, and answers like MISP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from socd.cli import main
from socd.sharing import records
from tests.conftest import free_port
from tests.unit.test_sharing_seed import DOMAIN, INCIDENT, IP_SRC, REF_1, SHA256, seed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

API_KEY = "Zq4bX9vK2mR7tL0pW3sY8nC5hJ1dF6gA0eB2iU9o"


def make_cert(d: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("`openssl` not found (deploy/dev/apt-packages.txt)", pytrace=False)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=socd-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext")


class MispReceiver:
    """Accepts events with the right key; keeps what it received."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    async def add(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if request.headers.get("Authorization") != API_KEY:
            return web.json_response({"name": "Authentication failed. Please make sure you "
                                      "pass the API key of an API enabled user along in the "
                                      "Authorization header.", "message": "Authentication "
                                      "failed.", "url": "/events/add"}, status=403)
        if (request.headers.get("Accept") != "application/json"
                or request.content_type != "application/json"):
            return web.json_response({"message": "json only"}, status=415)
        body = await request.json()
        self.received.append(body)
        event = dict(body["Event"])
        event["id"] = str(41 + len(self.received))
        return web.json_response({"Event": event})


@contextlib.contextmanager
def receiver(tmp_path: Path) -> Iterator[tuple[str, MispReceiver]]:
    make_cert(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    misp = MispReceiver()
    app = web.Application()
    app.router.add_post("/events/add", misp.add)
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30), "the MISP receiver did not start"
    try:
        yield f"https://localhost:{port}", misp
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def sharing_yaml(url: str) -> str:
    return f"""sharing:
  organisation: {{name: "SOC tỉnh Bến Tre"}}
  tlp: amber
  misp: {{distribution: 1, analysis: 2}}
  targets:
    misp-ncsc:
      type: misp
      url: "{url}"
      api_key: "${{SOCD_TEST_MISP_KEY}}"
      ca_file: ca.pem
      distribution: 4
      sharing_group_id: 7
      recipient: "MISP cộng đồng ứng cứu sự cố"
"""


def test_push_event_to_misp_receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SOCD_CONFIG", raising=False)
    with receiver(tmp_path) as (url, misp):
        seeded = seed(tmp_path, sharing_yaml(url))
        cfg = str(seeded.config)
        monkeypatch.setenv("SOCD_TEST_MISP_KEY", API_KEY)
        code = main(["share", "push", "-c", cfg, "--target", "misp-ncsc",
                     "--from", "16/11/2026", "--to", "22/11/2026"])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert "MISP event 42 created (4 attributes)" in out.out
        assert len(misp.received) == 1
        headers = misp.headers[0]
        assert headers["Authorization"] == API_KEY
        assert headers["Content-Type"] == "application/json"
        event = misp.received[0]["Event"]
        assert set(event) >= {"info", "date", "threat_level_id", "analysis", "distribution",
                              "Orgc", "Attribute", "Tag", "uuid"}
        assert (event["distribution"], event["sharing_group_id"]) == ("4", "7")
        assert event["threat_level_id"] == "1"
        attrs = {a["value"]: a for a in event["Attribute"]}
        assert set(attrs) >= {IP_SRC, DOMAIN, SHA256}
        assert attrs[IP_SRC]["type"] == "ip-src"
        assert REF_1 in attrs[IP_SRC]["comment"]
        assert {"name": "tlp:amber"} in event["Tag"]
        json.dumps(event)

        # A wrong key: the receiver refuses, the exchange is a failure, exit 1.
        monkeypatch.setenv("SOCD_TEST_MISP_KEY", "not-the-key")
        code = main(["share", "push", "-c", cfg, "--target", "misp-ncsc",
                     "--incident", INCIDENT])
        out = capsys.readouterr()
        assert code == 1
        assert "HTTP 403 (authentication refused: check the api_key)" in out.err
        assert "not-the-key" not in out.err + out.out
        assert len(misp.received) == 1

    # The receiver is gone: unreachable is a failure too.
    monkeypatch.setenv("SOCD_TEST_MISP_KEY", API_KEY)
    code = main(["share", "push", "-c", cfg, "--target", "misp-ncsc", "--incident", INCIDENT])
    out = capsys.readouterr()
    assert code == 1
    assert "MISP unreachable" in out.err

    rows = records.exchanges(str(seeded.state / "sharing.db"))
    assert [(r.kind, r.result) for r in rows] == [("misp", "failure"), ("misp", "failure"),
                                                  ("misp", "success")]
    ok = rows[2]
    assert ok.objects == 4
    assert ok.recipient == "MISP cộng đồng ứng cứu sự cố"
    assert ok.detail == "MISP event 42 created (4 attributes)"
    assert rows[1].incident == INCIDENT
    assert "403" in rows[1].detail
    records.COLLECTOR.set({}, {})
