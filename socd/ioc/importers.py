"""Reading IoC feeds into :class:`~socd.ioc.store.Entry` lists.

Formats: plain text, CSV, XLSX, IPsum, STIX 2.1 bundles and MISP event JSON. Every
parser returns ``(entries, rejected)`` where ``rejected`` lists
``(where, reason)`` for each input item that was not turned into an entry
(malformed value, unsupported STIX pattern, MISP attribute of another type...).
Nothing is ever dropped silently.

Reference (``ref``): an entry's own reference (a ``# ref:`` comment line, a CSV
column, STIX ``external_references``, a letter number in a MISP event's info or
tags) wins; ``Options.ref`` is used for entries without one, and failing that
the source name.
"""

from __future__ import annotations

import calendar
import codecs
import csv
import io
import os
import re
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from socd import netaddr
from socd.ioc.allowlist import Allowlist
from socd.ioc.normalize import IndicatorError, normalize
from socd.ioc.store import Entry
from socd.tz import parse_iso

Rejected = list[tuple[str, str]]
Parsed = tuple[list[Entry], Rejected]

_REF_LINE = re.compile(
    r"^#\s*(?:source\s+)?(?:reference|ref|letter|công văn)\s*[:=]\s*(.+)$", re.IGNORECASE)
# A letter number, "941/CATTT-NCSC". It starts where a run of digits starts: from any
# digit of a long run, as a plain search tries, the run was read again each time
# (quadratic: 8 s for 64 KiB of digits in a MISP Event.info). The matches are the same.
LETTER = re.compile(r"(?<!\d)\d+/[\w.-]*[A-Za-zĐđ][\w.-]*")


@dataclass(frozen=True)
class Options:
    """What the caller knows about the batch (from the CLI)."""

    source: str
    ref: str = ""
    confidence: int = 50
    expires: int | None = None  # Unix seconds
    tags: tuple[str, ...] = ()
    now: int = 0  # 0 = time.time()

    def clock(self) -> int:
        return self.now or int(time.time())


