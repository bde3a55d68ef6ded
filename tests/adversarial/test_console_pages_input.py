"""Hostile input at the console's pages (issue 19): every query parameter, form field,
path part and upload is the client's; the pages drop what they do not know, answer 4xx
for what they cannot take, never 500, and bound what they read.

* the queue's filters: unknown values, over-long texts, control characters, SQL and
  LIKE wildcards, a forged cursor are ignored or taken literally;
* bulk actions: unknown actions are 400, malformed ids are dropped, 10,000 ids are cut
  to the bulk limit (one transaction);
* paths: non-hex or over-long alert ids, traversal in incident ids and document names
  are 404;
* IoC uploads: binary garbage, a wrong format, a missing file are reported, not raised;
* hostile text in an alert (script, a javascript: link, control characters) is inert.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import FormData

from socd.console import data_actions
from socd.console.data import alert_ids
from tests.console_alerts import alert, alerts
from tests.console_pages import console

pytestmark = [pytest.mark.timeout(120)]

HOSTILE = ["%", "_", "' OR 1=1 --", "\x00\x1b[31m", "𝕏" * 300, "a" * 3000,
           "<script>alert(1)</script>", "javascript:alert(1)", "../../etc/passwd"]


async def test_queue_filters_never_fail(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        c.store.insert(alerts(30))
        await c.sign_in("viewer")
        for value in HOSTILE:
            for name in ("severity", "status", "unit", "layer", "asset_kind", "rule",
                         "source_ip", "destination_ip", "since", "until", "q", "sort",
                         "size", "after", "newer"):
                r = await c.client.get(f"/alerts?{name}={quote(value)}")
                assert r.status == 200, (name, value, r.status)
                text = await r.text()
                assert "<script>alert(1)</script>" not in text
            r = await c.client.get(f"/alerts/fresh?q={quote(value)}&newer={quote(value)}")
            assert r.status == 200


async def test_bulk_bounds_and_refusals(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        events = alerts(5)
        c.store.insert(events)
        await c.sign_in("analyst")
        r = await c.post("/alerts/bulk", {"action": "drop_table",
                                          "id": events[0]["event"]["hash"]})
        assert r.status == 400
        forged = [("id", v) for v in HOSTILE] + [("id", "f" * 40)] * 3
        r = await c.post("/alerts/bulk", [("action", "ack"), *forged])
        assert r.status == 303
        assert "done=none" in r.headers["Location"] or "n=0" in r.headers["Location"]
        many = [("id", f"{i:040x}") for i in range(10_000)]
        many.append(("id", events[1]["event"]["hash"]))
        r = await c.post("/alerts/bulk", [("action", "resolve"), *many])
        assert r.status == 413  # aiohttp's cap on form fields (1,000): refused as a whole
        stored = c.store.get(events[1]["event"]["hash"])
        assert stored is not None
        assert stored.status == "new"
        # under the cap: unknown ids are dropped, the real one changes
        r = await c.post("/alerts/bulk", [("action", "resolve"), *many[-900:]])
        assert "n=1" in r.headers["Location"]
        assert alert_ids([f"{i:040x}" for i in range(9000)], data_actions.MAX_BULK) == [
            f"{i:040x}" for i in range(5000)]  # the bulk limit of "all that match"


async def test_paths(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        c.store.insert([alert(0)])
        await c.sign_in("analyst")
        for path in ("/alerts/zzzzzzzz", "/alerts/" + "a" * 41, "/alerts/abc",
                     "/alerts/%2e%2e%2f%2e%2e%2fetc", "/incidents/..%2f..%2fetc",
                     "/incidents/SC-2026-0001/documents/notification.exe",
                     "/incidents/SC-2026-0001/documents/../../x.md",
                     "/incidents/" + "9" * 5000):
            r = await c.client.get(path)
            assert r.status in (400, 404), (path, r.status)
        r = await c.post("/alerts/" + "0" * 40 + "/change", {"action": "ack"})
        assert r.status == 404
        r = await c.post("/alerts/" + "0" * 40 + "/change", {"action": "explode"})
        assert r.status == 400
        r = await c.post("/incidents/SC-2026-0001/change", {"change": "action", "layer": "1",
                                                            "text": "x"})
        assert r.status == 404


async def test_ioc_uploads_are_reported_not_raised(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        await c.sign_in("admin")
        cases = [("csv", bytes(range(256)) * 64), ("xlsx", b"PK\x03\x04 not a zip"),
                 ("stix", b"{not json"), ("misp", b"[]"), ("text", b"\xff\xfe\x00garbage")]
        for fmt, data in cases:
            form = FormData({"format": fmt, "source": "x", "csrf_token": c.csrf})
            form.add_field("file", data, filename="../../evil.csv")
            r = await c.client.post("/iocs/import", data=form,
                                    headers={"X-CSRF-Token": c.csrf})
            assert r.status in (200, 400), (fmt, r.status)
        r = await c.post("/iocs/import", {"format": "csv", "source": "x"})  # no file
        assert r.status == 400
        form = FormData({"format": "exe", "source": "x", "csrf_token": c.csrf})
        form.add_field("file", b"1.2.3.4", filename="a.txt")
        r = await c.client.post("/iocs/import", data=form, headers={"X-CSRF-Token": c.csrf})
        assert r.status == 400


async def test_hostile_alert_text_in_every_field(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        bad = '"><svg onload=alert(1)>\x1b[2J'
        event = alert(9, host=bad, rule=bad, unit=bad, extra={
            "url": {"full": "javascript:alert(1)"}, "user": {"name": bad},
            "process": {"command_line": bad, "name": bad}, "file": {"name": bad}})
        event["rule"]["name"] = bad
        event["socd"]["ioc"] = {"matched": True, "values": [bad], "refs": [bad]}
        c.store.insert([event])
        await c.sign_in("analyst")
        for path in (f"/alerts/{event['event']['hash']}", "/alerts",
                     f"/alerts?unit={quote(bad)}"):
            text = await c.page(path)
            assert "<svg" not in text
            assert 'href="javascript:' not in text
