"""Issue 19 follow-ups on the console's pages over real stores: the IoC import's
allowlist refusal reasons in the page's language (Vietnamese, English under
``?lang=en``), and an unblock from the console audited with the console user and the
console as its origin, whoever added the block."""

from __future__ import annotations

import html
from pathlib import Path

from aiohttp import FormData

from socd.block.decisions import Request
from socd.block.sink import make_guard, make_policy
from socd.console import i18n
from socd.console.views import words
from socd.console.views.iocs import why_refused
from socd.ioc.allowlist import Allowlist

from ..console_pages import Console, console

_APPENDIX = "STT,Địa chỉ IP,Ghi chú\n1,203.0.113.77,C&C\n2,198.51.100.9,nhầm\n".encode()


async def _import(c: Console, lang: str) -> str:
    form = FormData({"format": "csv", "source": "NCSC", "ref": "941/CATTT-NCSC",
                     "csrf_token": c.csrf})
    form.add_field("file", _APPENDIX, filename="phu-luc.csv")
    r = await c.client.post(f"/iocs/import{lang}", data=form, allow_redirects=False,
                            headers={"X-CSRF-Token": c.csrf})
    assert r.status == 200
    return html.unescape(await r.text())


async def test_the_refusal_reason_is_in_the_pages_language(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        await c.sign_in("admin")
        page = await _import(c, "")
        assert "198.51.100.9 thuộc danh sách cho phép (198.51.100.0/24)" in page
        assert "the allowlist" not in page
        page = await _import(c, "?lang=en")
        assert "198.51.100.9 is in the allowlist (198.51.100.0/24)" in page
        found = html.unescape(await c.page("/iocs?q=198.51.100[.]9&lang=vi"))
        assert "thuộc danh sách cho phép (198.51.100.0/24)" in found


def test_every_refusal_case_has_both_texts() -> None:
    i18n.extend(words.VI, words.EN)
    allow = Allowlist(["198.51.100.0/24"], ["gov.vn", "mail.example.org"])
    cases = {("ip", "198.51.100.9"): "iocs.why.ip_in",
             ("ip", "198.51.0.0/16"): "iocs.why.ip_overlaps",
             ("domain", "cong.gov.vn"): "iocs.why.host_below",
             ("domain", "*.example.org"): "iocs.why.host_covers"}
    for (kind, value), key in cases.items():
        reason = why_refused(allow, kind, value)
        assert reason is not None
        assert reason[0] == key, (value, reason)
        for lang in i18n.LANGUAGES:
            text = i18n.translate(lang, reason[0], **reason[1])
            assert value in text
            assert text != key
    assert why_refused(allow, "ip", "203.0.113.5") is None
    other = why_refused(allow, "hash", "x", said="covered")
    assert other == ("iocs.why.other", {"said": "covered"})
    assert "covered" in i18n.translate("vi", *other[:1], **other[1])


async def test_an_unblock_is_audited_with_the_console_user(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        store = c.services.blocks()
        cfg = c.services.blocker
        assert cfg is not None
        store.decide([Request("203.0.113.66", "dò quét", origin="cli", actor="cli:root")],
                     make_policy(cfg), make_guard(cfg), dry_run=True)
        await c.sign_in("admin")
        r = await c.post("/blocks/unblock", {"value": "203.0.113.66", "reason": "đối tác"})
        assert "done=unblock" in r.headers["Location"]
        removal = store.audit("203.0.113.66")[0]
        assert (removal["action"], removal["actor"], removal["origin"]) == \
            ("remove", "console:admin", "console")
        page = await c.page("/blocks?value=203.0.113.66")
        assert "console:admin" in page


def test_an_alerts_elasticsearch_index_from_any_time() -> None:
    """The bulk sync's index name from the alert's time, as the sink names it; a time
    it cannot use (hostile text, out of range) gives no name, so the document is
    searched for instead, never an exception."""
    from socd.alerts.store import StoredAlert
    from socd.console.data_es import day_index, epoch_ms

    def stored(ts: str, ts_ms: int | None) -> StoredAlert:
        return StoredAlert("a" * 40, ts, ts_ms, "alert", None, None, None, None, None,
                           None, None, None, None, None, False, "new", None, None, None,
                           None, b"{}")

    assert epoch_ms("2026-11-16T23:30:00-02:00") == epoch_ms("2026-11-17T01:30:00Z")
    assert day_index("p", stored("2026-11-16T23:30:00-02:00", None)) == "p-2026.11.17"
    assert day_index("p", stored("x", 1_763_337_600_000)) == "p-2025.11.17"
    for ts in ("", "not a time", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00",
               "2026-13-01T00:00:00Z", "\x00" * 100):
        day_index("p", stored(ts, None))  # a name or None, never an exception
    assert day_index("p", stored("x", 10**18)) is None
    assert epoch_ms(None) is None
