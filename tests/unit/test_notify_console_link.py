"""Notifications link to the analyst console (issue 19, ``console.base_url``): one alert
to its page, a digest to the queue filtered by its rule; without a base URL the messages
are exactly as before (the other render tests and the golden outputs)."""

from __future__ import annotations

from typing import Any

from socd.notify.render import Renderer

from .test_notify_render import alert, render

BASE = "https://soc.binhdinh.gov.vn/console/"


def test_one_alert_links_to_its_page_in_both_languages() -> None:
    event = alert()
    link = f"https://soc.binhdinh.gov.vn/console/alerts/{event['event']['hash']}"
    _, text, html = render(Renderer("vi", console_url=BASE), [event])
    assert f"Xem: {link}" in text
    assert html is not None
    assert f'href="{link}"' in html
    _, text, _ = render(Renderer("en", console_url=BASE), [event])
    assert f"Open: {link}" in text


def test_a_digest_links_to_the_queue_of_its_rule_encoded() -> None:
    events: list[dict[str, Any]] = [alert(i) for i in range(3)]
    for e in events:
        e["rule"]["id"] = 'scan&x=1 <"b">'  # hostile text never shapes the link
    _, text, html = render(Renderer("vi", console_url=BASE), events, total=3)
    queue = "https://soc.binhdinh.gov.vn/console/alerts?rule=scan%26x%3D1+%3C%22b%22%3E"
    assert f"Xem: {queue}" in text
    assert html is not None
    assert queue.replace("&", "&amp;") in html or queue in html


def test_no_base_url_no_link() -> None:
    _, text, html = render(Renderer("vi"), [alert()])
    assert "Xem:" not in text
    assert html is not None
    assert "/alerts/" not in html
