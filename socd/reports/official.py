"""The official layout of administrative documents (Decree 30/2020/NĐ-CP), shared by the
reports (:mod:`socd.reports.render`) and the incident documents
(:mod:`socd.incidents.documents`).

:func:`letterhead` turns the ``documents:`` section, a number and a date into a
:class:`Letterhead`: every fixed part already as the text printed (capitals, the
``Số:`` line, the date line with the decree's zero padding, the recipients with their
punctuation), so the HTML macro (``templates/official.html.j2``) and the Word writer
(:mod:`socd.reports.docx`) only place them and cannot disagree on a word.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Final, Literal

from socd.reports.vn import nfc

if TYPE_CHECKING:
    from socd.config.documents import DocumentsConfig

NATIONAL_NAME: Final = "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM"
MOTTO: Final = "Độc lập - Tự do - Hạnh phúc"
RECIPIENTS_LABEL: Final = "Nơi nhận:"
ADDRESSEE_LABEL: Final = "Kính gửi:"
REPORT_TYPE: Final = "BÁO CÁO"
# A number not given is left blank for the clerk (văn thư), who numbers an outgoing
# document when registering it: no-break spaces, so HTML keeps the gap.
BLANK_NUMBER: Final = "\u00a0" * 8
# The PDF's fonts after the configured one: Liberation Serif has Times New Roman's
# metrics, DejaVu Serif (fonts-dejavu-core, always installed with socd's PDF support)
# has every Vietnamese glyph.
FALLBACK_FONTS: Final = ("Liberation Serif", "DejaVu Serif")

DocumentKind = Literal["report", "incident"]
MAX_NUMBER = 20


def document_number(text: str) -> str:
    """A document number as given on the command line (``--number``): 1-20 letters,
    digits and ``.-/``. The argparse ``type`` of the commands' ``--number``: its
    :class:`argparse.ArgumentTypeError` is a usage error with this message."""
    import argparse

    value = text.strip()
    if not value or len(value) > MAX_NUMBER or not all(
            ch.isalnum() or ch in ".-/" for ch in value):
        raise argparse.ArgumentTypeError(
            f"a document number is 1-{MAX_NUMBER} letters, digits, '.', '-' or '/', not "
            f"{text[:40]!r}")
    return value


@dataclass(frozen=True, slots=True)
class Letterhead:
    """The fixed parts of one document, as printed."""

    parent_body: str
    issuing_body: str
    number_line: str
    date_line: str
    doc_type: str  # "BÁO CÁO", or empty when the title says it already
    title: str
    subtitle: str
    addressees: tuple[str, ...]
    recipients: tuple[str, ...]  # "- Như trên;" ... "- Lưu: VT."
    signer_title: tuple[str, ...]
    signer_name: str
    font_family: str
    font_size_pt: float
    national_name: str = NATIONAL_NAME
    motto: str = MOTTO
    recipients_label: str = RECIPIENTS_LABEL
    addressee_label: str = ADDRESSEE_LABEL

    @property
    def css_fonts(self) -> str:
        """The CSS ``font-family`` list: the configured font, then the fallbacks. Safe in a
        style sheet: the config allows only letters, digits, spaces, dots and hyphens."""
        names = [self.font_family, *(f for f in FALLBACK_FONTS if f != self.font_family)]
        return ", ".join(f'"{n}"' for n in names) + ", serif"


def date_line(place: str, day: date) -> str:
    """``<place>, ngày dd tháng m năm yyyy`` as the decree writes it: a day below 10 and
    the months 1 and 2 take a leading zero (``ngày 05 tháng 02``), other months do not
    (``tháng 3``, ``tháng 12``)."""
    month = f"{day.month:02d}" if day.month < 3 else str(day.month)
    return nfc(f"{place}, ngày {day.day:02d} tháng {month} năm {day.year}")


def number_line(pattern: str, number: str | None, type_code: str, code: str) -> str:
    """The ``Số:`` line; the number blank (for the clerk) when not given."""
    text = (number or "").strip() or BLANK_NUMBER
    return nfc(pattern.format(number=text, type=type_code, code=code))


def recipient_lines(recipients: list[str]) -> tuple[str, ...]:
    """``- <text>;`` each, the last ending in ``.`` (trailing punctuation written in the
    config is replaced, so ``Như trên;`` and ``Như trên`` print the same)."""
    items = [r.strip().rstrip(";.,").strip() for r in recipients]
    return tuple(f"- {r}{'.' if i == len(items) - 1 else ';'}" for i, r in enumerate(items))


def letterhead(config: DocumentsConfig, kind: DocumentKind, *, title: str, when: datetime,
               number: str | None = None, doc_type: str = REPORT_TYPE,
               subtitle: str = "") -> Letterhead:
    """The fixed parts of a report (``kind="report"``) or an incident document dated
    ``when`` (an aware time: its own date is printed, so pass it in the document's zone).
    """
    type_code = config.report_type_code if kind == "report" else config.incident_type_code
    return Letterhead(
        parent_body=nfc(config.parent_body.upper()),
        issuing_body=nfc(config.issuing_body.upper()),
        number_line=number_line(config.number_pattern, number, type_code, config.issuer_code),
        date_line=date_line(config.place, when.date()),
        doc_type=nfc(doc_type.upper()),
        title=nfc(title),
        subtitle=nfc(subtitle),
        addressees=tuple(nfc(a) for a in config.addressees),
        recipients=tuple(nfc(r) for r in recipient_lines(config.recipients)),
        signer_title=tuple(nfc(t.upper()) for t in config.signer_title),
        signer_name=nfc(config.signer_name),
        font_family=config.font_family,
        font_size_pt=config.font_size_pt,
    )
