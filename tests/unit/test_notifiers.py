"""Pure parts of the notifiers: payload shapes, escaping, truncation, error mapping."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
from email.header import decode_header, make_header
from typing import Any

import aiosmtplib
import pytest

from socd.alerting.notifiers import common
from socd.alerting.notifiers.alertmanager import AlertmanagerNotifier, alertmanager_alerts
from socd.alerting.notifiers.chat import (
    MattermostNotifier,
    SlackNotifier,
    TeamsNotifier,
    mattermost_payload,
    slack_payload,
    teams_payload,
)
from socd.alerting.notifiers.email import (
    EmailNotifier,
    build_message,
    is_retryable_reply,
    message_id,
    smtp_error,
)
from socd.alerting.notifiers.mqtt import MqttNotifier, expand_topic
from socd.alerting.notifiers.telegram import (
    TelegramNotifier,
    telegram_error,
    telegram_payload,
    telegram_text,
)
from socd.alerting.notifiers.webhook import signature, webhook_headers
from socd.config import NotifierConfig
from socd.errors import NotifyError
from socd.plugins import Notification, registry

TITLE = "[Nghiêm trọng] Dò quét SSH từ 203.0.113.9 — Sở Tài chính"
TEXT = ("Máy chủ srv-01 (10.10.20.11) bị dò quét SSH.\n"
        "Luật: ET SCAN <Potential> SSH Scan & brute-force\n"
        "Khuyến nghị: chặn địa chỉ nguồn.")


def sample_alert(i: int = 1, **socd: Any) -> dict[str, Any]:
    return {
        "@timestamp": f"2026-11-16T01:02:0{i}.000Z",
        "message": f"SSH scan {i}",
        "event": {"kind": "alert", "hash": f"h{i:039d}"},
        "host": {"name": f"srv-0{i}"},
        "source": {"ip": "203.0.113.9"},
        "destination": {"ip": "10.10.20.11"},
        "rule": {"id": "2001219", "name": "ET SCAN Potential SSH Scan"},
        "socd": {"severity": "critical", "severity_label": "nghiêm trọng", "layer": 2,
                 "unit": "Sở Tài chính", "asset_kind": "server",
                 "ioc": {"values": ["203.0.113.9"], "refs": ["feed:abuse"]}, **socd},
    }


def sample_notification(n_alerts: int = 2, total: int | None = None, *,
                        html: str | None = "<p>Máy chủ <b>srv-01</b> bị dò quét</p>",
                        **kw: Any) -> Notification:
    alerts = [sample_alert(i + 1) for i in range(n_alerts)]
    fields: dict[str, Any] = {
        "id": "n-0123456789abcdef", "route": "critical-soc",
        "group_key": "rule.id=2001219,socd.unit=Sở Tài chính", "severity": "nghiêm trọng",
        "title": TITLE, "text": TEXT, "html": html, "alerts": alerts,
        "total": n_alerts if total is None else total, "created": 1_794_790_923.5,
    }
    fields.update(kw)
    return Notification(**fields)


# ----------------------------------------------------------------- registry/config --

SAMPLES: dict[str, dict[str, Any]] = {
    "email": {"type": "email", "host": "smtp.example.vn", "from_addr": "soc@example.vn",
              "to": ["analyst@example.vn"]},
    "webhook": {"type": "webhook", "url": "https://siem.example.vn/hook"},
    "telegram": {"type": "telegram", "bot_token": "123:abc", "chat_id": "-1001"},
    "slack": {"type": "slack", "url": "https://hooks.slack.com/services/T/B/x"},
    "mattermost": {"type": "mattermost", "url": "https://mm.example.vn/hooks/x"},
    "teams": {"type": "teams", "url": "https://prod.westeurope.logic.azure.com/x"},
    "mqtt": {"type": "mqtt"},
    "alertmanager": {"type": "alertmanager"},
}


@pytest.mark.parametrize("type_", sorted(SAMPLES))
def test_registered_notifier_loads_and_validates_strictly(type_: str) -> None:
    cls = registry.lookup("notifier", type_).load()
    assert issubclass(cls.Config, NotifierConfig)
    assert cls.Config.model_validate(SAMPLES[type_]).type == type_
    with pytest.raises(ValueError):
        cls.Config.model_validate({**SAMPLES[type_], "type": "other"})
    with pytest.raises(ValueError):
        cls.Config.model_validate({**SAMPLES[type_], "no_such_option": 1})
    for name, info in cls.Config.model_fields.items():
        assert info.description or name == "type", f"{type_}.{name} has no description"


def test_every_registered_notifier_type_is_covered() -> None:
    assert set(registry.known_types("notifier")) == set(SAMPLES)


def test_secrets_are_secret_in_config_reprs() -> None:
    cfg = TelegramNotifier.Config.model_validate(SAMPLES["telegram"])
    assert "123:abc" not in repr(cfg)
    cfg2 = SlackNotifier.Config.model_validate(SAMPLES["slack"])
    assert "hooks.slack.com" not in repr(cfg2)


@pytest.mark.parametrize("bad", [
    {"to": []}, {"to": ["not-an-address"]}, {"from_addr": "soc"}, {"security": "ssl"},
])
def test_email_config_rejects(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        EmailNotifier.Config.model_validate({**SAMPLES["email"], **bad})


@pytest.mark.parametrize("topic", ["a/{unit}", "a/+/b", "a/#", "a/{severity!r}"])
def test_mqtt_topic_validation(topic: str) -> None:
    with pytest.raises(ValueError):
        MqttNotifier.Config.model_validate({"type": "mqtt", "topic": topic})


def test_alertmanager_config_rejects_bad_label_and_double_auth() -> None:
    with pytest.raises(ValueError):
        AlertmanagerNotifier.Config.model_validate({"type": "alertmanager",
                                                    "labels": {"bad-name": "x"}})
    with pytest.raises(ValueError):
        AlertmanagerNotifier.Config.model_validate(
            {"type": "alertmanager", "bearer_token": "t", "username": "u"})


@pytest.mark.parametrize("url", ["ftp://x", "hooks.slack.com/x"])
def test_chat_url_must_be_http(url: str) -> None:
    for cls in (SlackNotifier, MattermostNotifier, TeamsNotifier):
        with pytest.raises(ValueError):
            cls.Config.model_validate({"type": cls.kind, "url": url})


# ------------------------------------------------------------------------ common --

@pytest.mark.parametrize(("value", "code"), [
    ("nghiêm trọng", "critical"), ("Nghiem Trong", "critical"), ("cao", "high"),
    ("trung bình", "medium"), ("thấp", "low"), ("high", "high"), ("CRITICAL", "critical"),
])
def test_severity_of_label_or_code(value: str, code: str) -> None:
    assert common.severity_of(sample_notification(severity=value)).value == code


def test_severity_falls_back_to_highest_alert() -> None:
    n = sample_notification(severity="?")
    n.alerts[1]["socd"]["severity"] = "high"
    assert common.severity_of(n).value == "critical"
    assert common.severity_of(sample_notification(0, severity="")).value == "low"


def test_notification_body_shape() -> None:
    body = common.notification_body(sample_notification(2, total=5))
    assert list(body) == ["id", "route", "group_key", "severity", "severity_label", "title",
                          "text", "total", "created", "alerts"]
    assert body["severity"] == "critical"
    assert body["severity_label"] == "nghiêm trọng"
    assert body["total"] == 5
    assert body["created"] == "2026-11-16T01:02:03.500Z"
    assert len(body["alerts"]) == 2
    decoded = json.loads(common.dumps(body))
    assert decoded["title"] == TITLE


def test_total_is_at_least_the_attached_alerts() -> None:
    assert common.notification_body(sample_notification(3, total=0))["total"] == 3


def test_dumps_survives_values_json_cannot_hold() -> None:
    assert json.loads(common.dumps({"a": {3, 1}, "b": (1, 2), 5: "x"})) == {
        "a": [1, 3], "b": [1, 2], "5": "x"}


@pytest.mark.parametrize("limit", [10, 50, 100, 4096])
def test_truncate_fits_and_counts_dropped(limit: int) -> None:
    text = "Đây là một cảnh báo rất dài. " * 200
    cut = common.truncate(text, limit)
    assert len(cut) <= limit
    head, _, marker = cut.rpartition("…(+")
    assert text.startswith(head)
    assert int(marker.rstrip(")")) == len(text) - len(head)


def test_truncate_keeps_short_text() -> None:
    assert common.truncate("ngắn", 10) == "ngắn"


def test_truncate_utf16_counts_emoji_twice() -> None:
    text = "🔴" * 100
    cut = common.truncate_utf16(text, 50)
    assert common.utf16_len(cut) <= 50
    assert "\ud83d" not in cut  # no half surrogate pair
    assert cut.endswith(f"(+{100 - cut.count('🔴')})")


@pytest.mark.parametrize(("value", "expected"), [
    ("7", 7.0), ("1.5", 1.5), ("-3", 0.0), (None, None), ("", None), ("soon", None),
    ("nan", None), ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0),
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = 1445412480.0  # 2015-10-21T07:28:00Z
    assert common.parse_retry_after(value, now=now) == expected


@pytest.mark.parametrize(("status", "retryable"), [
    (400, False), (401, False), (403, False), (404, False), (410, False), (413, False),
    (408, True), (429, True), (500, True), (502, True), (503, True), (504, True),
])
def test_status_retryable(status: int, retryable: bool) -> None:
    err = common.status_error("webhook x", status, "  body\n text ", retry_after=4)
    assert err.retryable is retryable
    assert err.retry_after == (4 if retryable else None)
    assert str(err) == f"webhook x: HTTP {status}: body text"


def test_redact() -> None:
    assert common.redact("url /bot123:abc/sendMessage", ["123:abc", ""]) == \
        "url /bot<redacted>/sendMessage"


# ----------------------------------------------------------------------- webhook --

def test_webhook_headers_and_hmac_verify() -> None:
    body = common.dumps(common.notification_body(sample_notification()))
    headers = webhook_headers("n-1", body, now=1700000000.9, bearer_token="tok",
                              hmac_secret="s3cret", extra={"X-Api-Key": "k"})
    assert headers["Idempotency-Key"] == "n-1"
    assert headers["X-Socd-Timestamp"] == "1700000000"
    assert headers["Authorization"] == "Bearer tok"
    assert headers["X-Api-Key"] == "k"
    assert headers["Content-Type"].startswith("application/json")
    # The timestamp is signed with the body (issue 14, point 14): it was the body alone,
    # so a captured request could be replayed with any X-Socd-Timestamp.
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert headers["X-Socd-Signature"] == f"sha256={expected}" == signature(
        "s3cret", body, "1700000000")
    later = webhook_headers("n-1", body, now=1700000300.0, hmac_secret="s3cret")
    assert later["X-Socd-Signature"] != headers["X-Socd-Signature"]


def test_webhook_hmac_of_the_body_alone_on_request() -> None:
    # `hmac_input: body`: the former signature, for receivers not updated yet.
    body = b'{"id": "n-1"}'
    headers = webhook_headers("n-1", body, now=1700000000.0, hmac_secret="s3cret",
                              hmac_input="body")
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Socd-Signature"] == f"sha256={expected}" == signature("s3cret", body)
    assert headers["X-Socd-Timestamp"] == "1700000000"


def test_webhook_headers_without_secrets() -> None:
    headers = webhook_headers("n-1", b"{}", now=0)
    assert "Authorization" not in headers
    assert "X-Socd-Signature" not in headers


# ------------------------------------------------------------------------- email --

def test_email_message() -> None:
    msg = build_message(sample_notification(), from_addr="SOC Tỉnh <soc@example.vn>",
                        to=["a@example.vn", "b@example.vn"], cc=["c@example.vn"],
                        subject_prefix="[SOC]")
    raw = msg.as_bytes()
    assert raw.isascii()  # RFC 2047 headers, quoted-printable bodies: 7-bit clean
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == f"[SOC] {TITLE}"
    assert str(make_header(decode_header(msg["Subject"]))) == f"[SOC] {TITLE}"
    assert parsed["Message-ID"] == "<socd.n-0123456789abcdef@example.vn>"
    assert parsed["X-Socd-Severity"] == "critical"
    assert parsed["X-Socd-Route"] == "critical-soc"
    assert parsed["Cc"] == "c@example.vn"
    assert parsed["Auto-Submitted"] == "auto-generated"
    plain = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n").rstrip("\n") == TEXT
    assert html is not None
    assert "<b>srv-01</b>" in html.get_content()


def test_email_without_html_is_single_part() -> None:
    msg = build_message(sample_notification(html=None), from_addr="soc@example.vn",
                        to=["a@example.vn"])
    assert msg.get_content_type() == "text/plain"


def test_email_subject_is_one_line() -> None:
    msg = build_message(sample_notification(title="dòng một\ndòng hai"),
                        from_addr="soc@x.vn", to=["a@x.vn"])
    assert str(make_header(decode_header(msg["Subject"]))) == "dòng một dòng hai"


def test_message_id_is_stable_and_safe() -> None:
    assert message_id("abc", "x.vn") == message_id("abc", "x.vn") == "<socd.abc@x.vn>"
    odd = message_id("a b<>@c", "x.vn")
    assert odd.startswith("<socd.")
    assert " " not in odd
    assert odd.count("@") == 1
    assert odd == message_id("a b<>@c", "x.vn")


@pytest.mark.parametrize(("code", "retryable"), [
    (421, True), (450, True), (451, True), (452, True), (454, True),
    (500, False), (535, False), (550, False), (552, False), (554, False),
])
def test_smtp_reply_retryable(code: int, retryable: bool) -> None:
    assert is_retryable_reply(code) is retryable
    err = smtp_error("email x", aiosmtplib.SMTPResponseException(code, "text"))
    assert err.retryable is retryable
    assert str(err) == f"email x: SMTP {code} text"


def test_smtp_errors_mapping() -> None:
    assert smtp_error("e", aiosmtplib.SMTPConnectError("refused")).retryable
    assert smtp_error("e", aiosmtplib.SMTPServerDisconnected("gone")).retryable
    assert smtp_error("e", aiosmtplib.SMTPReadTimeoutError("slow")).retryable
    assert smtp_error("e", ConnectionRefusedError(111, "refused")).retryable
    assert not smtp_error("e", aiosmtplib.SMTPNotSupported("no STARTTLS")).retryable
    assert not smtp_error("e", aiosmtplib.SMTPAuthenticationError(535, "bad")).retryable
    refused = aiosmtplib.SMTPRecipientsRefused([
        aiosmtplib.SMTPRecipientRefused(550, "no such user", "a@x.vn"),
        aiosmtplib.SMTPRecipientRefused(450, "mailbox busy", "b@x.vn")])
    err = smtp_error("e", refused)
    assert err.retryable
    assert "a@x.vn: 550" in str(err)


# ---------------------------------------------------------------------- telegram --

def test_telegram_text_escapes_html() -> None:
    text = telegram_text("<b>A & B</b>", "x < y > z & \"q\"")
    assert text == "<b>&lt;b&gt;A &amp; B&lt;/b&gt;</b>\nx &lt; y &gt; z &amp; \"q\""


def test_telegram_text_without_title() -> None:
    assert telegram_text(" ", "a & b") == "a &amp; b"


def test_telegram_text_truncates_to_4096_visible_characters() -> None:
    long_text = ("Cảnh báo <script> & " * 500)
    text = telegram_text(TITLE, long_text)
    visible = text.replace("<b>", "").replace("</b>", "").replace("&lt;", "<") \
        .replace("&gt;", ">").replace("&amp;", "&")
    assert common.utf16_len(visible) <= 4096
    assert common.utf16_len(visible) > 4000
    assert "…(+" in text
    dropped = int(text.rpartition("…(+")[2].rstrip(")"))
    kept = visible.split("\n", 1)[1].rpartition("…(+")[0]
    assert len(kept) + dropped == len(long_text)


def test_telegram_payload() -> None:
    payload = telegram_payload(sample_notification(), "-1001", message_thread_id=7)
    assert payload["chat_id"] == "-1001"
    assert payload["parse_mode"] == "HTML"
    assert payload["disable_web_page_preview"] is True
    assert payload["message_thread_id"] == 7
    assert payload["text"].startswith(f"<b>{TITLE}</b>\n")
    assert "&lt;Potential&gt;" in payload["text"]


@pytest.mark.parametrize(("status", "answer", "retryable", "after"), [
    (429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 9",
           "parameters": {"retry_after": 9}}, True, 9.0),
    (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
     False, None),
    (403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked"},
     False, None),
    (502, None, True, None),
    (500, {"ok": False, "error_code": 500, "description": "Internal"}, True, None),
])
def test_telegram_error_mapping(status: int, answer: Any, retryable: bool,
                                after: float | None) -> None:
    err = telegram_error("telegram t", status, answer, ["123:abc"])
    assert err.retryable is retryable
    assert err.retry_after == after


def test_telegram_migrated_group_is_explained_and_final() -> None:
    err = telegram_error("telegram t", 400, {
        "ok": False, "error_code": 400, "description": "Bad Request: group chat was upgraded",
        "parameters": {"migrate_to_chat_id": -1009}}, [])
    assert not err.retryable
    assert "set chat_id to -1009" in str(err)


def test_telegram_error_redacts_token() -> None:
    err = telegram_error("telegram t", 404, {"ok": False, "error_code": 404,
                                             "description": "Not Found /bot123:abc/x"},
                         ["123:abc"])
    assert "123:abc" not in str(err)


# -------------------------------------------------------------------------- chat --

def test_slack_payload_escapes_and_bolds() -> None:
    payload = slack_payload(sample_notification())
    assert payload == {"text": f"*{TITLE}*\n" + TEXT.replace("&", "&amp;")
                       .replace("<", "&lt;").replace(">", "&gt;"),
                       "unfurl_links": False, "unfurl_media": False}


def test_slack_payload_is_truncated() -> None:
    payload = slack_payload(sample_notification(text="x" * 100_000))
    assert len(payload["text"]) <= 39_000
    assert payload["text"].endswith(")")


def test_mattermost_payload() -> None:
    assert mattermost_payload(sample_notification()) == {"text": f"**{TITLE}**\n{TEXT}"}
    full = mattermost_payload(sample_notification(), username="socd", channel="soc",
                              icon_url="https://x/i.png")
    assert full["username"] == "socd"
    assert full["channel"] == "soc"
    assert full["icon_url"] == "https://x/i.png"


def test_teams_payload_is_a_workflows_adaptive_card() -> None:
    payload = teams_payload(sample_notification(2, total=7))
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["version"] == "1.4"
    title, facts, *lines = card["body"]
    assert title["text"] == TITLE
    assert title["color"] == "Attention"
    assert {f["title"]: f["value"] for f in facts["facts"]} == {
        "Mức độ": "nghiêm trọng", "Số cảnh báo": "7", "Tuyến": "critical-soc"}
    assert [b["text"] for b in lines] == TEXT.splitlines()


def test_teams_caps_the_number_of_blocks() -> None:
    text = "\n".join(f"dòng {i}" for i in range(500))
    card = teams_payload(sample_notification(text=text))["attachments"][0]["content"]
    assert len(card["body"]) == 2 + 60
    assert card["body"][-1]["text"].endswith("dòng 499")


# -------------------------------------------------------------------------- mqtt --

def test_expand_topic() -> None:
    assert expand_topic("soc/{severity}/{route}", severity="high", route="a/b+#") == \
        "soc/high/a_b__"
    assert expand_topic("soc/{route}", severity="low", route="") == "soc/_"
    assert expand_topic("soc/fixed", severity="low", route="x") == "soc/fixed"


# ------------------------------------------------------------------ alertmanager --

def test_alertmanager_alerts_labels_and_annotations() -> None:
    n = sample_notification(2, total=9)
    n.alerts[1]["socd"].pop("unit")
    n.alerts[1]["host"]["name"] = ""
    alerts = alertmanager_alerts(n, now=1_794_790_923.5, resolve_after_secs=3600,
                                 generator_url="https://kibana.example.vn/x",
                                 static_labels={"source": "socd", "severity": "ignored"})
    assert len(alerts) == 2
    first, second = alerts
    assert first["labels"] == {
        "alertname": "2001219", "severity": "critical", "severity_label": "nghiêm trọng",
        "unit": "Sở Tài chính", "layer": "2", "asset_kind": "server", "host": "srv-01",
        "rule_name": "ET SCAN Potential SSH Scan", "source": "socd"}
    assert "unit" not in second["labels"]
    assert "host" not in second["labels"]
    assert first["annotations"]["summary"] == TITLE
    assert first["annotations"]["description"] == \
        "SSH scan 1 (host srv-01, 203.0.113.9 → 10.10.20.11)"
    assert first["annotations"]["socd_id"] == f"h{1:039d}"
    assert first["annotations"]["ioc"] == "203.0.113.9"
    assert first["annotations"]["socd_total"] == "9"
    assert first["startsAt"] == "2026-11-16T01:02:01.000Z"
    assert first["endsAt"] == "2026-11-16T02:02:03.500Z"
    assert first["generatorURL"] == "https://kibana.example.vn/x"


def test_alertmanager_single_alert_uses_the_text_and_defaults() -> None:
    n = sample_notification(1)
    del n.alerts[0]["rule"]
    del n.alerts[0]["@timestamp"]
    (alert,) = alertmanager_alerts(n, now=0, resolve_after_secs=60)
    assert alert["labels"]["alertname"] == "socd_alert"
    assert alert["annotations"]["description"] == TEXT
    assert "socd_total" not in alert["annotations"]
    assert "startsAt" not in alert
    assert "generatorURL" not in alert


def test_alertmanager_future_start_is_dropped() -> None:
    n = sample_notification(1)
    n.alerts[0]["@timestamp"] = "2099-01-01T00:00:00Z"
    (alert,) = alertmanager_alerts(n, now=1_794_790_923.5, resolve_after_secs=60)
    assert "startsAt" not in alert


def test_alertmanager_without_alerts_sends_one() -> None:
    (alert,) = alertmanager_alerts(sample_notification(0, total=3), now=0,
                                   resolve_after_secs=60)
    assert alert["labels"] == {"alertname": "socd_alert", "severity": "critical",
                               "severity_label": "nghiêm trọng"}
    assert alert["annotations"]["socd_total"] == "3"


def test_alertmanager_long_label_values_are_bounded() -> None:
    n = sample_notification(1)
    n.alerts[0]["rule"]["name"] = "x" * 1000
    (alert,) = alertmanager_alerts(n, now=0, resolve_after_secs=60)
    assert len(alert["labels"]["rule_name"]) == 256


def test_notify_error_is_raised_type() -> None:
    assert isinstance(common.status_error("x", 500), NotifyError)
