"""`socd share push` to a real TAXII 2.1 server: OASIS medallion (memory backend) as a process.

The test pushes a period's STIX bundle, reads the objects back from the collection
with taxii2-client, and checks the exchange log and the metrics; wrong credentials
are recorded as a failure (exit 1).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from taxii2client.v21 import Collection

from socd import metrics
from socd.cli import main
from socd.sharing import records
from tests.conftest import free_port
from tests.unit.test_sharing_seed import INCIDENT, IP_SRC, REF_1, seed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

COLLECTION = "365fed99-08fa-fdcd-a1b3-fb247eb41d01"
API_ROOT = "socdtest"


def medallion_bin() -> str:
    path = Path(sys.executable).with_name("medallion")
    if not path.exists():
        pytest.fail(f"medallion (the OASIS TAXII 2.1 server) is not installed in {path.parent}: "
                    "install the project's test dependencies", pytrace=False)
    return str(path)


@contextlib.contextmanager
def medallion(tmp_path: Path) -> Iterator[str]:
    """A medallion server on a free port; yields its API root URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = {
        "/discovery": {"title": "socd test TAXII server", "default": f"{base}/{API_ROOT}/",
                       "api_roots": [f"{base}/{API_ROOT}/"]},
        API_ROOT: {
            "information": {"title": "national centre (test)", "max_content_length": 9765625,
                            "versions": ["application/taxii+json;version=2.1"]},
            "status": [],
            "collections": [{
                "id": COLLECTION, "title": "sightings from provinces", "can_read": True,
                "can_write": True, "media_types": ["application/stix+json;version=2.1"],
                "objects": [], "manifest": []}],
        },
    }
    (tmp_path / "medallion-data.json").write_text(json.dumps(data))
    (tmp_path / "medallion.json").write_text(json.dumps({
        "backend": {"module": "medallion.backends.memory_backend",
                    "module_class": "MemoryBackend",
                    "filename": str(tmp_path / "medallion-data.json")},
        "users": {"soc-bentre": "s3cret-pass"},
        "taxii": {"max_page_size": 500},
    }))
    log = open(tmp_path / "medallion.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([medallion_bin(), "--host", "127.0.0.1", "--port", str(port),
                             str(tmp_path / "medallion.json")], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "medallion.log").read_text()
            with contextlib.suppress(requests.RequestException):
                r = requests.get(f"{base}/taxii2/", auth=("soc-bentre", "s3cret-pass"),
                                 headers={"Accept": "application/taxii+json;version=2.1"},
                                 timeout=2)
                if r.status_code == 200:
                    break
            assert time.monotonic() < deadline, "medallion did not start: " + (
                tmp_path / "medallion.log").read_text()
            time.sleep(0.2)
        yield f"{base}/{API_ROOT}/"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def sharing_yaml(api_root: str) -> str:
    return f"""sharing:
  organisation: {{name: "SOC tỉnh Bến Tre", contact: "soc@bentre.gov.vn"}}
  tlp: amber
  targets:
    ncsc:
      type: taxii
      url: "{api_root}"
      collection_id: "{COLLECTION}"
      username: soc-bentre
      password: "${{SOCD_TEST_TAXII_PASSWORD}}"
      recipient: "Trung tâm Giám sát an toàn không gian mạng quốc gia (NCSC)"
      timeout_secs: 30
"""


def test_push_to_medallion_and_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("SOCD_CONFIG", raising=False)
    with medallion(tmp_path) as api_root:
        seeded = seed(tmp_path, sharing_yaml(api_root))
        cfg = str(seeded.config)
        monkeypatch.setenv("SOCD_TEST_TAXII_PASSWORD", "s3cret-pass")
        code = main(["share", "push", "-c", cfg, "--target", "ncsc",
                     "--from", "16/11/2026", "--to", "22/11/2026"])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert "complete" in out.out
        collection = Collection(f"{api_root}collections/{COLLECTION}/", user="soc-bentre",
                                password="s3cret-pass")
        stored = collection.get_objects()["objects"]
        types = sorted(o["type"] for o in stored)
        assert types.count("indicator") == 4
        assert types.count("sighting") == 4
        assert types.count("observed-data") == 4
        assert "identity" in types
        sightings = [o for o in stored if o["type"] == "sighting"]
        assert sorted(s["count"] for s in sightings) == [1, 1, 1, 2]
        indicator = next(o for o in stored if o["type"] == "indicator"
                         and o["pattern"] == f"[ipv4-addr:value = '{IP_SRC}']")
        assert indicator["external_references"][0]["external_id"] == REF_1
        # The same push again is idempotent on the server: same ids, same versions.
        assert main(["share", "push", "-c", cfg, "--target", "ncsc", "--from", "16/11/2026",
                     "--to", "22/11/2026"]) == 0
        again = collection.get_objects()["objects"]
        assert sorted(o["id"] for o in again) == sorted(o["id"] for o in stored)

        # Wrong credentials: a failure row, a clear message, exit 1.
        monkeypatch.setenv("SOCD_TEST_TAXII_PASSWORD", "wrong")
        capsys.readouterr()
        code = main(["share", "push", "-c", cfg, "--target", "ncsc", "--incident", INCIDENT])
        out = capsys.readouterr()
        assert code == 1
        assert "HTTP 401" in out.err
        assert "authentication refused" in out.err
        assert "wrong" not in out.err

    rows = records.exchanges(str(seeded.state / "sharing.db"))
    assert [r.result for r in rows] == ["failure", "success", "success"]
    fail, ok = rows[0], rows[2]
    assert (fail.incident, fail.period_from, fail.kind) == (INCIDENT, None, "stix")
    assert "HTTP 401" in fail.detail
    assert ok.target == "ncsc"
    assert ok.recipient.endswith("(NCSC)")
    assert (ok.period_from, ok.period_to) == ("2026-11-15T17:00:00Z", "2026-11-22T17:00:00Z")
    assert ok.objects == 18  # marking, identity, 4 x (indicator, SCO, observed-data, sighting)
    assert "18 of 18 objects accepted" in ok.detail
    assert "0 of 18 objects accepted, 18 already present" in rows[1].detail
    last = metrics.REGISTRY.get_sample_value("socd_sharing_last_success_timestamp_seconds",
                                             {"target": "ncsc"})
    assert last is not None
    assert abs(last - time.time()) < 600
    assert metrics.REGISTRY.get_sample_value(
        "socd_sharing_exchanges_total", {"target": "ncsc", "result": "success"}) == 2
    assert metrics.REGISTRY.get_sample_value(
        "socd_sharing_exchanges_total", {"target": "ncsc", "result": "failure"}) == 1
    records.COLLECTOR.set({}, {})
    assert os.path.exists(seeded.state / "sharing.db")
