"""The bulk form's size (issue 19): one ``id`` field per ticked alert, so the form of a
1,000-alert bulk action has more fields than aiohttp's default cap (1,000, then 413).
The bulk route takes up to ``MAX_BULK`` (5,000) ids, whoever reads the form first (the
CSRF check when the token is a form field, else the handler); 5,001 ids are refused
whole (413, nothing changed, never cut to 5,000); every other form keeps aiohttp's
1,000-field cap."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from socd.console.data_actions import MAX_BULK
from tests.console_alerts import alerts
from tests.console_pages import Console, console

pytestmark = [pytest.mark.timeout(120)]


async def _post_form_token(c: Console, path: str, fields: list[tuple[str, str]]) -> Any:
    """A plain form's POST: the CSRF token in the form only, so the CSRF middleware reads
    the form before the handler does."""
    return await c.client.post(path, data=[*fields, ("csrf_token", c.csrf)],
                               allow_redirects=False)


async def test_bulk_of_1000_to_5000_ids_and_5001_refused(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        events = alerts(1000)
        c.store.insert(events)
        real = [("id", e["event"]["hash"]) for e in events]
        unknown = [("id", f"{i:040x}") for i in range(MAX_BULK - len(real) + 1)]
        await c.sign_in("analyst")
        # 5,001 ids: refused whole, by either reader of the form
        too_many = [("action", "ack"), *real, *unknown]
        assert len(too_many) - 1 == MAX_BULK + 1
        for post in (c.post, lambda p, d: _post_form_token(c, p, d)):
            r = await post("/alerts/bulk", too_many)
            assert r.status == 413, await r.text()
        assert {c.store.get(e["event"]["hash"]).status for e in events} == {"new"}  # type: ignore[union-attr]
        # exactly 5,000: taken (the unknown ids counted as missing)
        r = await _post_form_token(c, "/alerts/bulk", too_many[:-1])
        assert r.status == 303, await r.text()
        notice = parse_qs(urlsplit(r.headers["Location"]).query)
        assert notice["n"] == ["1000"]
        assert notice["missing"] == [str(MAX_BULK - 1000)]
        assert {c.store.get(e["event"]["hash"]).status for e in events} == {"acknowledged"}  # type: ignore[union-attr]
        # the 1,000 ticked alerts of the benchmark, with the header token
        r = await c.post("/alerts/bulk", [("action", "resolve"), *real])
        assert r.status == 303
        assert parse_qs(urlsplit(r.headers["Location"]).query)["n"] == ["1000"]


async def test_other_forms_keep_the_default_field_cap(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        events = alerts(1)
        c.store.insert(events)
        alert_id = events[0]["event"]["hash"]
        await c.sign_in("analyst")
        padding = [("pad", "x")] * 1000
        for post in (c.post, lambda p, d: _post_form_token(c, p, d)):
            r = await post(f"/alerts/{alert_id}/change", [("action", "ack"), *padding])
            assert r.status == 413
        assert c.store.get(alert_id).status == "new"  # type: ignore[union-attr]
        r = await c.post(f"/alerts/{alert_id}/change", [("action", "ack"), *padding[:900]])
        assert r.status == 303
        assert c.store.get(alert_id).status == "acknowledged"  # type: ignore[union-attr]


HOSTILE_CURSORS = ["-", "k", "k%%%", "k" + "A" * 6000, "kAAAA:kAAAA", "\x00", "k8J-_",
                   "x" * 100, "9" * 40, "k" + "_" * 40]


async def test_keyed_sorts_take_any_cursor(tmp_path: Path) -> None:
    """The queue's sort and cursor come from the URL: a forged, mismatched or over-long
    cursor key is "from the start" (or an empty page after a key no alert has), never
    an error."""
    async with console(tmp_path) as c:
        c.store.insert(alerts(20))
        await c.sign_in("viewer")
        hexid = "ab" * 20
        for sort in ("severity", "unit", "rule", "newest", "oldest", "<x>"):
            for key in HOSTILE_CURSORS:
                r = await c.client.get("/alerts", params={"sort": sort,
                                                          "after": f"5:{hexid}:{key}"})
                assert r.status == 200, (sort, key, r.status)
                assert "<x>" not in await r.text()
