"""Patterns that run in time linear in the text: Python ``re`` syntax and meaning, RE2 engine.

Why: Python's ``re`` backtracks, so a pattern such as ``\\bnc\\b.*\\s-e\\s`` takes time
quadratic (or worse) in the length of the text it searches. Rule patterns run on fields
that an attacker writes (a command line, a URL): one 128k-character command line kept
the daemon busy for 56 s. RE2 (``google-re2``) never backtracks: its time is linear in
the text for every pattern. It has no backreferences and no lookaround, and a few
constructs mean something else than in Python; :func:`translate` turns a Python pattern
into an RE2 pattern with the same meaning, or refuses it with a hint (at load time, so
a rule file that cannot run in linear time never loads).

What the translation keeps as Python has it (rule authors write Python ``re`` syntax):

* ``\\d``, ``\\w``, ``\\s`` and their negations are Unicode-aware, as in Python (RE2's
  own are ASCII-only): ``\\d`` is ``\\p{Nd}``, ``\\w`` letters, digits and ``_`` of any
  script, ``\\s`` exactly the characters of :meth:`str.isspace`; ``(?a)`` keeps ASCII;
* ``$`` (without ``(?m)``) also matches before a final newline, and ``\\Z`` is the end;
* ``{,n}`` is ``{0,n}``; ``\\uXXXX``, ``\\UXXXXXXXX``, ``\\N{name}`` and octal escapes;
  ``[`` inside a class is a plain character (RE2 would read ``[[:alpha:]]`` as a POSIX
  class); ``(?#...)`` comments are dropped.

What differs and is documented in docs/rules.md: ``\\b`` and ``\\B`` treat only ASCII
letters, digits and ``_`` as word characters; case folding follows Unicode simple case
folding (the same as Python's for every letter but a few such as the Turkish dotless i).
Refused, with a hint: lookahead and lookbehind, backreferences, conditionals, atomic
groups and possessive quantifiers, ``(?x)`` verbose mode, a scoped ``(?a:...)``, ``$``
followed by more of the pattern, and counted repetitions above 1000.
"""

from __future__ import annotations

import functools
import re
import unicodedata
import warnings

import re2
from re2 import _re2

__all__ = ["Pattern", "PatternError", "bounded", "translate"]

SYNTAX_HINT = "Python re syntax, run by RE2 (docs/rules.md, \"Regular expressions\"); " \
              "quote the pattern in YAML with single quotes"
_LOOKAROUND_HINT = ("RE2 matches in linear time and has no lookahead or lookbehind: match "
                    "the text itself, or split the condition into all:/not: leaves")
_BACKREF_HINT = ("RE2 has no backreferences: compare with the literal text, or split the "
                 "condition into several leaves")
UNSUPPORTED = "regular expression not supported by the linear-time engine (RE2)"
_ATOMIC_HINT = ("RE2 never backtracks, so atomic groups and possessive quantifiers are not "
                "needed: write (?:...) or the quantifier without the extra +")


class PatternError(ValueError):
    """A pattern that cannot run in linear time (or is not valid at all).

    ``message`` says what is wrong, ``hint`` what to write instead; the rule loader
    reports both with the file, rule id and key path.
    """

    def __init__(self, message: str, hint: str = SYNTAX_HINT) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def _refuse(what: str, hint: str) -> PatternError:
    return PatternError(f"{UNSUPPORTED}: {what}", hint)


# -- character sets Python uses for \s, \d, \w on str patterns ---------------------------

# Every character str.isspace() accepts lies below U+3001 (tests/unit/test_patterns.py
# checks the whole code space).
_SPACE_CODES = [c for c in range(0x3001) if chr(c).isspace()]
_ASCII_SPACE_CODES = [ord(c) for c in " \t\n\r\f\v"]  # what (?a)\s means in Python
_MAX_CODE = 0x10FFFF


def _ranges(codes: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for c in sorted(codes):
        if out and c == out[-1][1] + 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    low = 0
    for a, b in ranges:
        if a > low:
            out.append((low, a - 1))
        low = b + 1
    if low <= _MAX_CODE:
        out.append((low, _MAX_CODE))
    return out


def _class_body(ranges: list[tuple[int, int]]) -> str:
    """Ranges as the inside of an RE2 class (usable inside a larger class too)."""
    return "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}"
                   for a, b in ranges)


