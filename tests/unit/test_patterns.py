"""socd.patterns: Python ``re`` patterns run by RE2 with Python's meaning, in linear time.

The oracle is Python's ``re`` itself: for random patterns built from every construct the
translation handles and random texts over an alphabet of the characters where Python and
RE2 differ (Unicode digits and spaces, case pairs, newlines, lone surrogates), the RE2
pattern must answer what ``re.search`` answers. ``\\b`` is left out: RE2's is ASCII-only
(docs/rules.md says so).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socd.decoders import syslog
from socd.engine import RuleEngine, load_text
from socd.engine.compiler import RULE_FIELDS_TRUNCATED, Context, compile_condition
from socd.patterns import Pattern, PatternError, bounded, encode, translate

# -- differential: RE2 answers what Python answers ------------------------------------------

TEXT_CHARS = ["a", "b", "A", "B", "k", "K", "\u212a", "s", "S", "\u017f", "ß", "é", "É",
              "1", "9", "٣", "_", "-", " ", "\t", "\n", "\v", "\x1c", "\xa0", "\u2028",
              "\u3000", ".", "/", "\\", "$", "[", "]", ":", "\ud800", "\x00"]
ATOMS = ["a", "b", "A", "é", "1", "_", "-", " ", ".", r"\d", r"\D", r"\s", r"\S", r"\w",
         r"\W", r"\.", r"\$", r"\x41", r"\u00e9", r"\101", r"\0", r"\t", r"\n", "[ab]",
         "[^a]", "[a-z]", r"[\d_]", r"[^\s]", r"[\S]", r"[^\S\n]", r"[\W_]", r"[\w-]",
         r"[\D]", r"[^\W\d]", r"[^\W_a]", "[[:a]", "[]a]", r"[\]]", "[.-/]", r"[\b]",
         "^", "$", r"\A", r"\Z",
         r"\N{LATIN SMALL LETTER E WITH ACUTE}"]
QUANTIFIERS = ["", "", "", "*", "+", "?", "*?", "+?", "??", "{2}", "{,2}", "{1,}", "{0,3}?",
               "{}", "{x}"]
FLAGS = ["", "", "(?i)", "(?s)", "(?m)", "(?a)", "(?ims)", "(?u)"]
# Every character alone and followed by a newline: each class member and each $ is tried.
PROBES = [*TEXT_CHARS, *(c + "\n" for c in TEXT_CHARS), "", "\n"]


@st.composite
def patterns(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        if depth < 2 and draw(st.integers(0, 5)) == 0:
            inner = draw(patterns(depth + 1))
            opener = draw(st.sampled_from(["(", "(?:", "(?P<g>", "(?i:", "(?-i:", "(?s:",
                                           "(?m:", "(?#note)("]))
            atom = f"{opener}{inner})"
        else:
            atom = draw(st.sampled_from(ATOMS))
        quantifier = draw(st.sampled_from(QUANTIFIERS))
        if atom in ("^", "$", r"\A", r"\Z") and quantifier not in ("{}", "{x}"):
            quantifier = ""  # Python refuses to repeat an anchor
        parts.append(atom + quantifier)
    body = "".join(parts)
    if draw(st.booleans()):
        body += "|" + "".join(draw(st.sampled_from(ATOMS)) for _ in range(2))
    return body


def dollar_not_last(pattern: str) -> bool:
    """Whether an unescaped ``$`` outside a class can be followed by more of the match
    (what :mod:`socd.patterns` refuses without ``(?m)``), judged with the translator."""
    if "(?m)" in pattern or "(?ims)" in pattern:
        return False
    try:
        translate(pattern)
    except PatternError as exc:
        return "$ followed by" in exc.message
    return False


def python_search(pattern: str, text: str, ignore_case: bool) -> bool | None:
    """``re``'s answer, or None when Python itself refuses the pattern."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        except re.error:
            return None
    return compiled.search(text) is not None


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flags=st.sampled_from(FLAGS), body=patterns(), ignore_case=st.booleans(),
       texts=st.lists(st.text(st.sampled_from(TEXT_CHARS), max_size=12), min_size=1,
                      max_size=8))
def test_re2_answers_what_python_answers(flags: str, body: str, ignore_case: bool,
                                         texts: list[str]) -> None:
    pattern = flags + body
    if python_search(pattern, "", ignore_case) is None:
        with pytest.raises(PatternError, match="invalid regular expression"):
            Pattern(pattern, ignore_case=ignore_case)
        return
    if dollar_not_last(pattern):  # the one construct of the grammar RE2 cannot express
        with pytest.raises(PatternError, match=r"\$ followed by more of the pattern"):
            Pattern(pattern, ignore_case=ignore_case)
        return
    compiled = Pattern(pattern, ignore_case=ignore_case)
    for text in [*texts, *PROBES]:
        if flags == "(?a)" and (ignore_case or "(?i" in pattern) and not text.isascii():
            continue  # RE2 folds case the Unicode way even under (?a) (docs/rules.md)
        assert compiled.search(text) == python_search(pattern, text, ignore_case), \
            (pattern, text, compiled.translated)


