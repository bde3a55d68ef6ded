"""The linear rewrites of backtracking patterns give the old patterns' results.

Each old pattern is kept here verbatim; for any text over an alphabet of the
characters that matter to it, the rewrite (used by socd) answers the same.
tests/adversarial/test_regex_inputs.py checks that the rewrites are fast.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from socd import log
from socd.alerting.notifiers import markup
from socd.ioc import importers

OLD_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s:]+:[^/@\s]+@",
                                 re.IGNORECASE)
OLD_LETTER = re.compile(r"\d+/[\w.-]*[A-Za-zĐđ][\w.-]*")
OLD_TITLE_LETTER = re.compile(r"\bs[ốo]\s*(?:hi[ệe]u\s*)?[:.]?\s*(" + OLD_LETTER.pattern + ")",
                              re.IGNORECASE)
OLD_PARENS = re.compile(r"\s*[(\[][^)\]]*[)\]]\s*")
OLD_DURATION = re.compile(r"\s*(\d+)\s*([smhdw]?)\s*")
OLD_SLACK_TAG = re.compile(r"<(?=[!@#]|[^\n<|>]*\|[^\n>]*>)")

EXAMPLES = 600


def texts(alphabet: str, *tokens: str) -> st.SearchStrategy[str]:
    """Texts of single characters and of multi-character tokens that make matches
    likely (``://``, ``<a|b>``)."""
    pieces = st.sampled_from([*alphabet, *tokens])
    return st.lists(pieces, max_size=30).map("".join)


def _span(m: re.Match[str] | None, group: int = 0) -> tuple[int, int, str] | None:
    return None if m is None else (m.start(group), m.end(group), m.group(group))


@settings(max_examples=EXAMPLES, deadline=None)
@given(texts("aZk1+.-:/@ \t\u212a\u017fx", "://", "u:p@", "http"))
def test_url_credentials(text: str) -> None:
    old = OLD_URL_CREDENTIALS.sub(rf"\g<scheme>{log.REDACTED}@", text)
    assert log.redact_url_credentials(text) == old


def test_url_credentials_examples() -> None:
    redact = log.redact_url_credentials
    assert redact("mqtts://user:pa:ss@broker:8883/x") == "mqtts://***@broker:8883/x"
    assert redact("a://b://u:p@h and http://x:y@z") == "a://b://***@h and http://***@z"
    assert redact("1abc://u:p@h -http://u:p@h") == "1abc://***@h -http://***@h"
    assert redact("no credentials: https://host/path@x") == "no credentials: https://host/path@x"


@settings(max_examples=EXAMPLES, deadline=None)
@given(texts("12/aĐ_.-x \u0663", "941/", "CATTT"))
def test_letter_numbers(text: str) -> None:
    assert _span(importers.LETTER.search(text)) == _span(OLD_LETTER.search(text))


@settings(max_examples=EXAMPLES, deadline=None)
@given(texts("sốoShiệeu:. 1/AĐ\t", "số", "hiệu", "so ", "12/"))
def test_title_letter(text: str) -> None:
    new = importers._TITLE_LETTER.search(text)
    old = OLD_TITLE_LETTER.search(text)
    assert _span(new, 1) == _span(old, 1)


@settings(max_examples=EXAMPLES, deadline=None)
@given(texts("a ([)]\t\u00a0\u2003x"))
def test_bracketed_parts(text: str) -> None:
    assert importers._drop_parens(text) == OLD_PARENS.sub(" ", text)


@settings(max_examples=EXAMPLES, deadline=None)
@given(texts("12 smhdwx\t"))
def test_durations(text: str) -> None:
    old = OLD_DURATION.fullmatch(text)
    if old is None:
        assert importers._DURATION.fullmatch(text) is None
        return
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[old.group(2)]
    assert importers.parse_duration(text) == int(old.group(1)) * unit


@settings(max_examples=EXAMPLES, deadline=None)
@given(texts("<|>!@#\na\\", "<a|b>", "<!"))
def test_slack_tags(text: str) -> None:
    assert markup._escape_slack_tags(text) == OLD_SLACK_TAG.sub("&lt;", text)
