"""The console's pages over real stores (issue 19): the alert queue's filters, pages and
counts, the alert page, single and bulk changes in the store and the audit log, incidents
from alerts with their deadlines, roles, and hostile event text rendered inert."""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from aiohttp import FormData

from socd.alerts.audit import opened, verify

from ..console_alerts import XSS, alert, alerts
from ..console_pages import console


def _rows(page: str) -> int:
    return page.count('name="id" value="')


async def test_queue_filters_pages_and_counts(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        c.store.insert(alerts(120))
        await c.sign_in("viewer")
        text = await c.page("/alerts")
        # viewers see no checkboxes: count the rows by their links
        assert text.count('href="/alerts/') >= 50
        assert "Nghiêm trọng: <b>30</b>" in text  # 120 alerts, a quarter critical
        await c.sign_in("analyst")
        first = await c.page("/alerts?severity=high&unit=S%E1%BB%9F+Y+t%E1%BA%BF")
        expected = [e for e in alerts(120) if e["socd"]["severity"] == "high"
                    and e["socd"]["unit"] == "Sở Y tế"]
        assert _rows(first) == len(expected) == 10
        # keyset pages: 120 alerts by 50, every alert once
        seen: list[str] = []
        url = "/alerts"
        while url:
            page = await c.page(url)
            seen += [part.split('"')[0] for part in page.split('name="id" value="')[1:]]
            nxt = [p for p in page.split('href="')[1:] if 'rel="next"' in p.split(">")[0]]
            url = html.unescape(nxt[0].split('"')[0]) if nxt else ""
        assert len(seen) == len(set(seen)) == 120
        # nonsense filters are dropped, not errors
        await c.page("/alerts?severity=%3Cx%3E&layer=9&after=zz&since=yesterday&size=-1")


async def test_bulk_ack_changes_the_store_and_the_audit_log(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        events = alerts(30)
        c.store.insert(events)
        ids = [e["event"]["hash"] for e in events[:12]]
        await c.sign_in("analyst")
        r = await c.post("/alerts/bulk", [("action", "ack"), *[("id", i) for i in ids]])
        assert r.status == 303
        notice = parse_qs(urlsplit(r.headers["Location"]).query)
        assert notice["n"] == ["12"]
        assert {c.store.get(i).status for i in ids} == {"acknowledged"}  # type: ignore[union-attr]
        assert all(len(c.store.history(i)) == 1 for i in ids)
        # every alert of the filter, from its status: the acknowledged ones are refused
        r = await c.post("/alerts/bulk", {"action": "false_positive", "scope": "filter",
                                          "note": "máy quét nội bộ", "f_status": "new"})
        assert parse_qs(urlsplit(r.headers["Location"]).query)["n"] == ["18"]
        with opened(str(c.state / "audit.db")) as log_:
            records = [r for r in log_.records() if r.object_type == "alert"]
        # one record per changed alert, as a single change writes it
        assert [(r.action, r.object_id) for r in records[:12]] == [("ack", i) for i in ids]
        assert {r.actor for r in records} == {"analyst"}
        assert len(records) == 30
        first = records[0].details
        assert (first["status_from"], first["status_to"], first["via"], first["bulk"]) == (
            "new", "acknowledged", "console", 12)
        assert {r.details["note"] for r in records[12:]} == {"máy quét nội bộ"}
        assert verify(str(c.state / "audit.db"), use_env=False).ok


async def test_false_positive_needs_a_reason_and_viewers_change_nothing(tmp_path: Path
                                                                        ) -> None:
    async with console(tmp_path) as c:
        event = alert(1)
        c.store.insert([event])
        alert_id = event["event"]["hash"]
        await c.sign_in("viewer")
        r = await c.post(f"/alerts/{alert_id}/change", {"action": "ack"})
        assert r.status == 403
        r = await c.post("/alerts/bulk", {"action": "ack", "id": alert_id})
        assert r.status == 403
        await c.sign_in("analyst")
        r = await c.post(f"/alerts/{alert_id}/change", {"action": "false_positive"})
        assert "err=reason" in r.headers["Location"]
        r = await c.post(f"/alerts/{alert_id}/change", {"action": "false_positive",
                                                        "note": "quét định kỳ"})
        assert "done=false_positive" in r.headers["Location"]
        stored = c.store.get(alert_id)
        assert stored is not None
        assert (stored.status, stored.status_by, stored.status_note) == (
            "false_positive", "analyst", "quét định kỳ")
        # false positive -> resolved is not a transition
        r = await c.post(f"/alerts/{alert_id}/change", {"action": "resolve"})
        assert "err=transition" in r.headers["Location"]
        page = await c.page(f"/alerts/{alert_id}")
        assert "quét định kỳ" in page
        assert "Cảnh báo nhầm" in page
        # a missing token is refused by the console core
        r = await c.post(f"/alerts/{alert_id}/change", {"action": "ack"}, csrf=False)
        assert r.status == 403


async def test_hostile_event_text_is_inert(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        event = alert(3, host=XSS, rule=XSS, extra={
            "process": {"command_line": f"powershell -enc {XSS}"}, "message": XSS})
        event["rule"]["name"] = XSS
        event["rule"]["description"] = XSS
        c.store.insert([event])
        await c.sign_in("analyst")
        for path in ("/alerts", f"/alerts/{event['event']['hash']}",
                     f"/alerts?q={XSS[:20]}"):
            page = await c.page(path)
            assert "<script>" not in page
            assert "<img src=x" not in page
        page = await c.page(f"/alerts/{event['event']['hash']}")
        assert html.escape(f"powershell -enc {XSS}", quote=False).split("&lt;")[0] in page
        assert "&lt;script&gt;" in page


async def test_incident_from_two_alerts_shows_its_deadlines(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        events = alerts(4)
        c.store.insert(events)
        ids = [e["event"]["hash"] for e in events[:2]]
        await c.sign_in("analyst")
        r = await c.post("/alerts/bulk", [("action", "incident_new"),
                                          ("title", "Mã độc trên máy chủ cổng"),
                                          *[("id", i) for i in ids]])
        assert r.status == 303
        location = r.headers["Location"]
        assert location.startswith("/incidents/SC-")
        page = await c.page(location)
        assert "Mã độc trên máy chủ cổng" in page
        assert "Báo cáo ban đầu (5 ngày)" in page
        assert "còn 4 ngày 23 giờ" in page
        for i in ids:
            assert f"/alerts/{i}" in page
        listing = await c.page("/incidents")
        assert location.split("/")[-1] in listing
        r = await c.post(location + "/change", {"change": "action", "layer": "1",
                                                "text": "Cách ly máy chủ"})
        assert r.status == 303
        assert "Cách ly máy chủ" in await c.page(location)
        r = await c.client.get(location + "/documents/notification.md")
        assert r.status == 200
        assert "Mã độc trên máy chủ cổng" in await r.text()


async def test_block_the_source_goes_through_the_allowlist(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        allowed = alert(5, source_ip="198.51.100.7")  # the config's allowlist
        hostile = alert(6, source_ip="203.0.113.66")
        c.store.insert([allowed, hostile])
        await c.sign_in("analyst")
        r = await c.post(f"/alerts/{allowed['event']['hash']}/block", {"note": "thử"})
        assert "err=block_refused" in r.headers["Location"]
        r = await c.post(f"/alerts/{hostile['event']['hash']}/block", {"note": "dò quét"})
        assert "done=block" in r.headers["Location"]
        blocks = c.services.blocks()
        assert [d.value for d in blocks.active()] == ["203.0.113.66"]


async def test_ioc_import_shows_the_allowlist_refusals_and_admin_only(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        appendix = ("STT,Địa chỉ IP,Ghi chú\n1,203.0.113.77,C&C\n2,198.51.100.9,nhầm\n"
                    "3,không phải IP,x\n").encode()
        fields = {"format": "csv", "source": "NCSC", "ref": "941/CATTT-NCSC",
                  "letter_date": "2026-11-20"}
        await c.sign_in("analyst")
        form = FormData({**fields, "csrf_token": c.csrf})
        form.add_field("file", appendix, filename="phu-luc.csv")
        r = await c.client.post("/iocs/import", data=form, allow_redirects=False,
                                headers={"X-CSRF-Token": c.csrf})
        assert r.status == 403
        await c.sign_in("admin")
        form = FormData({**fields, "csrf_token": c.csrf})
        form.add_field("file", appendix, filename="phu-luc.csv")
        r = await c.client.post("/iocs/import", data=form, allow_redirects=False,
                                headers={"X-CSRF-Token": c.csrf})
        page = await r.text()
        assert r.status == 200, page[:500]
        assert "198.51.100.9" in page  # refused, with the allowlist entry that covers it
        assert "Bị từ chối do thuộc danh sách cho phép (1)" in page
        found = await c.page("/iocs?q=203.0.113[.]77")
        assert "941/CATTT-NCSC" in found
        entry = c.services.iocs().entries_for("ip", "203.0.113.77")[0]
        assert "letter_date:2026-11-20" in entry.tags


async def test_blocks_unblock_needs_admin_and_a_reason(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        hostile = alert(6, source_ip="203.0.113.66")
        c.store.insert([hostile])
        await c.sign_in("analyst")
        await c.post(f"/alerts/{hostile['event']['hash']}/block", {"note": "dò quét"})
        page = await c.page("/blocks")
        assert "203.0.113.66" in page
        r = await c.post("/blocks/unblock", {"value": "203.0.113.66", "reason": "nhầm"})
        assert r.status == 403
        await c.sign_in("admin")
        r = await c.post("/blocks/unblock", {"value": "203.0.113.66"})
        assert "err=reason" in r.headers["Location"]
        r = await c.post("/blocks/unblock", {"value": "203.0.113.66", "reason": "đối tác"})
        assert "done=unblock" in r.headers["Location"]
        assert c.services.blocks().active() == []
        page = await c.page("/blocks?value=203.0.113.66")
        assert "đối tác" in page  # the audit trail


async def test_report_and_health_pages(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        c.store.insert(alerts(20))
        await c.sign_in("viewer")
        assert "Báo cáo tuần" in await c.page("/reports")
        r = await c.client.get("/reports/download?kind=weekly&format=md&from=2026-11-16"
                               "&to=2026-11-22")
        assert r.status == 200
        assert "attachment" in r.headers["Content-Disposition"]
        assert "20" in await r.text()
        r = await c.client.get("/reports/download?kind=yearly&format=md")
        assert r.status == 400
        page = await c.page("/health")
        assert "Tình trạng hệ thống" in page


def test_every_key_the_pages_use_has_both_texts() -> None:
    """Keys named in the templates (literal ones, and each value of the dynamic ones)."""
    import re

    from socd.console import i18n
    from socd.console.render import TEMPLATES
    from socd.console.views import words

    i18n.extend(words.VI, words.EN)
    used: set[str] = set()
    for path in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"""\bt\(["']([a-z0-9_.]+[a-z0-9_])["']""", path.read_text()))
    dynamic = {"action": ["ack", "false_positive", "resolve", "assign", "unassign", "reopen",
                          "incident_new", "incident_add", "block", "block_same"],
               "notice.err": ["reason", "title", "incident", "transition", "no_source",
                              "no_blocker", "block_refused", "no_store"],
               "notice.one": ["ack", "false_positive", "resolve", "assign", "block",
                              "block_same"],
               "doc": ["notification", "final"], "serious": ["level", "impact", "capacity"],
               "source": ["store", "elasticsearch"],
               "timeline": ["discovered", "opened", "notified", "response_ended", "reported",
                            "closed", "alert", "layer1", "layer2", "layer3", "layer4"],
               "iocs.err": ["missing", "parse", "date"],
               "blocks.err": ["reason", "not_blocked"],
               "reports.kind": ["weekly", "monthly", "semiannual"],
               "health.reload": ["success", "failure"],
               "metric": list(_HEALTH_METRICS)}
    used |= {f"{family}.{v}" for family, values in dynamic.items() for v in values}
    assert used - set(i18n.VI) == set()
    assert used - set(i18n.EN) == set()


_PAGES = ("/alerts", "/incidents", "/iocs", "/blocks", "/reports", "/health")
_HEALTH_METRICS = ("socd_spool_events", "socd_spool_bytes", "socd_spool_max_bytes",
                   "socd_journal_records", "socd_journal_bytes",
                   "socd_journal_oldest_age_seconds", "socd_notification_queue_depth",
                   "socd_notifications_failed_total", "socd_dead_letters_total",
                   "socd_queue_depth", "socd_component_up")


async def test_without_the_configured_source_the_pages_say_so(tmp_path: Path) -> None:
    async with console(tmp_path, source="elasticsearch") as c:  # and no elasticsearch sink
        event = alert(1)
        c.store.insert([event])
        await c.sign_in("analyst")
        page = await c.page("/alerts")
        assert "no `elasticsearch` sink" in page
        r = await c.post(f"/alerts/{event['event']['hash']}/block", {"note": "x"})
        assert r.status == 303
        assert "err=no_store" in r.headers["Location"]
        assert "cần sink sqlite" in await c.page(r.headers["Location"])


async def test_every_page_change_refuses_viewers_and_missing_tokens(tmp_path: Path) -> None:
    """Each POST route the pages add: a viewer gets 403, an analyst without the CSRF
    token gets 403, and nothing is written."""
    async with console(tmp_path) as c:
        event = alert(1)
        c.store.insert([event])
        routes = sorted({r.resource.canonical for r in c.client.app.router.routes()
                         if r.method == "POST" and r.resource is not None
                         and r.resource.canonical.startswith(_PAGES)})
        paths = [p.replace("{id}", "SC-2026-0001" if p.startswith("/incidents")
                           else event["event"]["hash"]) for p in routes]
        assert "/alerts/bulk" in paths
        assert len(paths) >= 8
        await c.sign_in("viewer")
        for path in paths:
            r = await c.post(path, {"action": "ack", "id": event["event"]["hash"]})
            assert r.status == 403, path
        await c.sign_in("admin")
        for path in paths:
            r = await c.post(path, {"action": "ack", "id": event["event"]["hash"]}, csrf=False)
            assert r.status == 403, path
        stored = c.store.get(event["event"]["hash"])
        assert stored is not None
        assert stored.status == "new"


async def test_the_polled_fragment_counts_arrivals(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        events = alerts(10)
        c.store.insert(events[:6])
        await c.sign_in("viewer")
        page = await c.page("/alerts")
        fresh = html.unescape(page.split('hx-get="')[1].split('"')[0])
        assert "Có" not in await c.page(fresh)  # nothing new yet
        c.store.insert(events[6:])
        text = await c.page(fresh)
        assert "Có 4 cảnh báo mới" in text
        assert "Thấp: <b>" in text


async def test_an_overdue_incident_is_marked(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    async with console(tmp_path) as c:
        event = alert(2)
        c.store.insert([event])
        store = c.services.incidents()
        late = store.open_incident(title="Dò quét kéo dài", by="an",
                                   alerts=[(event["event"]["hash"], "high", "Sở Y tế")],
                                   discovered=datetime.now(UTC) - timedelta(days=6, hours=2))
        await c.sign_in("viewer")
        listing = await c.page("/incidents")
        assert "QUÁ HẠN" in listing
        assert "quá hạn 1 ngày 2 giờ" in listing
        page = await c.page(f"/incidents/{late.id}")
        assert "quá hạn 1 ngày 2 giờ" in page
        r = await c.client.get(f"/incidents/{late.id}/documents/notification.pdf")
        assert r.status == 200
        assert (await r.read()).startswith(b"%PDF")