def parse_time(value: Any) -> int | None:
    """Unix seconds from ISO 8601 (date or date-time), dd/mm/yyyy, or epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text)
    if m:
        d, mo, y = (int(g) for g in m.groups())
        return calendar.timegm((y, mo, d, 0, 0, 0))
    try:
        return int(parse_iso(text).timestamp())  # without an offset: UTC
    except ValueError as exc:
        raise ValueError(f"not a date: {value!r}") from exc


# Spaces after the number belong to one quantifier only: "\s*([smhdw]?)\s*" let two
# share them, quadratic in a long run of spaces before junk.
_DURATION = re.compile(r"\s*(\d+)\s*(?:([smhdw])\s*)?")


def parse_duration(text: str) -> int:
    """Seconds from ``30d``, ``12h``, ``90m``, ``2w`` or plain seconds."""
    m = _DURATION.fullmatch(text)
    if not m:
        raise ValueError(f"not a duration: {text[:80]!r} (use e.g. 30d, 12h, 2w)")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[m.group(2) or ""]
    return int(m.group(1)) * unit


def _entry(opts: Options, value: str, kind: str | None = None, *, ref: str = "",
           confidence: int | None = None, first_seen: int | None = None,
           last_seen: int | None = None, expires: int | None = None,
           tags: Iterable[str] = ()) -> Entry:
    k, v = normalize(value, kind)
    conf = opts.confidence if confidence is None else confidence
    if not 0 <= conf <= 100:
        raise IndicatorError(f"confidence {conf} is not within 0-100")
    return Entry(k, v, opts.source, ref or opts.ref or opts.source, int(conf), first_seen,
                 last_seen, expires if expires is not None else opts.expires,
                 tuple(dict.fromkeys((*opts.tags, *tags))))


# -- plain text ----------------------------------------------------------------------


def parse_text(lines: Iterable[str], opts: Options) -> Parsed:
    """One indicator a line (first word), ``#`` comments; kind detected per value.
    Defanged values and URLs are read as :func:`indicator` reads them.

    A comment ``# ref: 1298/CATTT-NCSC`` (also ``# Source reference: công văn ...``,
    ``# letter = ...``) sets the reference of the lines below it.
    """
    entries: list[Entry] = []
    rejected: Rejected = []
    ref = ""
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":  # _REF_LINE starts with one
            m = _REF_LINE.match(line)
            if m:
                letter = LETTER.search(m.group(1))
                ref = letter.group(0) if letter else m.group(1).strip()
                continue
        words = (line.split("#", 1)[0] if "#" in line else line).split()
        if not words:
            continue
        try:
            entries.append(indicator(opts, words[0], ref=ref))
        except IndicatorError as exc:
            rejected.append((f"line {n}: {words[0][:80]}", str(exc)))
    return merged(entries), rejected


def load_text_lists(paths: Iterable[str], allowlist: Allowlist | None = None,
                    ) -> tuple[list[Entry], list[tuple[Entry, str]]]:
    """The plain-text lists of ``classification.ioc_files`` (source and default
    reference: the file name); returns (entries, entries refused by the allowlist).
    Lines that are not indicators are skipped, as they always were."""
    entries: list[Entry] = []
    refused: list[tuple[Entry, str]] = []
    for path in paths:
        name = os.path.basename(path)
        with open(path, encoding="utf-8") as fh:
            found, _ = parse_text(fh, Options(source=name, ref=name))
        for entry in found:
            reason = allowlist.reason(entry.kind, entry.value) if allowlist else None
            if reason is None:
                entries.append(entry)
            else:
                refused.append((entry, reason))
    return entries, refused


# -- IPsum -------------------------------------------------------------------------------


def parse_ipsum(lines: Iterable[str], opts: Options, *, min_count: int = 1) -> Parsed:
    """``IP<TAB>count`` (count = number of blacklists naming the IP).

    confidence = min(100, count * 10); lines with count < ``min_count`` are left
    out (reported in ``rejected``, as one summary line).
    """
    entries: list[Entry] = []
    rejected: Rejected = []
    below = 0
    ref = opts.ref or "IPsum"
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            rejected.append((f"line {n}: {line[:80]}", "expected 'IP<TAB>count'"))
            continue
        count = int(parts[1])
        if count < min_count:
            below += 1
            continue
        try:
            entries.append(_entry(opts, parts[0], "ip", ref=ref,
                                  confidence=min(100, count * 10), tags=(f"lists:{count}",)))
        except IndicatorError as exc:
            rejected.append((f"line {n}: {parts[0][:80]}", str(exc)))
    if below:
        rejected.append((f"{below} lines", f"count below --min-count {min_count}"))
    return entries, rejected


# -- defanged values and URLs ------------------------------------------------------------

# Letters and reports "defang" indicators so that nobody clicks them: evil[.]example,
# hxxp://, 1.2.3[.]4, [:] in IPv6. Every importer reads them back (refang) first.
_DEFANG_DOT = re.compile(r"\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\}", re.IGNORECASE)
_DEFANG_SEP = re.compile(r"\[(://|:|/)\]|\((://|:|/)\)|\{(://|:|/)\}")
_DEFANG_SCHEME = re.compile(r"^(?:h[x*]{2}p(s?)|(f)xp)://", re.IGNORECASE)
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_IPV4_PORT = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$")
_IPV6_PORT = re.compile(r"^\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?$")
URL_TAG = "url:"
_MAX_URL_TAG = 500


def refang(value: str) -> str:
    """The plain spelling of a defanged indicator: ``[.]`` ``(.)`` ``{.}`` ``[dot]`` become
    ``.``, ``[:]`` ``[://]`` ``[/]`` lose their brackets, ``hxxp(s)``/``fxp`` become
    ``http(s)``/``ftp``; invisible characters (zero-width spaces from spreadsheets) and
    surrounding white space go."""
    text = value.translate(_INVISIBLE).strip()
    text = _DEFANG_DOT.sub(".", text)
    text = _DEFANG_SEP.sub(lambda m: next(g for g in m.groups() if g), text)
    return _DEFANG_SCHEME.sub(lambda m: ("ftp" if m.group(2) else f"http{m.group(1)}") + "://",
                              text)


def url_host(text: str) -> str | None:
    """The host of a URL (``http://host:port/path``, or ``host/path`` without a scheme),
    None when ``text`` is not one. An address or CIDR (``192.0.2.0/24``) is not a URL.
    Raises :class:`IndicatorError` for a URL without a readable host."""
    if _URL.match(text):
        try:
            host = urlsplit(text).hostname
        except ValueError as exc:
            raise IndicatorError(f"not a URL ({exc}): {text[:80]!r}") from None
        if not host:
            raise IndicatorError(f"URL without a host: {text[:80]!r}")
        return host
    head, slash, _ = text.partition("/")
    if not slash or not head or netaddr.is_address(head) or ":" in head.rstrip("0123456789"):
        return None
    host = head.rpartition("@")[2]
    return host.rsplit(":", 1)[0] if host.rpartition(":")[2].isdigit() else host


def _without_port(text: str) -> str:
    """``192.0.2.1:4444`` and ``[2001:db8::1]:443`` (letters list C2 servers so): the
    address alone."""
    m = _IPV4_PORT.match(text) or _IPV6_PORT.match(text)
    return m.group(1) if m else text


def indicator(opts: Options, raw: str, kind: str | None = None, **fields: Any) -> Entry:
    """One entry from a value as a letter writes it: defanged or not, a URL (its host
    becomes the entry, the URL a ``url:`` tag since the store has no URL kind), an address
    with a port. ``kind`` "url" means: detect the host's kind."""
    if kind not in ("hash", "domain") and netaddr.is_dotted_quad(raw):
        # Most lines of a blocklist: neither defanged, a URL nor with a port; the paths
        # below would answer this same entry, a hundred thousand lines a second slower.
        return _entry(opts, raw, "ip", **fields)
    text = refang(raw)
    if kind != "hash":
        host = url_host(text)
        if host is not None:
            tags = (*fields.pop("tags", ()), URL_TAG + text[:_MAX_URL_TAG])
            host_kind = "ip" if netaddr.is_address(host) else "domain"
            return _entry(opts, host, host_kind, tags=tags, **fields)
        text = _without_port(text)
    return _entry(opts, text, None if kind == "url" else kind, **fields)


def merged(entries: Iterable[Entry]) -> list[Entry]:
    """One entry per (kind, value): a later row wins, tags are united (several URLs of one
    host each leave their ``url:`` tag)."""
    out: dict[tuple[str, str], Entry] = {}
    for e in entries:
        old = out.get((e.kind, e.value))
        if old is not None and old.tags != e.tags:
            e = replace(e, tags=tuple(dict.fromkeys((*old.tags, *e.tags))))
        out[(e.kind, e.value)] = e
    return list(out.values())


# -- tables: CSV and XLSX ----------------------------------------------------------------

CSV_FIELDS = ("value", "kind", "ref", "confidence", "first_seen", "last_seen", "expires", "tags")
# How many rows may stand above the header (a letter's title, its number, blank rows).
HEADER_ROWS = 30
# Header names, compared after _fold (lower case, no diacritics, no "(...)").
_FIELD_HEADERS: dict[str, frozenset[str]] = {
    "kind": frozenset({"kind", "type", "loai", "kieu", "phan loai", "dang", "ioc type",
                       "indicator type", "loai ioc", "kieu ioc", "loai dau hieu",
                       "loai chi bao"}),
    "ref": frozenset({"ref", "reference", "letter", "cong van", "so cong van", "so van ban"}),
    "confidence": frozenset({"confidence", "do tin cay", "muc do tin cay"}),
    "first_seen": frozenset({"first_seen", "first seen"}),
    "last_seen": frozenset({"last_seen", "last seen"}),
    "expires": frozenset({"expires", "expiry", "valid_until", "valid until"}),
    "tags": frozenset({"tags", "tag", "nhan"}),
}
# A column that holds indicators of any kind (the kind column, or detection, tells).
_VALUE_HEADERS = frozenset({"value", "values", "indicator", "indicators", "ioc", "iocs",
                            "observable", "gia tri",
                            "gia tri ioc", "ioc value", "indicator value", "dau hieu",
                            "dau hieu nhan biet", "chi bao", "chi so", "chi so ioc"})
# Columns named after one kind: a letter's table often has several (IP, domain, hash).
_KIND_HEADERS = frozenset({"ip", "ips", "ip address", "ipv4", "ipv6", "address", "dia chi",
                           "dia chi ip", "domain", "domains", "ten mien", "hostname", "host",
                           "hash", "md5", "sha1", "sha-1", "sha256", "sha-256", "sha512",
                           "ma bam", "ma hash", "file hash", "url", "urls", "uri", "link",
                           "duong dan", "dia chi url"})
# Values of a kind column.
_KINDS: dict[str, str] = {
    **dict.fromkeys(("ip", "ipv4", "ipv6", "ip-dst", "ip-src", "cidr", "address", "ip address",
                     "dia chi ip", "dia chi", "dai ip", "dai dia chi ip", "subnet"), "ip"),
    **dict.fromkeys(("domain", "hostname", "fqdn", "domain-name", "domain name", "host",
                     "ten mien", "ten mien phu", "subdomain"), "domain"),
    **dict.fromkeys(("hash", "md5", "sha1", "sha-1", "sha256", "sha-256", "sha512", "sha-512",
                     "filehash", "file hash", "ma bam", "ma hash", "ma bam tep"), "hash"),
    **dict.fromkeys(("url", "uri", "link", "duong dan", "duong link", "dia chi url"), "url"),
}
_OPENERS = re.compile(r"[(\[]")
_CLOSERS = re.compile(r"[)\]]")
_SPACES_AFTER = re.compile(r"\s*")
# "Số: 941/CATTT-NCSC", "số hiệu 77/BC". A colon or dot takes its own spaces: with
# "\s*[:.]?\s*" two quantifiers shared a run of spaces (quadratic: 34 s for 64 KiB).
_TITLE_LETTER = re.compile(r"\bs[ốo]\s*(?:hi[ệe]u\s*)?(?:[:.]\s*)?(" + LETTER.pattern + ")",
                           re.IGNORECASE)


def _drop_parens(text: str) -> str:
    r"""Each bracketed part with the spaces around it -> one space: what
    ``re.sub(r"\s*[(\[][^)\]]*[)\]]\s*", " ", text)`` gives, in linear time (that
    search retried from every space of a long run, and from every "(" of a long row of
    them to the end of the text: 40 s for a 64 KiB header cell)."""
    parts: list[str] = []
    done = 0
    while True:
        opener = _OPENERS.search(text, done)
        if opener is None:
            break
        closer = _CLOSERS.search(text, opener.end())
        if closer is None:
            break  # no later opener has a closer either
        start = opener.start()
        while start > done and text[start - 1].isspace():  # \s is str.isspace
            start -= 1
        parts += (text[done:start], " ")
        done = _SPACES_AFTER.match(text, closer.end()).end()  # type: ignore[union-attr]
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)
Row = tuple[int, list[str]]  # (1-based row number in the file or sheet, cells)


def _fold(text: str) -> str:
    """A header cell for comparison: lower case, no Vietnamese diacritics (đ -> d), no
    parenthesised part, single spaces. "Mã băm (SHA256)" -> "ma bam"."""
    text = unicodedata.normalize("NFD", text.replace("Đ", "D").replace("đ", "d"))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _drop_parens(text)
    return " ".join(text.replace("_", " ").split()).strip(" :*.") if text else ""


def _kind_of(cell: str) -> str | None:
    """The indicator kind a kind-column cell names (None: detect from the value); an
    unknown name is refused with the name."""
    if not cell:
        return None
    folded = _fold(cell)
    kind = _KINDS.get(folded) or _KINDS.get(folded.split(" ")[0])
    if kind is None and folded.startswith(("ma bam", "hash", "sha")):
        kind = "hash"
    if kind is None:
        raise IndicatorError(f"unknown indicator kind {cell.strip().lower()[:40]!r} (use ip, "
                             "domain, hash or url)")
    return kind


@dataclass(frozen=True)
class _Layout:
    """Where a table's header is and what its columns mean."""

    header: Row
    values: list[int]  # columns read as indicators
    fields: dict[str, int]  # kind, ref, confidence, ... -> column
    letter: str  # a letter number in the rows above the header, else ""


def _header_names(cells: list[str]) -> str:
    return ", ".join(repr(c) for c in cells if c)


def _likeliest_header(rows: list[Row]) -> Row | None:
    """The first of the rows with the most non-empty cells: what the operator sees as
    the header when none was recognised."""
    best: Row | None = None
    for n, cells in rows[:HEADER_ROWS]:
        if _filled(cells) and (best is None or _filled(cells) > _filled(best[1])):
            best = (n, cells)
    return best


def _filled(cells: list[str]) -> int:
    return sum(1 for c in cells if c)


def _layout(rows: list[Row], columns: Mapping[str, str]) -> _Layout | None:
    """The header row (the first row naming a mapped column, else the first with an
    indicator column), the columns, and the letter number of the title rows above.
    None when no header is recognised; ValueError when a mapped column is missing."""
    wanted = {fld: _fold(name) for fld, name in columns.items()}
    head = rows[:HEADER_ROWS]
    header: Row | None = None
    if wanted:
        header = next(((n, c) for n, c in head if set(wanted.values()) & set(map(_fold, c))),
                      None)
    if header is None:
        header = next(((n, c) for n, c in head
                       if any(_fold(x) in _VALUE_HEADERS | _KIND_HEADERS for x in c)), None)
    if header is None:
        return None
    folded = [_fold(c) for c in header[1]]
    fields: dict[str, int] = {}
    for fld, name in wanted.items():
        if name not in folded:
            raise ValueError(f"no column {columns[fld]!r} in the header (row {header[0]}: "
                             f"{_header_names(header[1])})")
        fields[fld] = folded.index(name)
    for fld, names in _FIELD_HEADERS.items():
        if fld not in fields:
            found = next((i for i, h in enumerate(folded) if h in names), None)
            if found is not None and found not in fields.values():
                fields[fld] = found
    if "value" in fields:
        values = [fields.pop("value")]
    else:
        generic = [i for i, h in enumerate(folded) if h in _VALUE_HEADERS]
        values = generic[:1] or [i for i, h in enumerate(folded)
                                 if h in _KIND_HEADERS and i not in fields.values()]
    return _Layout(header, values, fields, _title_letter(rows, header[0]))


def _title_letter(rows: list[Row], header: int) -> str:
    """The letter number in the rows above the header: the one after "Số:" first."""
    title = " ".join(c for n, cells in rows if n < header for c in cells if c)
    numbered = _TITLE_LETTER.search(title)
    if numbered:
        return numbered.group(1)
    letter = LETTER.search(title)
    return letter.group(0) if letter else ""


def _no_header(rows: list[Row]) -> str:
    likely = _likeliest_header(rows)
    found = (f"headers found (row {likely[0]}): {_header_names(likely[1])}" if likely
             else "no text in the first rows")
    return f"no header row recognised in the first {HEADER_ROWS} rows; {found}"


def _table(rows: list[Row], layout: _Layout, opts: Options, where: str,
           letter: str = "") -> Parsed:
    """The entries of one table below its header row."""
    entries: list[Entry] = []
    rejected: Rejected = []
    title_ref = layout.letter or letter
    names = [layout.header[1][i] for i in layout.values]
    for n, cells in rows:
        if n <= layout.header[0] or not any(cells):
            continue

        def col(fld: str, cells: list[str] = cells) -> str:
            i = layout.fields.get(fld)
            return cells[i].strip() if i is not None and i < len(cells) else ""

        found = [cells[i] for i in layout.values if i < len(cells) and cells[i].strip()]
        if not found:
            if len(layout.values) == 1:
                rejected.append((f"{where}row {n}", "empty value"))
            else:
                text = " ".join(c.strip() for c in cells if c.strip())[:80]
                rejected.append((f"{where}row {n}", f"no indicator in the columns "
                                 f"{', '.join(names)}: {text!r}"))
            continue
        for value in found:
            try:
                conf_text = col("confidence")
                tags = [t.strip() for t in re.split(r"[;|]", col("tags")) if t.strip()]
                entries.append(indicator(
                    opts, value, _kind_of(col("kind")), ref=col("ref") or title_ref,
                    confidence=int(conf_text) if conf_text else None,
                    first_seen=parse_time(col("first_seen")),
                    last_seen=parse_time(col("last_seen")),
                    expires=parse_time(col("expires")), tags=tags))
            except (IndicatorError, ValueError) as exc:
                rejected.append((f"{where}row {n}: {value.strip()[:80]}", str(exc)))
    return entries, rejected


def _check_columns(columns: Mapping[str, str] | None) -> dict[str, str]:
    columns = dict(columns or {})
    for key in columns:
        if key not in CSV_FIELDS:
            raise ValueError(f"unknown CSV field {key!r}; fields: {', '.join(CSV_FIELDS)}")
    return columns


def _csv_rows(text: str, dialect: Any) -> list[Row]:
    reader = csv.reader(io.StringIO(text), dialect=dialect)
    try:
        return [(n, [c.strip() for c in cells]) for n, cells in enumerate(reader, 1)]
    except csv.Error as exc:  # a cell over csv.field_size_limit(), a NUL byte...
        raise ValueError(f"line {reader.line_num}: {exc}") from None


def parse_csv(text: str, opts: Options, columns: Mapping[str, str] | None = None) -> Parsed:
    """A CSV table: a letter's appendix or a feed. Rows above the header (a title, the
    letter number, blank rows) are skipped; a letter number in them (``Số: 941/CATTT-NCSC``)
    is the reference of rows without their own.

    ``columns`` maps our fields (value, kind, ref, confidence, first_seen, last_seen,
    expires, tags) to header names; other fields are found by their English or Vietnamese
    names (``Loại``, ``Giá trị``, ``Công văn``...; case and diacritics do not matter).
    Indicators come from the value column (``value``, ``indicator``, ``ioc``, ``Giá
    trị``...), else from every column named after a kind (``IP``, ``Tên miền``, ``Mã
    băm``, ``URL``...). Values may be defanged; URLs give their host (see
    :func:`indicator`). Tags are separated by ``;`` or ``|``. The delimiter (``,`` ``;``
    or tab) is detected."""
    columns = _check_columns(columns)
    text = text.lstrip("\ufeff")
    try:
        sniffed: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        sniffed = csv.excel
    tried: list[list[Row]] = []
    for dialect in (sniffed, csv.excel, _Semicolon, csv.excel_tab):
        rows = _csv_rows(text, dialect)
        layout = _layout(rows, columns)
        if layout is not None:
            entries, rejected = _table(rows, layout, opts, "")
            return merged(entries), rejected
        tried.append(rows)
    # The reading that splits the likeliest header into the most cells shows it best.
    shown = max(tried, key=lambda rows: _filled((_likeliest_header(rows) or (0, []))[1]))
    raise ValueError(f"cannot tell which column holds the indicators: {_no_header(shown)}"
                     "; use --column value=HEADER")


class _Semicolon(csv.excel):
    delimiter = ";"


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def parse_xlsx(data: bytes, opts: Options, columns: Mapping[str, str] | None = None) -> Parsed:
    """An Excel workbook (.xlsx): every sheet is a table read as :func:`parse_csv` reads
    one. A letter number in a sheet's title rows applies to that sheet, else the first
    found in any sheet; a sheet without a recognised header is reported, and an error
    lists the headers found when no sheet has one."""
    import zipfile

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    columns = _check_columns(columns)
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ValueError(f"not an XLSX workbook ({type(exc).__name__}: {exc})") from exc
    try:
        sheets = [(ws.title, [(n, [_cell_text(v) for v in row]) for n, row in
                              enumerate(ws.iter_rows(values_only=True), 1)])
                  for ws in book.worksheets]
    finally:
        book.close()
    layouts = [(title, rows, _layout(rows, columns)) for title, rows in sheets]
    letter = next((lay.letter for _, _, lay in layouts if lay is not None and lay.letter), "")
    if all(lay is None for _, _, lay in layouts):
        found = "; ".join(f"sheet {title!r}: {_no_header(rows)}" for title, rows, _ in layouts)
        raise ValueError(f"cannot tell which column holds the indicators: {found or 'no sheet'}"
                         "; use --column value=HEADER")
    entries: list[Entry] = []
    rejected: Rejected = []
    for title, rows, lay in layouts:
        if lay is None:
            if any(any(cells) for _, cells in rows):
                rejected.append((f"sheet {title!r}", _no_header(rows)))
            continue
        found_entries, found_rejected = _table(rows, lay, opts, f"sheet {title!r} ", letter)
        entries += found_entries
        rejected += found_rejected
    return merged(entries), rejected


# -- STIX 2.1 ----------------------------------------------------------------------------


class UnsupportedPattern(ValueError):
    """A STIX pattern outside the supported subset, or not a valid one; str() says why."""


_PATHS: dict[tuple[str, tuple[Any, ...]], str] = {
    ("ipv4-addr", ("value",)): "ip", ("ipv6-addr", ("value",)): "ip",
    ("domain-name", ("value",)): "domain",
    ("network-traffic", ("dst_ref", "value")): "ip",
    ("network-traffic", ("src_ref", "value")): "ip",
}
_HASH_NAMES = {"md5": 32, "sha1": 40, "sha-1": 40, "sha256": 64, "sha-256": 64,
               "sha512": 128, "sha-512": 128}
_SUPPORTED_PATHS = ("ipv4-addr:value, ipv6-addr:value, domain-name:value, file:hashes.*, "
                    "network-traffic:dst_ref.value/src_ref.value")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPE = re.compile(r"\\([\\'])")
# A pattern is one indicator; a longer one is not worth the parser's time and memory.
_MAX_PATTERN_CHARS = 1024 * 1024


class _Details:
    """What ``Pattern.inspect()`` leaves out, from a second walk of the parse tree: AND
    between comparisons, and the members of each ``IN (...)`` set. A plain object with
    the listener methods of ANTLR's naming: the walker calls those a listener has, so the
    grammar package is not imported until a STIX file is read."""

    def __init__(self) -> None:
        self.comparison_and = False
        self.sets: dict[str, list[str]] = {}

    def exitComparisonExpressionAnd(self, ctx: Any) -> None:
        if ctx.AND():
            self.comparison_and = True

    def exitPropTestSet(self, ctx: Any) -> None:
        literal = ctx.setLiteral()
        self.sets[literal.getText()] = [p.getText() for p in literal.primitiveLiteral()]

    def enterEveryRule(self, ctx: Any) -> None:
        return None

    def exitEveryRule(self, ctx: Any) -> None:
        return None

    def visitTerminal(self, node: Any) -> None:
        return None

    def visitErrorNode(self, node: Any) -> None:
        return None


def parse_stix_pattern(pattern: str) -> list[tuple[str, str]]:
    """The (kind, raw value) pairs of a supported STIX pattern; raises
    :class:`UnsupportedPattern` with the reason otherwise.

    The pattern is parsed by ``stix2-patterns`` (the OASIS grammar); supported: ``=``,
    ``IN`` and (for addresses) ``ISSUBSET`` comparisons on the paths of ``_PATHS`` and
    file hashes, joined by OR, with parentheses. A pattern the parser cannot take (a
    syntax error, nesting beyond Python's recursion limit) is refused with its reason,
    never raised as anything else: one bad indicator must not end an import."""
    from stix2patterns.exceptions import ParseException
    from stix2patterns.v21.pattern import Pattern

    if len(pattern) > _MAX_PATTERN_CHARS:
        raise UnsupportedPattern(f"pattern longer than {_MAX_PATTERN_CHARS} characters")
    details = _Details()
    try:
        parsed = Pattern(pattern)
        data = parsed.inspect()
        parsed.walk(details)
    except ParseException as exc:
        raise UnsupportedPattern(_syntax_error(pattern, exc)) from None
    except RecursionError:
        raise UnsupportedPattern("nested too deeply for the STIX pattern parser (parentheses "
                                 "or a long chain of OR): split the indicator") from None
    except Exception as exc:  # a parser bug on hostile input is one bad indicator too
        raise UnsupportedPattern(f"the STIX pattern parser failed: {type(exc).__name__}: "
                                 f"{str(exc)[:200]}") from None
    for op in ("AND", "FOLLOWEDBY"):
        if op in data.observation_ops:
            raise UnsupportedPattern(f"observations combined with {op} (only OR is "
                                     "supported: an entry matches one value)")
    if data.qualifiers:
        qualifier = sorted(data.qualifiers)[0].split()[0]
        raise UnsupportedPattern(f"qualifier {qualifier} is not supported")
    if details.comparison_and:
        raise UnsupportedPattern("comparisons combined with AND (an entry matches one value; "
                                 "split the indicator)")
    found: list[tuple[str, str]] = []
    for obj_type, comparisons in data.comparisons.items():
        for path, op, value in comparisons:
            found += _comparison(obj_type, path, op, value, details)
    return found


def _comparison(obj_type: str, path: list[Any], op: str, value: str,
                details: _Details) -> list[tuple[str, str]]:
    """The (kind, value) pairs of one comparison of ``Pattern.inspect()``."""
    shown = _path_text(obj_type, path)
    kind = _kind(obj_type, tuple(path), shown)
    if op.startswith("NOT "):
        raise UnsupportedPattern("negated comparison (NOT)")
    if op == "=" or (op == "ISSUBSET" and kind == "ip"):
        return [(kind, _string(value))]
    if op == "IN":
        return [(kind, _string(v)) for v in details.sets.get(value, [])]
    raise UnsupportedPattern(f"operator {op} on {shown} (supported: =, IN, and ISSUBSET for "
                             "addresses)")


def _kind(obj_type: str, path: tuple[Any, ...], shown: str) -> str:
    kind = _PATHS.get((obj_type, path))
    if kind is not None:
        return kind
    if obj_type == "file" and len(path) == 2 and path[0] == "hashes" \
            and isinstance(path[1], str):
        name = path[1].lower()
        if name in _HASH_NAMES:
            return "hash"
        raise UnsupportedPattern(f"hash algorithm {name!r} (supported: MD5, SHA-1, SHA-256, "
                                 "SHA-512)")
    raise UnsupportedPattern(f"object path {shown} (supported: {_SUPPORTED_PATHS})")


def _path_text(obj_type: str, path: list[Any]) -> str:
    """``file:hashes.'SHA-256'``, ``x:items[*].name``: the path as a pattern spells it."""
    text = f"{obj_type}:"
    for i, step in enumerate(path):
        if isinstance(step, int):
            text += f"[{step}]"
        elif isinstance(step, str):
            name = step if _IDENTIFIER.fullmatch(step) else "'" + step.replace("'", "\\'") + "'"
            text += name if i == 0 else f".{name}"
        else:  # the inspector's marker for [*]
            text += "[*]"
    return text[:200]


def _string(literal: str) -> str:
    """The value of a quoted string literal; anything else (a number, h'..', b'..',
    t'..', true) is refused."""
    if len(literal) < 2 or literal[0] != "'" or literal[-1] != "'":
        raise UnsupportedPattern(f"expected a quoted string, found {literal[:80]}")
    return _ESCAPE.sub(r"\1", literal[1:-1])


def _syntax_error(pattern: str, exc: Exception) -> str:
    """A sentence from the parser's error: what was expected, where."""
    cause = exc.__cause__
    token = getattr(cause, "offendingToken", None)
    if token is None:
        return f"not a STIX pattern: {exc}"
    from stix2patterns.v21.grammars.STIXPatternParser import STIXPatternParser as Parser

    column = int(token.column)
    try:
        expected = sorted(cause.getExpectedTokens(), key=_display_order)  # type: ignore[union-attr]
    except Exception:  # the message is a courtesy; the refusal stands
        expected = []
    names = " or ".join(_token_name(Parser, t) for t in expected[:6]) or "something else"
    if token.type == Parser.EOF:
        return f"pattern ends unexpectedly (expected {names})"
    if token.type == Parser.InvalidCharacter:
        return f"cannot read the pattern at {pattern[column:column + 20]!r}"
    if expected == [Parser.EOF]:
        return f"unexpected {token.text[:40]!r} after the end of the pattern (column {column})"
    return f"expected {names}, found {token.text[:40]!r} (column {column})"


def _display_order(token_type: int) -> tuple[bool, int]:
    # '[' first: every observation starts with one, it is the likeliest fix
    from stix2patterns.v21.grammars.STIXPatternParser import STIXPatternParser as Parser

    return token_type != Parser.LBRACK, token_type


def _token_name(parser: Any, token_type: int) -> str:
    if token_type == parser.EOF:
        return "the end"
    literal = parser.literalNames[token_type] if token_type < len(parser.literalNames) else ""
    if literal and literal != "<INVALID>" and literal.startswith("'"):
        return literal
    return str(parser.symbolicNames[token_type])


def _stix_ref(obj: Mapping[str, Any]) -> str:
    for ext in obj.get("external_references") or []:
        if isinstance(ext, Mapping):
            if ext.get("external_id"):
                return str(ext["external_id"])
            if ext.get("source_name") and not ext.get("url"):
                return str(ext["source_name"])
            if ext.get("url"):
                return str(ext["url"])
    return ""


def _stix_objects(data: str | bytes) -> list[Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if isinstance(doc, Mapping) and doc.get("type") == "bundle":
        objects = doc.get("objects") or []
        if not isinstance(objects, list):
            raise ValueError("not a STIX bundle (objects is not a list)")
        return objects
    if isinstance(doc, list):
        return doc
    if isinstance(doc, Mapping):
        return [doc]
    raise ValueError("not a STIX bundle")


def parse_stix(data: str | bytes, opts: Options) -> Parsed:
    """Indicator objects of a STIX 2.1 bundle (or a single indicator or a list).

    valid_from -> first_seen, valid_until -> expires, confidence -> confidence,
    external_references (external_id, else source_name, else url) -> ref,
    labels and indicator_types -> tags. Revoked indicators and ones already
    expired are reported in ``rejected``, and so is every indicator that cannot be
    read (its pattern or a field of the wrong type): the others are still imported.
    """
    try:
        objects = _stix_objects(data)
    except ValueError as exc:
        return [], [("file", str(exc))]
    entries: list[Entry] = []
    rejected: Rejected = []
    now = opts.clock()
    for obj in objects:
        if not isinstance(obj, Mapping) or obj.get("type") != "indicator":
            continue
        where = f"indicator {str(obj.get('id', '?'))[:100]}"
        try:
            _stix_indicator(obj, where, opts, now, entries, rejected)
        except (ValueError, TypeError) as exc:
            rejected.append((where, str(exc)[:300]))
    return entries, rejected


def _stix_indicator(obj: Mapping[str, Any], where: str, opts: Options, now: int,
                    entries: list[Entry], rejected: Rejected) -> None:
    """One indicator's entries (appended), or why not; a field of the wrong type raises
    ValueError/TypeError, reported by the caller for this indicator alone."""
    if obj.get("revoked"):
        rejected.append((where, "revoked"))
        return
    pattern_type = obj.get("pattern_type", "stix")
    if pattern_type != "stix":
        rejected.append((where, f"pattern_type {str(pattern_type)[:40]!r} (only 'stix')"))
        return
    pattern = obj.get("pattern")
    if not isinstance(pattern, str):
        rejected.append((where, "no pattern"))
        return
    try:
        pairs = parse_stix_pattern(pattern)
    except UnsupportedPattern as exc:
        rejected.append((f"{where}: {pattern[:100]}", f"unsupported pattern: {exc}"))
        return
    first = parse_time(obj.get("valid_from"))
    until = parse_time(obj.get("valid_until"))
    conf = obj.get("confidence")
    confidence = int(conf) if isinstance(conf, int | float) else None
    if until is not None and until <= now:
        rejected.append((where, f"expired (valid_until {obj.get('valid_until')})"))
        return
    tags = [*_strings(obj, "labels"), *_strings(obj, "indicator_types")]
    ref = _stix_ref(obj)
    for kind, value in pairs:
        try:
            entries.append(_entry(opts, value, kind, ref=ref, confidence=confidence,
                                  first_seen=first, expires=until, tags=tags))
        except IndicatorError as exc:
            rejected.append((f"{where}: {value[:80]}", str(exc)))


def _strings(obj: Mapping[str, Any], key: str) -> list[str]:
    value = obj.get(key) or []
    if not isinstance(value, list):
        raise TypeError(f"{key} is not a list (got {type(value).__name__})")
    return [str(v) for v in value]


# -- MISP --------------------------------------------------------------------------------

_MISP_TYPES: dict[str, tuple[str, int | None]] = {
    # type -> (kind, which part of a composite "a|b" value; None = whole value)
    "ip-src": ("ip", None), "ip-dst": ("ip", None),
    "ip-src|port": ("ip", 0), "ip-dst|port": ("ip", 0),
    "domain": ("domain", None), "hostname": ("domain", None),
    "domain|ip": ("domain", 0), "hostname|port": ("domain", 0),
    "md5": ("hash", None), "sha1": ("hash", None), "sha256": ("hash", None),
    "sha512": ("hash", None),
    "filename|md5": ("hash", 1), "filename|sha1": ("hash", 1), "filename|sha256": ("hash", 1),
    "filename|sha512": ("hash", 1),
}


def parse_misp(data: str | bytes, opts: Options, *, include_non_ids: bool = False) -> Parsed:
    """A MISP event export (``{"Event": {...}}``, a bare event, a list of them, or a
    ``{"response": [...]}`` search result).

    Attributes of Event.Attribute and Event.Object[].Attribute whose type is an
    address, host name or hash (see ``_MISP_TYPES``) become entries; ``domain|ip``
    gives both. Attributes with ``to_ids`` false are left out (reported) unless
    ``include_non_ids``. The reference is a letter number found in Event.info or
    the event's tags, else Event.info itself; tags of the event and the attribute
    become entry tags; the attribute's first_seen (or timestamp) -> first_seen.
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return [], [("file", f"not JSON: {exc}")]
    if isinstance(doc, Mapping) and "response" in doc:
        doc = doc["response"]
    events = doc if isinstance(doc, list) else [doc]
    entries: list[Entry] = []
    rejected: Rejected = []
    for item in events:
        event = item.get("Event", item) if isinstance(item, Mapping) else None
        if not isinstance(event, Mapping) or not ("Attribute" in event or "Object" in event):
            rejected.append(("file", "not a MISP event (no Event.Attribute or Event.Object)"))
            continue
        try:
            _misp_event(opts, event, include_non_ids, entries, rejected)
        except (ValueError, TypeError) as exc:
            rejected.append((f"event {str(event.get('info') or '')[:80]}", str(exc)[:300]))
    return entries, rejected


def _misp_event(opts: Options, event: Mapping[str, Any], include_non_ids: bool,
                entries: list[Entry], rejected: Rejected) -> None:
    """The entries of one event; an attribute or object that cannot be read is reported
    alone (one bad attribute never ends the batch)."""
    info = str(event.get("info") or "")
    event_tags = _tag_names(event)
    letter = LETTER.search(" ".join([info, *event_tags]))
    ref = letter.group(0) if letter else info[:120]
    attributes: list[tuple[str, Any]] = [
        ("Attribute", a) for a in _list(event.get("Attribute"), "Event.Attribute")]
    for obj in _list(event.get("Object"), "Event.Object"):
        if not isinstance(obj, Mapping):
            rejected.append(("Object", "object is not a JSON object"))
            continue
        name = str(obj.get("name", "object"))[:80]
        try:
            attributes += [(f"Object {name}", a)
                           for a in _list(obj.get("Attribute"), "its Attribute")]
        except TypeError as exc:
            rejected.append((f"Object {name}", str(exc)))
    for where, attr in attributes:
        try:
            _misp_attribute(opts, where, attr, ref, event_tags, include_non_ids, entries,
                            rejected)
        except (ValueError, TypeError) as exc:
            rejected.append((where, str(exc)[:300]))


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{what} is not a list (got {type(value).__name__})")
    return value


def _tag_names(obj: Mapping[str, Any]) -> list[str]:
    return [str(t.get("name")) for t in _list(obj.get("Tag"), "Tag")
            if isinstance(t, Mapping) and t.get("name")]


def _misp_attribute(opts: Options, where: str, attr: Any, ref: str,
                    event_tags: list[str], include_non_ids: bool, entries: list[Entry],
                    rejected: Rejected) -> None:
    if not isinstance(attr, Mapping):
        rejected.append((where, "attribute is not an object"))
        return
    type_ = str(attr.get("type", ""))
    value = str(attr.get("value", ""))
    label = f"{where} {type_[:40]} {value[:80]}"
    if attr.get("deleted"):
        rejected.append((label, "deleted attribute"))
        return
    spec = _MISP_TYPES.get(type_)
    if spec is None:
        rejected.append((label, f"attribute type {type_[:40]!r} is not an address, host name "
                         "or hash"))
        return
    if not include_non_ids and not _truthy(attr.get("to_ids", True)):
        rejected.append((label, "to_ids is false (not meant for detection)"))
        return
    kind, part = spec
    parts = value.split("|")
    raw = value if part is None else (parts[part] if len(parts) > part else "")
    try:
        first = parse_time(attr.get("first_seen")) or parse_time(attr.get("timestamp"))
        last = parse_time(attr.get("last_seen"))
        tags = [*event_tags, *_tag_names(attr)]
        entries.append(_entry(opts, raw, kind, ref=ref, first_seen=first, last_seen=last,
                              tags=tags))
        if type_ == "domain|ip" and len(parts) == 2:
            entries.append(_entry(opts, parts[1], "ip", ref=ref, first_seen=first,
                                  last_seen=last, tags=tags))
    except (IndicatorError, ValueError, TypeError) as exc:
        rejected.append((label, str(exc)[:300]))


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


# -- dispatch ----------------------------------------------------------------------------

FORMATS = ("text", "csv", "xlsx", "ipsum", "stix", "misp")


def parse_file(path: str, fmt: str, opts: Options, *, columns: Mapping[str, str] | None = None,
               min_count: int = 1, include_non_ids: bool = False) -> Parsed:
    """Read one file in the given format."""
    with open(path, "rb") as fh:
        data = fh.read()
    if fmt == "stix":
        return parse_stix(data, opts)
    if fmt == "misp":
        return parse_misp(data, opts, include_non_ids=include_non_ids)
    if fmt == "xlsx":
        return parse_xlsx(data, opts, columns)
    # Excel's "Unicode text" is UTF-16 with a byte-order mark; everything else UTF-8.
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    text = data.decode("utf-16" if utf16 else "utf-8-sig", errors="replace")
    if fmt == "text":
        return parse_text(text.splitlines(), opts)
    if fmt == "ipsum":
        return parse_ipsum(text.splitlines(), opts, min_count=min_count)
    if fmt == "csv":
        return parse_csv(text, opts, columns)
    raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")