def test_space_is_exactly_what_python_calls_whitespace() -> None:
    spaces = [c for c in range(0x110000) if chr(c).isspace()]
    assert max(spaces) < 0x3001  # the module only looks below U+3001
    s, not_s = Pattern(r"\s"), Pattern(r"[\S]")
    for c in [*spaces, 0x0, 0x21, 0x85 + 1, 0x200B, 0xFEFF, 0x10FFFF]:
        python = re.fullmatch(r"\s", chr(c)) is not None
        assert s.search(chr(c)) is python, hex(c)
        assert not_s.search(chr(c)) is not python, hex(c)


@pytest.mark.parametrize(("pattern", "text", "expected"), [
    (r"^S-1-5-21-.*-512$", "S-1-5-21-1-2-512\n", True),   # $ before a final newline
    (r"^S-1-5-21-.*-512$", "S-1-5-21-1-2-512\n\n", False),
    (r"(?m)^x$", "a\nx\nb", True),
    (r"512\Z", "512\n", False),
    (r"\d+", "٣", True),                                  # Unicode digit, as in Python
    (r"(?a)\d+", "٣", False),
    (r"\s-e\s", "powershell\xa0-e\u3000AAAA", True),         # Unicode spaces, as in Python
    (r"\w", "ệ", True),
    (r"[[:alpha:]]", ":]", True),          # Python: a class of [:alph then "]", not POSIX
    (r"[[:alpha:]]", "b", False),
    (r"x{,2}y", "xxy", True),
    (r"a{x}", "a{x}", True),
    (r"(?#comment)ab", "ab", True),
    (r"(?P<tool>nc|ncat) -e", "ncat -e sh", True),
    (r"\N{LATIN CAPITAL LETTER A WITH GRAVE}", "À", True),
    (r"\101\x42\u0043", "ABC", True),
    (r"a.b", "a\ud800b", True),                              # a lone surrogate is a character
])
def test_python_meaning_is_kept(pattern: str, text: str, expected: bool) -> None:
    assert Pattern(pattern).search(text) is expected
    assert (re.search(pattern, text) is not None) is expected


def test_negated_class_holding_w_lists_pythons_members() -> None:
    letters = Pattern(r"^[^\W\d]+$")  # letters and _, of any script
    assert letters.search("Nguyễn_Văn")
    assert not letters.search("a1")
    assert not Pattern(r"(?a)[^\W\d]").search("ễ")


def test_case_insensitive_follows_unicode_folding() -> None:
    p = Pattern("nguyễn văn", ignore_case=True)
    assert p.search("NGUYỄN VĂN A")
    assert not Pattern("nguyễn", ignore_case=False).search("NGUYỄN")


@pytest.mark.parametrize(("pattern", "what"), [
    (r"foo(?=bar)", "lookahead or lookbehind"),
    (r"foo(?!bar)", "lookahead or lookbehind"),
    (r"(?<=a)b", "lookahead or lookbehind"),
    (r"(?<!a)b", "lookahead or lookbehind"),
    (r"(a)\1", "backreference"),
    (r"(?P<x>a)(?P=x)", "backreference"),
    (r"(?>a+)b", "atomic group"),
    (r"a++b", "possessive quantifier"),
    (r"a{2}+", "possessive quantifier"),
    (r"(a)?(?(1)b|c)", "conditional"),
    (r"(?x) a b", "verbose mode"),
    (r"(?a:\d)", "scoped ASCII"),
    (r"(a$|b)\n", "$ followed by more"),
    (r"a{1001}", "repetition size"),
])
def test_what_re2_cannot_run_is_refused_with_a_hint(pattern: str, what: str) -> None:
    with pytest.raises(PatternError) as info:
        Pattern(pattern)
    assert "not supported by the linear-time engine (RE2)" in info.value.message
    assert what in info.value.message
    assert info.value.hint


def test_invalid_python_is_refused_with_pythons_message() -> None:
    with pytest.raises(PatternError, match=r"invalid regular expression: missing \)"):
        translate("(ab")


def test_bounded_cuts_at_a_character_boundary() -> None:
    assert bounded("abc", 10) == (b"abc", False)
    assert bounded("abcdef", 4) == (b"abcd", True)
    data, cut = bounded("aệệ", 5)  # ệ is 3 bytes: a + one ệ fits, half of the next not
    assert (data.decode(), cut) == ("aệ", True)
    assert bounded("x" * (1 << 20), 1024)[0] == b"x" * 1024
    assert encode("a\udcffb") == "a\ufffdb".encode()


def test_match_groups_are_python_groups() -> None:
    pattern = r"(\S+) : (?:(.*?) ; )?TTY=(\S*) ; (x)?"
    p = Pattern(pattern, captures=True)
    for text in ["bà : 3 lần sai ; TTY=pts/0 ; ", "ann : TTY=pts/0 ; ", "no"]:
        m = re.match(pattern, text)
        assert p.match_groups(text) == (m.groups() if m else None)


# -- the decoders' fixed patterns -----------------------------------------------------------

