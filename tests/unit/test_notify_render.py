"""Message templates: Vietnamese and English built-ins, fallback, operator overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from socd.notify.render import Renderer, suggested_action


def alert(i: int = 0, severity: str = "high", unit: str = "Sở Y tế",
          description: str = "Một địa chỉ kết nối tới 25 cổng đích khác nhau trong 2 phút.",
          ) -> dict[str, Any]:
    return {
        "@timestamp": f"2026-11-16T01:{i:02d}:03Z",
        "message": "Dò quét cổng (source.ip=203.0.113.9)",
        "event": {"kind": "alert", "hash": f"{i:04d}cafe0123456789abcdef"},
        "rule": {"id": "net-port-scan", "name": "Dò quét cổng", "description": description},
        "host": {"name": "srv-web-01"},
        "source": {"ip": "203.0.113.9", "port": 40000 + i},
        "destination": {"ip": "10.10.20.11", "port": 22},
        "socd": {"severity": severity, "layer": 2, "unit": unit, "asset_kind": "server",
                 "ioc": {"values": ["203.0.113.9"], "refs": ["941/CATTT-NCSC"]}},
    }


def render(renderer: Renderer, alerts: list[dict[str, Any]], total: int | None = None,
           **kw: Any) -> tuple[str, str, str | None]:
    return renderer.render(alerts, total=total or len(alerts), route="soc",
                           group={"rule.id": "net-port-scan"}, group_key="rule.id=net-port-scan",
                           **kw)


def test_single_alert_in_vietnamese() -> None:
    title, text, html = render(Renderer("vi"), [alert(severity="critical")])
    assert title == "[socd] Cảnh báo nghiêm trọng — Dò quét cổng (Sở Y tế, srv-web-01)"
    assert "\n" not in title
    for expected in (
        "NGHIÊM TRỌNG — Dò quét cổng",        # what happened
        "Đơn vị: Sở Y tế · Máy chủ srv-web-01",  # where: unit, asset kind, host
        "Lớp 2: Giám sát, bảo vệ chuyên nghiệp",  # the 4-layer model
        "203.0.113.9:40000 → 10.10.20.11:22",  # addresses and ports
        "16/11/2026 08:00:03 (giờ VN)",       # Asia/Ho_Chi_Minh time
        "Mô tả: Một địa chỉ kết nối",          # rule description
        "IoC: 203.0.113.9 (941/CATTT-NCSC)",   # IoC values and references
        "Hành động đề xuất: Xử lý ngay",        # suggested action for critical
        "Mã: 0000cafe0123",                    # short alert id
    ):
        assert expected in text, (expected, text)
    assert html is not None
    assert "Hành động đề xuất" in html


def test_digest_title_and_lines() -> None:
    alerts = [alert(i) for i in range(3)]
    title, text, _ = render(Renderer("vi"), alerts, total=12, repeated=2)
    # A digest names the host its alerts share, as a single alert's title always did.
    assert title == "[socd] 12 cảnh báo cao — Dò quét cổng (Sở Y tế, srv-web-01)"
    lines = text.splitlines()
    assert lines[0] == "🟠 12 cảnh báo cao — Dò quét cổng"
    items = [line for line in lines if line.startswith("•")]
    assert items == [f"• 08:0{i} srv-web-01 203.0.113.9:4000{i} → 10.10.20.11:22 #000{i}cafe0123"
                     for i in range(3)]
    assert "… và 9 cảnh báo khác" in text
    assert "(+2 cảnh báo lặp lại đã gộp)" in text
    assert "Lúc: 16/11/2026 08:00–08:02 (giờ VN)" in text


def test_digest_of_several_units_and_severities() -> None:
    alerts = [alert(0), alert(1, severity="critical", unit="Sở Tài chính")]
    title, text, _ = render(Renderer("vi"), alerts)
    assert title == "[socd] 2 cảnh báo nghiêm trọng — Dò quét cổng (2 đơn vị)"
    assert "[nghiêm trọng]" in text
    assert "(Sở Tài chính)" in text


def test_english() -> None:
    title, text, html = render(Renderer("en"), [alert(severity="medium")])
    assert title == "[socd] Medium alert — Dò quét cổng (Sở Y tế, srv-web-01)"
    assert "Suggested action: Verify during working hours" in text
    assert "Layer 2: professional monitoring" in text
    assert html is not None
    assert "Suggested action" in html


def test_every_severity_has_a_default_action() -> None:
    for lang in ("vi", "en"):
        texts = {sev: suggested_action({}, sev, lang)
                 for sev in ("low", "medium", "high", "critical")}
        assert len(set(texts.values())) == 4
    assert "5 ngày" in suggested_action({}, "critical", "vi")  # reporting deadline


def test_rule_response_and_block_action_come_first() -> None:
    event = alert()
    event["socd"]["response"] = {"vi": "Gỡ webshell và đổi mật khẩu.", "en": "Remove it."}
    event["socd"]["actions"] = {"block": [{"value": "203.0.113.9", "ttl_secs": 86400}]}
    assert suggested_action(event, "high", "vi") == (
        "Chặn theo quy tắc: 203.0.113.9 (1 ngày). Gỡ webshell và đổi mật khẩu.")


def test_html_is_escaped_and_text_is_not() -> None:
    event = alert(description="<script>alert(1)</script> & co")
    _, text, html = render(Renderer("vi"), [event])
    assert "<script>alert(1)</script> & co" in text
    assert html is not None
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_operator_template_overrides_builtin(tmp_path: Path) -> None:
    (tmp_path / "title.vi.j2").write_text(
        "SOC {{ first.unit }}: {{ total }} × {{ first.rule_id }}\n{{ 'line two' }}\n",
        encoding="utf-8")
    title, text, _ = render(Renderer("vi", str(tmp_path)), [alert()])
    assert title == "SOC Sở Y tế: 1 × net-port-scan line two"  # always one line
    assert text.startswith("🟠 CAO")  # text.vi.j2 still the built-in one


def test_broken_vietnamese_template_falls_back_to_english_once(tmp_path: Path) -> None:
    (tmp_path / "text.vi.j2").write_text("{% if %}broken", encoding="utf-8")
    renderer = Renderer("vi", str(tmp_path))
    with capture_logs() as logs:
        _, text1, _ = render(renderer, [alert()])
        _, text2, _ = render(renderer, [alert(1)])
    assert text1.startswith("🟠 HIGH — Dò quét cổng")
    assert "Suggested action" in text2
    warnings = [e for e in logs if e["event"].startswith("notification template unusable")]
    assert len(warnings) == 1
    assert warnings[0]["template"] == "text.vi.j2"
    assert renderer.problems()
    assert "text.vi.j2" in renderer.problems()[0]


def test_template_failing_at_render_time_falls_back(tmp_path: Path) -> None:
    (tmp_path / "title.vi.j2").write_text("{{ 1 / 0 }}", encoding="utf-8")
    title, _, _ = render(Renderer("vi", str(tmp_path)), [alert()])
    assert title == "[socd] High alert — Dò quét cổng (Sở Y tế, srv-web-01)"


def test_sandbox_blocks_python_internals(tmp_path: Path) -> None:
    (tmp_path / "text.vi.j2").write_text(
        "{{ first.event.__class__.__mro__[1].__subclasses__() }}", encoding="utf-8")
    _, text, _ = render(Renderer("vi", str(tmp_path)), [alert()])
    assert "subclasses" not in text
    assert "Suggested action" in text


def test_plain_fallback_when_every_template_fails(tmp_path: Path) -> None:
    for lang in ("vi", "en"):
        (tmp_path / f"text.{lang}.j2").write_text("{% broken", encoding="utf-8")
        (tmp_path / f"title.{lang}.j2").write_text("{% broken", encoding="utf-8")
    title, text, _ = render(Renderer("vi", str(tmp_path)), [alert(0), alert(1)], total=5)
    assert title == "[socd] 5 alert(s) high — Dò quét cổng"
    assert "+3 more" in text
    assert "0000cafe0123" in text


def test_missing_fields_render_empty() -> None:
    event = {"event": {"kind": "alert"}, "socd": {"severity": "low"}}
    title, text, html = render(Renderer("vi"), [copy.deepcopy(event)])
    assert title == "[socd] Cảnh báo thấp —"
    assert "Hành động đề xuất: Theo dõi" in text
    assert html is not None


def test_builtin_templates_have_no_problems() -> None:
    assert Renderer("vi").problems() == []
    assert Renderer("en").problems() == []
