"""Word (.docx) documents in the official layout, with python-docx.

Agencies edit and sign in Word, so the .docx is a real document, not a picture of one:
the letterhead and the signature block are two-column borderless Word tables, the data
tables are Word tables with a repeated header row, text is in the configured font and
size on A4 with the decree's margins. Both the reports (:mod:`socd.reports.render`)
and the incident documents (:mod:`socd.incidents.documents`) describe their body as a
list of :data:`Block` and call :func:`write`; the fixed parts come from a
:class:`~socd.reports.official.Letterhead`, the same one the HTML/PDF prints.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from socd.reports.official import Letterhead

# A4 and the decree's margins (top/bottom 20-25 mm, left 30-35 mm, right 15-20 mm).
PAGE_MM = (210, 297)
MARGINS_MM = {"top": 20, "bottom": 20, "left": 30, "right": 15}
TEXT_WIDTH_MM = PAGE_MM[0] - MARGINS_MM["left"] - MARGINS_MM["right"]
LEFT_COLUMN_MM = 62  # the letterhead's left block (issuing body, number)
TABLE_FONT_PT = 10.5
RECIPIENT_FONT_PT = 11
HEADER_FONT_PT = 12.5
# Characters XML 1.0 cannot hold (C0 controls but tab and newline, lone surrogates,
# U+FFFE/U+FFFF): python-docx refuses them, and event fields (a host name, a rule name, a
# command line) can carry any of them. Each becomes U+FFFD, so the reader sees one was
# there.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """``text`` with what XML cannot hold replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


@dataclass(frozen=True, slots=True)
class Heading:
    text: str


@dataclass(frozen=True, slots=True)
class Para:
    text: str
    italic: bool = False


@dataclass(frozen=True, slots=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True, slots=True)
class Grid:
    """A data table: headers (none: a key-value table) and already formatted cells."""

    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    numeric: frozenset[int] = field(default_factory=frozenset)  # right-aligned columns


@dataclass(frozen=True, slots=True)
class Picture:
    png: bytes
    width_mm: float = TEXT_WIDTH_MM


Block = Heading | Para | Bullets | Grid | Picture


def write(head: Letterhead, blocks: Sequence[Block]) -> bytes:
    """The .docx bytes: letterhead, title, ``blocks``, recipients and signature."""
    from docx import Document

    doc = Document()
    _page(doc, head)
    _letterhead(doc, head)
    _title(doc, head)
    for block in blocks:
        _block(doc, block)
    _signature(doc, head)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def _page(doc: Any, head: Letterhead) -> None:
    from docx.oxml.ns import qn
    from docx.shared import Mm, Pt

    section = doc.sections[0]
    section.page_width, section.page_height = Mm(PAGE_MM[0]), Mm(PAGE_MM[1])
    for side, mm in MARGINS_MM.items():
        setattr(section, f"{side}_margin", Mm(mm))
    normal = doc.styles["Normal"]
    normal.font.name = head.font_family
    normal.font.size = Pt(head.font_size_pt)
    fonts = normal.element.get_or_add_rPr().get_or_add_rFonts()
    for attr in ("w:eastAsia", "w:cs"):  # Word picks these for some scripts
        fonts.set(qn(attr), head.font_family)
    normal.paragraph_format.space_after = Pt(3)
    normal.paragraph_format.space_before = Pt(0)
    _page_numbers(section)


def _page_numbers(section: Any) -> None:
    """The page number centred at the top, from the second page on (the decree)."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    section.different_first_page_header_footer = True
    p = section.header.paragraphs[0]
    _para_align(p, "center")
    field = OxmlElement("w:fldSimple")
    field.set(qn("w:instr"), "PAGE")
    p._p.append(field)


def _para_align(p: Any, align: str) -> None:
    from docx.enum.text import WD_ALIGN_PARAGRAPH

    p.alignment = {"center": WD_ALIGN_PARAGRAPH.CENTER, "left": WD_ALIGN_PARAGRAPH.LEFT,
                   "right": WD_ALIGN_PARAGRAPH.RIGHT,
                   "justify": WD_ALIGN_PARAGRAPH.JUSTIFY}[align]


def _para(container: Any, text: str = "", *, bold: bool = False, italic: bool = False,
          underline: bool = False, size: float | None = None, align: str = "center") -> Any:
    """A paragraph with one run; ``align`` is center, left, right or justify."""
    from docx.shared import Pt

    p = container.add_paragraph()
    _para_align(p, align)
    p.paragraph_format.space_after = Pt(0)
    if text:
        run = p.add_run(xml_text(text))
        # only what is on: an explicit "off" would override a style the editor applies
        run.bold, run.italic, run.underline = bold or None, italic or None, underline or None
        if size is not None:
            run.font.size = Pt(size)
    return p


def _rule(cell: Any, cell_mm: float, length_mm: float) -> None:
    """A short centred line: an empty paragraph whose bottom border spans only between
    its indents (how Word draws the rule under the issuing body and the motto)."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Mm, Pt

    p = _para(cell)
    indent = Mm(max(0.0, (cell_mm - length_mm) / 2))
    p.paragraph_format.left_indent = p.paragraph_format.right_indent = indent
    p.paragraph_format.space_after = Pt(4)
    run = p.add_run()
    run.font.size = Pt(2)
    borders = OxmlElement("w:pBdr")
    bottom = OxmlElement("w:bottom")
    for key, value in (("w:val", "single"), ("w:sz", "6"), ("w:space", "1"),
                       ("w:color", "000000")):
        bottom.set(qn(key), value)
    borders.append(bottom)
    p._p.get_or_add_pPr().append(borders)


