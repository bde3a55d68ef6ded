"""Plain text into chat markup (socd.alerting.notifiers.markup): for any text, the
result shows the same characters and nothing in it is live markup."""

from __future__ import annotations

import html
import re

from hypothesis import example, given
from hypothesis import strategies as st

from socd.alerting.notifiers import markup

WJ = markup.WORD_JOINER
# Text rich in the characters each markup cares about.
TEXTS = st.text(alphabet=st.sampled_from(list("ab1 _-.:@!#*`~|\\<>&;[]()\n=+/wh")) |
                st.characters(), max_size=80)
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def md_shown(text: str) -> str:
    """What CommonMark displays for ``text`` made of escapes, ``&lt;`` and characters."""
    return re.sub(r"\\([!-/:-@\[-`{-~])|&lt;", lambda m: m.group(1) or "<", text)


def live(text: str) -> str:
    """``text`` with every backslash escape replaced by two inert placeholders (not
    spaces: an escaped character at a line start is not indentation)."""
    return _ESCAPE.sub("\x01\x01", text)


@given(TEXTS)
def test_slack(text: str) -> None:
    out = markup.slack(text)
    assert not {"<", ">"} & set(out)
    assert html.unescape(out) == markup.break_mentions(text)


@given(TEXTS)
def test_telegram(text: str) -> None:
    out = markup.telegram(text)
    assert "<" not in out
    assert html.unescape(out) == markup.break_mentions(text)


@given(TEXTS)
@example("=0.")  # an escaped "=" before "0." is no list marker (found by a random run)
def test_markdown_shows_the_text_and_nothing_is_live(text: str) -> None:
    out = markup.markdown(text)
    assert md_shown(out) == markup.break_mentions(text)
    active = live(out)
    for opener in ("](", "][", "]:", "://", "*", "_", "`", "~", "|", "<!", "<@"):
        assert opener not in active, (opener, out)
    assert not re.search(r"(?m)^[ \t]*([#>+=\-]|\d{1,9}[.)])", active), out
    assert not re.search(r"(?<![^\W_])@\w", out)


@given(TEXTS)
def test_teams_shows_the_text(text: str) -> None:
    out = markup.teams(text)
    assert md_shown(out) == markup.break_mentions(text)
    assert "](" not in live(out)


def test_benign_text_is_unchanged() -> None:
    text = "[Nghiêm trọng] Dò quét SSH <Potential> & brute-force (10.10.20.11) admin@so.vn"
    for convert in (markup.markdown, markup.teams):
        assert convert(text) == text


def test_mentions() -> None:
    assert markup.break_mentions("@channel srv-@here (@all) a@b.vn") == \
        f"@{WJ}channel srv-@{WJ}here (@{WJ}all) a@b.vn"


def test_fit_never_cuts_an_escape() -> None:
    escaped = markup.slack("&" * 100)
    cut = markup.fit(escaped, 50, "slack")
    head, _, dropped = cut.partition("…(+")
    assert head == "&amp;" * 8
    assert int(dropped.rstrip(")")) == len(escaped) - len(head)
    cut = markup.fit(markup.markdown("*" * 100), 51, "markdown")
    head = cut.partition("…")[0]
    assert head == "\\*" * (len(head) // 2)  # whole escapes only, no lone backslash