_SPACE = _class_body(_ranges(_SPACE_CODES))
_NOT_SPACE = _class_body(_complement(_ranges(_SPACE_CODES)))
_ASCII_SPACE = _class_body(_ranges(_ASCII_SPACE_CODES))
_ASCII_NOT_SPACE = _class_body(_complement(_ranges(_ASCII_SPACE_CODES)))
_WORD = r"\p{L}\p{N}_"

# Inside a class: what each shorthand adds (None: only expressible as a negated class).
_IN_CLASS: dict[bool, dict[str, str | None]] = {
    False: {"d": r"\p{Nd}", "D": r"\P{Nd}", "s": _SPACE, "S": _NOT_SPACE, "w": _WORD,
            "W": None},
    True: {"d": "0-9", "D": r"\x{0}-\x{2f}\x{3a}-\x{10ffff}", "s": _ASCII_SPACE,
           "S": _ASCII_NOT_SPACE, "w": "0-9A-Za-z_", "W": None},
}
_OUTSIDE: dict[bool, dict[str, str]] = {
    False: {"d": r"\p{Nd}", "D": r"\P{Nd}", "s": f"[{_SPACE}]", "S": f"[^{_SPACE}]",
            "w": f"[{_WORD}]", "W": f"[^{_WORD}]"},
    True: {"d": "[0-9]", "D": "[^0-9]", "s": f"[{_ASCII_SPACE}]",
           "S": f"[^{_ASCII_SPACE}]", "w": "[0-9A-Za-z_]", "W": "[^0-9A-Za-z_]"},
}
_NEGATED_WORD = {False: _WORD, True: "0-9A-Za-z_"}
_PLAIN_ESCAPES = frozenset("afnrtv")
_OCTAL = frozenset("01234567")
_REPEAT = re.compile(r"\{(\d*)(?:(,)(\d*))?\}")
_FLAGS = re.compile(r"\(\?([aiLmsux]*)(?:-([imsx]*))?([:)])")
_QUANTIFIER = re.compile(r"(?:[*+?]|\{\d*(?:,\d*)?\})\??")


def _class_end(src: str, i: int) -> int:
    """Index after the class that starts at ``src[i] == "["`` (Python's rules: a ``]``
    right after ``[`` or ``[^`` is a member)."""
    i += 1
    if src[i:i + 1] == "^":
        i += 1
    if src[i:i + 1] == "]":
        i += 1
    while i < len(src) and src[i] != "]":
        i += 2 if src[i] == "\\" else 1
    return i + 1


def _literal(code: int) -> str:
    ch = chr(code)
    if ch.isascii() and not ch.isalnum() and ch.isprintable() and ch != " ":
        return "\\" + ch
    return f"\\x{{{code:x}}}"