def _two_columns(doc: Any, rows: int) -> tuple[Any, float, float]:
    """A borderless table of two columns (the left one :data:`LEFT_COLUMN_MM` wide)."""
    from docx.shared import Mm

    table = doc.add_table(rows=rows, cols=2)
    table.autofit = False
    right = TEXT_WIDTH_MM - LEFT_COLUMN_MM
    # the grid (what Word's fixed layout follows) and each cell (what other editors read)
    table.columns[0].width, table.columns[1].width = Mm(LEFT_COLUMN_MM), Mm(right)
    for row in table.rows:
        row.cells[0].width, row.cells[1].width = Mm(LEFT_COLUMN_MM), Mm(right)
    return table, float(LEFT_COLUMN_MM), float(right)


def _first(cell: Any) -> Any:
    """A new cell's own empty paragraph, removed so the cell starts with ours."""
    for p in list(cell.paragraphs):
        p._p.getparent().remove(p._p)
    return cell


def _letterhead(doc: Any, head: Letterhead) -> None:
    table, left_mm, right_mm = _two_columns(doc, 2)
    left, right = _first(table.cell(0, 0)), _first(table.cell(0, 1))
    if head.parent_body:
        _para(left, head.parent_body, size=HEADER_FONT_PT)
    _para(left, head.issuing_body, bold=True, size=HEADER_FONT_PT)
    _rule(left, left_mm, left_mm / 3)
    _para(right, head.national_name, bold=True, size=HEADER_FONT_PT)
    _para(right, head.motto, bold=True)
    _rule(right, right_mm, right_mm * 0.55)
    _para(_first(table.cell(1, 0)), head.number_line)
    _para(_first(table.cell(1, 1)), head.date_line, italic=True)


def _title(doc: Any, head: Letterhead) -> None:
    from docx.shared import Pt

    first = _para(doc)
    first.paragraph_format.space_before = Pt(12)
    size = head.font_size_pt + 1
    if head.doc_type:
        first.add_run(xml_text(head.doc_type)).bold = True
        first.runs[0].font.size = Pt(size)
        _para(doc, head.title, bold=True, size=size)
    else:
        run = first.add_run(xml_text(head.title))
        run.bold, run.font.size = True, Pt(size)
    if head.subtitle:
        _para(doc, head.subtitle, bold=True)
    for i, addressee in enumerate(head.addressees):
        _para(doc, (f"{head.addressee_label} " if i == 0 else "") + addressee)
    _para(doc).paragraph_format.space_after = Pt(6)


def _block(doc: Any, block: Block) -> None:
    from docx.shared import Mm, Pt

    if isinstance(block, Heading):
        p = _para(doc, block.text, bold=True, align="left")
        p.paragraph_format.space_before = Pt(8)
        p.paragraph_format.keep_with_next = True
    elif isinstance(block, Para):
        _para(doc, block.text, italic=block.italic, align="justify").paragraph_format \
            .space_after = Pt(3)
    elif isinstance(block, Bullets):
        for item in block.items:
            doc.add_paragraph(xml_text(item), style="List Bullet")
    elif isinstance(block, Picture):
        doc.add_picture(io.BytesIO(block.png), width=Mm(block.width_mm))
    else:
        _grid(doc, block)


def _grid(doc: Any, grid: Grid) -> None:
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Pt

    skip = 1 if grid.headers else 0  # key-value tables have no header row
    table = doc.add_table(rows=skip + len(grid.rows),
                          cols=len(grid.headers) or len(grid.rows[0]), style="Table Grid")
    if grid.headers:
        header = table.rows[0]
        repeat = OxmlElement("w:tblHeader")  # the header row is repeated on each page
        repeat.set(qn("w:val"), "true")
        header._tr.get_or_add_trPr().append(repeat)
        for i, text in enumerate(grid.headers):
            _cell(header.cells[i], text, bold=True, align="center")
    for r, row in enumerate(grid.rows, start=skip):
        cells = table.rows[r].cells
        for i, text in enumerate(row):
            _cell(cells[i], text, align="right" if i in grid.numeric else "left")
    _para(doc).paragraph_format.space_after = Pt(4)


def _cell(cell: Any, text: str, *, bold: bool = False, align: str) -> None:
    _para(_first(cell), text, bold=bold, size=TABLE_FONT_PT, align=align)


def _signature(doc: Any, head: Letterhead) -> None:
    from docx.shared import Pt

    _para(doc)
    table, _, _ = _two_columns(doc, 1)
    left, right = _first(table.cell(0, 0)), _first(table.cell(0, 1))
    _para(left, head.recipients_label, bold=True, italic=True, size=12, align="left")
    for line in head.recipients:
        _para(left, line, size=RECIPIENT_FONT_PT, align="left")
    for line in head.signer_title:
        _para(right, line, bold=True)
    for _ in range(4):  # the signature space
        _para(right).paragraph_format.space_after = Pt(6)
    _para(right, head.signer_name, bold=True)
