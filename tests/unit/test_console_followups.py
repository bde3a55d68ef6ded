"""Console follow-ups of issue 19: the favicon, the queue's sorts, the bulk form's size,
free text folded alike by both sources, ``console.alert_source``, and the documents'
placeholder warning."""

from __future__ import annotations

from pathlib import Path

from ..console_pages import console


async def test_favicon_answers_without_sign_in(tmp_path: Path) -> None:
    async with console(tmp_path) as c:
        r = await c.client.get("/favicon.ico", allow_redirects=False)
        assert r.status == 204
        login = await c.page("/login")
        assert 'rel="icon" type="image/svg+xml" href="/static/favicon.svg"' in login
        r = await c.client.get("/static/favicon.svg")
        assert r.status == 200
        assert r.content_type == "image/svg+xml"
        assert (await r.text()).startswith("<svg")