OLD_KV = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)')
OLD_SUDO = re.compile(r"\s*(\S+) : (?:(.*?) ; )?TTY=(\S*) ; PWD=(.*?) ; USER=(\S+) ;"
                      r"(?: GROUP=\S+ ;)?(?: ENV=.*? ;)? COMMAND=(.*)$")
KV_TOKENS = ["a", "Z", "_", "9", "0", "=", '"', "\\", " ", "x=1", 'msg="a b"', "é", "-", "\n"]
SUDO_TOKENS = ["alice", " : ", " ; ", "TTY=", "pts/0", "PWD=", "/home/a", "USER=", "root",
               "GROUP=", "ENV=", "A=1", " COMMAND=", "/bin/ls", " ", "x", "\n", "é"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(KV_TOKENS), max_size=30))
def test_linear_key_value_patterns_find_what_the_old_ones_found(tokens: list[str]) -> None:
    text = "".join(tokens)
    assert syslog._KV.findall(text) == OLD_KV.findall(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(SUDO_TOKENS), max_size=30))
def test_sudo_pattern_groups_are_the_old_ones(tokens: list[str]) -> None:
    text = "".join(tokens)
    m = OLD_SUDO.match(text)
    assert syslog._SUDO.match_groups(text) == (m.groups() if m else None)


def test_sudo_pattern_keeps_real_lines() -> None:
    line = ("alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/alice ; "
            "USER=root ; COMMAND=/usr/bin/apt update")
    assert syslog._SUDO.match_groups(line) == (
        "alice", "3 incorrect password attempts", "pts/0", "/home/alice", "root",
        "/usr/bin/apt update")


# -- the rules engine: RE2 everywhere, fields capped --------------------------------------

def leaf(raw: dict[str, Any], ctx: Context | None = None) -> Any:
    ctx = ctx or Context("<test>")
    fn = compile_condition(raw, ("match",), ctx)
    assert not ctx.problems, [str(p) for p in ctx.problems]
    return fn


def truncated(field: str) -> float:
    return float(RULE_FIELDS_TRUNCATED.labels(field)._value.get())


def test_regex_reads_at_most_max_field_bytes() -> None:
    ctx = Context("<test>")
    ctx.limits.max_field_bytes = 1024
    head = leaf({"field": "process.command_line", "regex": "nc -e"}, ctx)
    tail = leaf({"field": "process.command_line", "regex": "mimikatz"}, ctx)
    value = "nc -e sh " + "x" * 4096 + " mimikatz"
    event = {"process": {"command_line": value}}
    before = truncated("process.command_line")
    assert head(event)
    assert not tail(event)  # past the limit: not read
    assert truncated("process.command_line") == before + 1  # counted once per value
    ctx.limits.max_field_bytes = 8192
    assert tail(event)


def test_engine_sets_the_limit_of_its_rules() -> None:
    rules, problems = load_text("""rules:
  - id: t-long
    title: t
    severity: low
    match: {field: message, regex: 'needle$'}
""")
    assert not problems
    event = {"@timestamp": "2026-11-20T10:00:00+07:00", "message": "x" * 5000 + "needle"}
    assert RuleEngine(rules).matching_rules_bruteforce(event) == ["t-long"]
    small = RuleEngine(rules, max_field_bytes=1024)
    assert small.matching_rules_bruteforce(event) == []


def test_contains_of_many_values_runs_on_re2() -> None:
    fn = leaf({"field": "m", "contains": ["aa", "bb", "cc", "dd", "ệ", "ff"]})
    assert fn({"m": "xxỆxx"})
    assert not fn({"m": "x" * 100_000})


def test_a_rule_pattern_re2_cannot_run_names_rule_key_and_hint() -> None:
    _, problems = load_text("""rules:
  - id: bad-lookahead
    title: t
    severity: low
    match:
      any:
        - {field: process.command_line, regex: 'curl(?!.*example)'}
""", "custom.yaml")
    (problem,) = problems
    text = str(problem)
    assert text.startswith("custom.yaml:7: rules[0].match.any[0].regex: ")
    assert "lookahead or lookbehind" in text
    assert "(rule 'bad-lookahead')" in text
    assert "(hint: RE2 matches in linear time" in text


def test_rule_state_keeps_long_values_as_fingerprints() -> None:
    rules, problems = load_text("""rules:
  - id: t-many
    title: t
    severity: low
    match: {field: event.action, equals: login}
    threshold: {count: 3, window: 1h, group_by: [user.name]}
    suppress: {window: 1h, by: [process.command_line]}
""")
    assert not problems
    engine = RuleEngine(rules)
    huge = "u" * (1 << 20)
    events = [{"@timestamp": f"2026-11-20T10:00:0{i}+07:00", "event": {"action": "login"},
               "user": {"name": huge}, "process": {"command_line": huge + str(i % 2)}}
              for i in range(4)]
    alerts = engine.process(events)[len(events):]
    assert len(alerts) == 1
    assert alerts[0]["socd"]["rule"]["group"] == {"user.name": huge}  # the alert keeps it
    state = engine.state["t-many"]
    keys = [*state.groups, *state.suppress]
    assert keys
    assert all(len(part) < 100 for key in keys for part in key), "state holds 1 MiB keys"