class _Translator:
    """One left-to-right pass over a pattern Python has already accepted."""

    def __init__(self, src: str, *, ignore_case: bool = False) -> None:
        self.src = src
        self.i = 0
        self.out: list[str] = []
        self.ascii = False
        # per open group: the flags that apply there among m (for $) and i (for classes)
        self.scopes: list[frozenset[str]] = [frozenset("i" if ignore_case else "")]

    def run(self) -> str:
        src = self.src
        while self.i < len(src):
            c = src[self.i]
            if c == "\\":
                self.out.append(self._escape(in_class=False))
            elif c == "[":
                self._char_class()
            elif c == "(":
                self._group()
            elif c == ")":
                if len(self.scopes) > 1:
                    self.scopes.pop()
                self.out.append(")")
                self.i += 1
            elif c in "*+?":
                self.out.append(c)
                self.i += 1
                self._quantifier_suffix()
            elif c == "{":
                self._brace()
            elif c == "$":
                self.out.append("$" if "m" in self.scopes[-1] else self._dollar())
                self.i += 1
            else:
                self.out.append(c)
                self.i += 1
        return "".join(self.out)

    def _dollar(self) -> str:
        """Python's ``$`` also matches before a newline that ends the text. RE2 cannot
        look ahead, so the newline is consumed: the same answer as long as nothing can
        follow ``$`` in the match (it ends its branch, and the enclosing groups end
        theirs); otherwise the pattern is refused."""
        src, i = self.src, self.i + 1
        while i < len(src):
            c = src[i]
            if c == ")":
                q = _QUANTIFIER.match(src, i + 1)
                i = q.end() if q else i + 1
            elif c == "|":
                i = self._group_end(i)
            else:
                raise _refuse("$ followed by more of the pattern",
                              r"end the branch with $, or write \Z (end of text) or (?m)$ "
                              "(end of a line)")
        return r"(?:\n?\z)"

    def _group_end(self, i: int) -> int:
        """Index of the ``)`` closing the group around ``i`` (or the end of the pattern),
        skipping nested groups, classes and escapes."""
        src, depth = self.src, 0
        while i < len(src):
            c = src[i]
            if c == "\\":
                i += 2
                continue
            if c == "[":
                i = _class_end(src, i)
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    return i
                depth -= 1
            i += 1
        return i

    def _quantifier_suffix(self) -> None:
        nxt = self.src[self.i:self.i + 1]
        if nxt == "?":
            self.out.append("?")
            self.i += 1
        elif nxt == "+":
            raise _refuse("possessive quantifier (*+, ++, ?+, {m,n}+)", _ATOMIC_HINT)

    def _brace(self) -> None:
        m = _REPEAT.match(self.src, self.i)
        if m is None or (not m.group(1) and m.group(2) is None):
            self.out.append(r"\{")  # not a repeat: Python reads a literal {
            self.i += 1
            return
        lo, comma, hi = m.groups()
        self.out.append(f"{{{lo or 0},{hi}}}" if comma else f"{{{lo}}}")
        self.i = m.end()
        self._quantifier_suffix()

    def _group(self) -> None:
        src, i = self.src, self.i
        if not src.startswith("(?", i):
            self.scopes.append(self.scopes[-1])
            self.out.append("(")
            self.i += 1
            return
        rest = src[i + 2:i + 4]
        if rest.startswith(("=", "!", "<=", "<!")):
            raise _refuse("lookahead or lookbehind ((?=, (?!, (?<=, (?<!)",
                               _LOOKAROUND_HINT)
        if rest.startswith("P="):
            raise _refuse("backreference (?P=name)", _BACKREF_HINT)
        if rest.startswith(">"):
            raise _refuse("atomic group (?>...)", _ATOMIC_HINT)
        if rest.startswith("("):
            raise _refuse("conditional group (?(...)...)",
                               "RE2 has no conditionals: use any: with two conditions")
        if rest.startswith("#"):
            self.i = src.index(")", i) + 1  # a comment: Python ends it at the first )
            return
        if rest.startswith("P<"):
            self.scopes.append(self.scopes[-1])
            self.out.append("(")  # names are not needed: only whether it matches counts
            self.i = src.index(">", i) + 1
            return
        if rest.startswith(":"):
            self.scopes.append(self.scopes[-1])
            self.out.append("(?:")
            self.i += 3
            return
        m = _FLAGS.match(src, i)
        if m is None:  # pragma: no cover - Python accepted the pattern
            raise PatternError(f"unsupported group at position {i}")
        self.i = m.end()
        self._flags(m.group(1), m.group(2) or "", m.group(3))

    def _flags(self, on: str, off: str, end: str) -> None:
        """``(?flags)`` at the start (``end`` is ``)``) or ``(?flags-flags:`` (``end`` ``:``)."""
        if "x" in on + off:
            raise _refuse("verbose mode (?x)",
                               "write the pattern without (?x): remove the spaces and "
                               "comments it allows")
        if "L" in on:  # pragma: no cover - Python refuses (?L) in a str pattern
            raise PatternError("locale flag (?L)")
        if "a" in on:
            if end == ":":
                raise _refuse("scoped ASCII flag (?a:...)",
                                   "use (?a) at the start of the pattern, or ASCII classes "
                                   "such as [0-9] and [A-Za-z0-9_]")
            self.ascii = True
        keep_on = "".join(f for f in on if f in "ims")
        keep_off = "".join(f for f in off if f in "ims")
        flags = keep_on + (f"-{keep_off}" if keep_off else "")
        if end == ")":  # global flags (Python allows them only at the start)
            self.scopes[0] = self.scopes[0] | set(keep_on)
            if flags:
                self.out.append(f"(?{flags})")
            return
        self.scopes.append((self.scopes[-1] | set(keep_on)) - set(keep_off))
        self.out.append(f"(?{flags}:" if flags else "(?:")

    def _escape(self, *, in_class: bool) -> str:
        """Translate the escape at ``self.i`` (a backslash); returns RE2 text."""
        src = self.src
        c = src[self.i + 1]
        self.i += 2
        if c in "dDsSwW":
            if in_class:  # pragma: no cover - classes handle shorthands themselves
                raise AssertionError(c)
            return _OUTSIDE[self.ascii][c]
        if c in "bBA" and not in_class:
            return "\\" + c
        if c == "b":  # in a class: backspace
            return r"\x{8}"
        if c == "Z":
            return r"\z"
        if c in _PLAIN_ESCAPES:
            return "\\" + c
        if c in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[c]
            digits = src[self.i:self.i + width]
            self.i += width
            return f"\\x{{{int(digits, 16):x}}}"
        if c == "N":
            end = src.index("}", self.i)
            code = ord(unicodedata.lookup(src[self.i + 1:end]))
            self.i = end + 1
            return _literal(code)
        if c in "0123456789":
            return self._number(c, in_class=in_class)
        return _literal(ord(c))

    def _number(self, first: str, *, in_class: bool) -> str:
        """``\\0``, ``\\012``, ``\\101`` are octal characters; ``\\1`` .. ``\\99`` are
        backreferences (outside a class), as Python reads them."""
        src = self.src
        digits = first
        if first == "0" or in_class:
            while len(digits) < 3 and src[self.i:self.i + 1] in _OCTAL:
                digits += src[self.i]
                self.i += 1
            return _literal(int(digits, 8))
        nxt = src[self.i:self.i + 2]
        if len(nxt) == 2 and first in _OCTAL and nxt[0] in _OCTAL and nxt[1] in _OCTAL:
            self.i += 2
            return _literal(int(first + nxt, 8))
        raise _refuse(f"backreference \\{first}", _BACKREF_HINT)

    def _char_class(self) -> None:
        src = self.src
        start = self.i
        self.i += 1
        negate = src[self.i] == "^"
        if negate:
            self.i += 1
        items: list[str] = []
        negated_parts: list[str] = []  # \W: only expressible as a class of its own
        first = True
        while True:
            c = src[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if c == "\\":
                kind = src[self.i + 1]
                if kind in "dDsSwW":
                    self.i += 2
                    body = _IN_CLASS[self.ascii][kind]
                    if body is None:
                        negated_parts.append(_NEGATED_WORD[self.ascii])
                    else:
                        items.append(body)
                else:
                    items.append(self._escape(in_class=True))
            elif c in "[]":
                items.append("\\" + c)  # [ is plain in Python; RE2 reads [: as POSIX
                self.i += 1
            else:
                items.append(c)
                self.i += 1
        body = "".join(items)
        if not negated_parts:
            self.out.append(f"[{'^' if negate else ''}{body}]")
            return
        if negate:
            self.out.append(self._word_subset(src[start:self.i]))
            return
        parts = ([f"[{body}]"] if body else []) + [f"[^{p}]" for p in negated_parts]
        self.out.append("(?:" + "|".join(parts) + ")")


    def _word_subset(self, python_class: str) -> str:
        """A negated class holding ``\\W`` (``[^\\W\\d]``: letters and ``_``) keeps only
        word characters, so its members are listed: each word character is tried with
        Python's own ``re`` (about 0.1 s, once, at load; such classes are rare)."""
        return _word_members(python_class, self.ascii, "i" in self.scopes[-1])


_ASCII_WORD_CODES = [ord(c) for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
                     "abcdefghijklmnopqrstuvwxyz"]


@functools.lru_cache(maxsize=256)
def _word_members(python_class: str, ascii_only: bool, ignore_case: bool) -> str:
    flags = (re.ASCII if ascii_only else 0) | (re.IGNORECASE if ignore_case else 0)
    test = re.compile(python_class, flags).fullmatch
    codes = [c for c in (_ASCII_WORD_CODES if ascii_only else _word_codes()) if test(chr(c))]
    return f"[{_class_body(_ranges(codes))}]" if codes else r"[^\x{0}-\x{10ffff}]"


@functools.cache
def _word_codes() -> list[int]:
    """Every character Python's ``\\w`` matches (alphanumeric or ``_``)."""
    return [c for c in range(_MAX_CODE + 1) if chr(c).isalnum() or c == 0x5F]


def _check_python(pattern: str) -> None:
    """Refuse what Python itself refuses, with Python's message (the syntax authors use)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FutureWarning "possible nested set" and the like
        try:
            re.compile(pattern)
        except re.error as exc:
            raise PatternError(f"invalid regular expression: {exc}") from None
        except (OverflowError, RecursionError) as exc:
            raise PatternError(f"invalid regular expression: {exc}") from None


def translate(pattern: str, *, ignore_case: bool = False) -> str:
    """The RE2 pattern that means what Python ``re`` means by ``pattern`` (matched
    case-insensitively when ``ignore_case``, as with ``re.IGNORECASE``).

    Raises :class:`PatternError` for a pattern Python refuses or RE2 cannot express.
    """
    _check_python(pattern)
    return _Translator(pattern, ignore_case=ignore_case).run()


# -- compiled patterns ---------------------------------------------------------------------

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_ANCHOR_START = _re2.RE2.Anchor.ANCHOR_START
_SURROGATE = re.compile("[\ud800-\udfff]")
_RE2_HINTS = (
    ("repetition size", "RE2 allows at most 1000 in {m,n}: use *, + or a smaller count"),
    ("too large", "the pattern compiles to more than RE2's memory budget: split it into "
                  "several leaves under any:"),
)


def encode(text: str) -> bytes:
    """UTF-8 of ``text``; a lone surrogate (undecodable input bytes kept by
    ``surrogateescape``) becomes U+FFFD, which like the surrogate in Python is matched by
    ``.`` and negated classes but by no literal, ``\\w``, ``\\d`` or ``\\s``."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def bounded(text: str, limit: int) -> tuple[bytes, bool]:
    """``text`` as UTF-8, cut to at most ``limit`` bytes at a character boundary, and
    whether it was cut. Slices before encoding, so a huge text costs only ``limit``."""
    cut = False
    if len(text) > limit:  # more characters than bytes allowed: cut for sure
        text = text[:limit]
        cut = True
    data = encode(text)
    if len(data) > limit:
        end = limit
        while end > 0 and data[end] & 0xC0 == 0x80:  # a continuation byte: back up
            end -= 1
        data = data[:end]
        cut = True
    return data, cut


class Pattern:
    """A Python ``re`` pattern compiled for RE2: matching time is linear in the text.

    ``captures`` keeps groups for :meth:`match_groups`; without it RE2 only answers
    whether the pattern matches, which is faster. Raises :class:`PatternError`.
    """

    __slots__ = ("_regex", "groups", "ignore_case", "source", "translated")

    def __init__(self, pattern: str, *, ignore_case: bool = False,
                 captures: bool = False) -> None:
        self.source = pattern
        self.ignore_case = ignore_case
        self.translated = translate(pattern, ignore_case=ignore_case)
        options = re2.Options()
        options.case_sensitive = not ignore_case
        options.never_capture = not captures
        options.log_errors = False
        # The public re2 wrapper builds a generator and a match object per call; the
        # rules engine only needs a yes/no, so it calls the compiled RE2 object itself.
        regex = _re2.RE2(self.translated.encode("utf-8"), options)
        if not regex.ok():
            err = regex.error()
            text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
            hint = next((h for key, h in _RE2_HINTS if key in text), SYNTAX_HINT)
            raise PatternError(f"{UNSUPPORTED}: {text}", hint)
        self._regex = regex
        self.groups = regex.NumberOfCapturingGroups() if captures else 0

    def search_bytes(self, data: bytes) -> bool:
        """Whether the pattern matches anywhere in UTF-8 ``data`` (see :func:`encode`)."""
        return bool(self._regex.Match(_UNANCHORED, data, 0, len(data))[0][0] >= 0)

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in ``text`` (``re.search`` semantics)."""
        data = encode(text)
        return bool(self._regex.Match(_UNANCHORED, data, 0, len(data))[0][0] >= 0)

    def match_groups(self, text: str) -> tuple[str | None, ...] | None:
        """Groups of a match at the start of ``text`` (``re.match(...).groups()``), or None.

        RE2 chooses the same submatches as a backtracking engine (leftmost, greedy and
        lazy quantifiers honoured), so a decoder gets what ``re`` gave it.
        """
        data = encode(text)
        spans = self._regex.Match(_ANCHOR_START, data, 0, len(data))
        if spans[0][0] < 0:
            return None
        if len(data) == len(text):  # ASCII: byte offsets are character offsets
            return tuple(None if s < 0 else text[s:e] for s, e in spans[1:])

        def chars(n: int) -> int:
            return len(data[:n].decode("utf-8"))
        return tuple(None if s < 0 else text[chars(s):chars(e)] for s, e in spans[1:])

    def __repr__(self) -> str:
        return f"Pattern({self.source!r}, ignore_case={self.ignore_case})"
