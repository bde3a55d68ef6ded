"""The ``documents:`` section: the fixed parts of the official layout (Decree 30/2020/NĐ-CP)
that reports and incident documents carry when they leave the SOC.

One section for both kinds of document, so the issuing body, the signer and the
recipients are written once (docs/reports.md, docs/incidents.md). The national name and
the motto are fixed by the decree and not configurable; everything the agency decides is.
The defaults name no province: ``……`` marks what an operator must fill in (the decree's
own forms use the same dots), the rest are the usual texts of a provincial SOC.
"""

from __future__ import annotations

import string

from pydantic import Field, field_validator

from socd.config.models import StrictModel

NUMBER_FIELDS = frozenset({"number", "type", "code"})
PLACEHOLDER = "……"
# The fields whose shipped values (deploy/systemd/socd.yaml, the defaults) are dots.
_PLACEHOLDER_FIELDS = ("parent_body", "issuing_body", "place")


class DocumentsConfig(StrictModel):
    """Letterhead, numbering and signature block of the reports and incident documents."""

    parent_body: str = Field(
        "UBND TỈNH ……", max_length=200, description="Top left, first line: the parent "
        "body (cơ quan chủ quản) in capitals, e.g. `UBND TỈNH BÌNH ĐỊNH`. Empty: none.")
    issuing_body: str = Field(
        "TRUNG TÂM GIÁM SÁT AN TOÀN, AN NINH MẠNG", min_length=1, max_length=200,
        description="Top left, in bold under the parent body: the issuing body (cơ quan "
        "ban hành) in capitals, e.g. `SỞ KHOA HỌC VÀ CÔNG NGHỆ`.")
    issuer_code: str = Field(
        "TTGS", min_length=1, max_length=40, description="The issuing body's short code in "
        "the number line (`Số: 12/BC-TTGS`).")
    report_type_code: str = Field(
        "BC", min_length=1, max_length=10, description="Type code of the weekly, monthly "
        "and six-monthly reports (BC = báo cáo).")
    incident_type_code: str = Field(
        "BC", min_length=1, max_length=10, description="Type code of the incident documents "
        "(the initial notification and the final report are báo cáo under Circular 20; "
        "set e.g. `TB` if the agency registers them as thông báo).")
    number_pattern: str = Field(
        "Số: {number}/{type}-{code}", min_length=1, max_length=100,
        description="The number line; `{number}` is the document's number (`--number`, "
        "else a blank the clerk fills in when registering the outgoing document), `{type}` "
        "the type code, `{code}` `issuer_code`.")
    place: str = Field(
        "……", min_length=1, max_length=100, description="The place in the date line "
        "(`<place>, ngày 06 tháng 12 năm 2026`), the province or city, e.g. `Bình Định`.")
    addressees: list[str] = Field(
        default_factory=list, description="`Kính gửi:` line(s) under the title; empty: "
        "none (a report usually has none; its recipients are under `Nơi nhận`).")
    recipients: list[str] = Field(
        default_factory=lambda: ["Như trên", "Lưu: VT, TTGS"], min_length=1,
        description="Bottom left, under `Nơi nhận:`; each printed as `- <text>;`, the last "
        "ending in `.`.")
    signer_title: list[str] = Field(
        default_factory=lambda: ["GIÁM ĐỐC"], min_length=1, max_length=4,
        description="Bottom right, bold capitals, one line each, e.g. `[KT. GIÁM ĐỐC, PHÓ "
        "GIÁM ĐỐC]`.")
    signer_name: str = Field(
        "", max_length=100, description="The signer's full name under the signature space; "
        "empty: left for a hand-written name.")
    font_family: str = Field(
        "Times New Roman", min_length=1, max_length=100, pattern=r"^[\w][\w .-]*$",
        description="Font of the documents "
        "(the decree: Times New Roman). The PDF falls back to Liberation Serif, then DejaVu "
        "Serif (Debian fonts-dejavu-core), which have the Vietnamese glyphs, when it is "
        "not installed; the .docx names it and Word substitutes.")
    font_size_pt: float = Field(13.0, ge=13, le=14, description="Body text size in points "
                                "(the decree: 13-14).")

    @field_validator("number_pattern")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a valid pattern ({exc}); write braces as {{{{ }}}}") from None
        unknown = names - NUMBER_FIELDS
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}: the pattern may "
                             "contain {number}, {type} and {code}")
        if "number" not in names:
            raise ValueError("the pattern must contain {number}")
        return value

    @field_validator("addressees", "recipients", "signer_title")
    @classmethod
    def _lines(cls, value: list[str]) -> list[str]:
        if any(not line.strip() or len(line) > 200 for line in value):
            raise ValueError("each line must be 1-200 characters, not blank")
        return value


def placeholder_warnings(documents: DocumentsConfig) -> list[tuple[tuple[str, ...], str, str]]:
    """``(key path, message, hint)`` for each letterhead field that still holds the
    ``……`` of the shipped config: every report and incident notice would print the dots
    where the province's name belongs. A warning, not an error: the daemon works, only
    the documents that leave the SOC are not ready."""
    out: list[tuple[tuple[str, ...], str, str]] = []
    for name in _PLACEHOLDER_FIELDS:
        value = getattr(documents, name)
        if PLACEHOLDER in value:
            example = {"parent_body": "UBND TỈNH BÌNH ĐỊNH", "place": "Bình Định"}.get(
                name, "SỞ KHOA HỌC VÀ CÔNG NGHỆ")
            out.append((("documents", name),
                        f"still the placeholder {value!r}: reports and incident documents "
                        "would print the dots in the official layout",
                        f"write the agency's own text, e.g. `{name}: {example}`"))
    return out
