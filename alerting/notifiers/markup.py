"""Plain text into each chat's markup, so that what an alert quotes stays text.

A notification's ``title`` and ``text`` are plain text, and much of them comes from the
events: host names, command lines, user names, file names, rule texts of a vendor. The
people socd watches choose those values. A chat notifier that pastes them into its
markup unescaped lets an event ping a whole channel (``@channel``), show an image from
the attacker's server (``![x](http://...)``), hide a link behind friendly words
(``[Mở báo cáo](http://...)``) or make the message unparsable. Each function here turns
the *whole* plain text into one markup with every character inert; the notifier then
adds its own formatting (a bold title) around the result. The notification core keeps
one rendered plain text for every channel; the e-mail HTML is the only markup rendered
from templates, and Jinja2's autoescaping covers it (:mod:`socd.notify.render`).

What each function neutralises:

* every markup: ``@word`` at the start of a word gets an invisible WORD JOINER after the
  ``@``, so ``@channel``, ``@all``, ``@here`` and ``@user`` mention nobody (Mattermost's
  server splits words on it; a backslash would not stop its mention parser). An ``@``
  after a letter or digit, as in ``admin@so-tttt.vn``, is left alone;
* :func:`slack`: ``&``, ``<`` and ``>`` as entities (Slack's only escapes), which also
  disarms ``<!channel>``, ``<@U123>`` and ``<http://...|text>`` links;
* :func:`markdown` (Mattermost): the entity ``&lt;`` for a ``<`` that starts one of
  Slack's tags (Mattermost turns ``<!channel>`` and ``<@U123>`` in webhook texts into
  mentions and ``<url|text>`` into a link before it reads Markdown); a backslash before
  the characters that start inline formatting (``\\ ` * _ ~ |``), before an ``&`` that
  would start an entity, before a ``]`` that would close a link or image (``](``,
  ``][``, ``]:``), before a line's block marker (``#``, ``>``, ``-``, ``+``, ``=``,
  ``1.``) and inside ``://`` and ``www.``, so a bare URL is neither a link nor fetched
  for a preview. The rendered text reads exactly as the plain text; text without those
  characters (``[Nghiêm trọng]``, ``<Potential>``, ``A & B``) is unchanged;
* :func:`teams` (Adaptive Card ``TextBlock``): backslash escapes limited to the Markdown
  subset cards render (``\\ * _``, a link's ``]``, a list marker at a line's start), as
  the mobile renderers show a backslash before other characters; bare URLs stay (a card
  shows the address itself and fetches no preview);
* :func:`telegram` (``parse_mode: HTML``): :func:`html.escape` of ``<``, ``>``, ``&``;
  link previews are off by default (``disable_web_page_preview``).

The machine channels (``webhook``, ``mqtt``, ``alertmanager``) send JSON, where the
encoder escapes; whoever displays those fields must treat them as untrusted text.
"""

from __future__ import annotations

import html
import re

from .common import truncate

# U+2060: invisible, no line break, not a letter: it ends the word a mention parser reads.
WORD_JOINER = "\u2060"

# "@name" unless a letter or digit comes before the "@" ("admin@host" is an address).
# Mattermost also finds "@channel" after "_", "-", "." or ":" ("srv-@channel").
_MENTION = re.compile(r"(?<![^\W_])@(?=\w)")
_MD_INLINE = re.compile(r"[\\`*_~|]")
# Mattermost reads Slack's "<!channel>" and "<@U123>" in webhook texts as mentions and
# "<url|text>" as a link, before any Markdown: such a "<" becomes an entity.
# That is "<" followed by "!", "@" or "#", or by "text|text>" on the same line
# (the pattern ``<(?=[!@#]|[^\n<|>]*\|[^\n>]*>)``). As a lookahead searched from each
# "<" it read to the end of the line for every "<|" of a long row (10 s for 64 KiB):
# see _escape_slack_tags.
_TAG_STOP = re.compile(r"[\n<|>]")
_LINK_END = re.compile(r"[\n>]")
# "&lt;" in the plain text must show as typed, not as "<".
_MD_ENTITY = re.compile(r"&(?=#?\w+;)")
_MD_LINK_CLOSE = re.compile(r"\](?=[(\[:])")
_MD_AUTOLINK = re.compile(r"(?<=[A-Za-z0-9])(?=://)|(?<=\bwww)(?=\.)", re.IGNORECASE)
_MD_BLOCK = re.compile(r"^([ \t]*)([#>+=\-]|\d{1,9}(?=[.)]))", re.MULTILINE)
_TEAMS_INLINE = re.compile(r"[\\*_]")
_TEAMS_BLOCK = re.compile(r"^([ \t]*)([+\-]|\d{1,9}(?=[.)]))", re.MULTILINE)
# An escape cut in half by truncation: a lone trailing backslash, a partial entity.
_PARTIAL = {"markdown": re.compile(r"(?<!\\)(?:\\\\)*\\$"),
            "slack": re.compile(r"&[#\w]{0,8}$")}


def break_mentions(text: str) -> str:
    """``@channel`` → ``@⁠channel`` (a word joiner after the ``@``): no one is pinged."""
    return _MENTION.sub("@" + WORD_JOINER, text)


def slack(text: str) -> str:
    """Plain text as Slack ``mrkdwn``: entities for ``& < >``, mentions broken."""
    text = break_mentions(text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown(text: str) -> str:
    """Plain text as Mattermost Markdown that renders as the same characters."""
    text = _MD_INLINE.sub(r"\\\g<0>", break_mentions(text))
    text = _escape_slack_tags(_MD_ENTITY.sub(r"\\&", text))
    text = _MD_LINK_CLOSE.sub(r"\\]", text)
    text = _MD_AUTOLINK.sub("\\\\", text)
    return _MD_BLOCK.sub(_escape_block_marker, text)


def _escape_slack_tags(text: str) -> str:
    """Each "<" that starts a Slack tag -> ``&lt;``, in linear time: a "<" looks only as
    far as the next "<", "|" or ">", and the line's next ">" is searched again only
    past the last one found."""
    pos = text.find("<")
    if pos < 0:
        return text
    parts: list[str] = []
    done = 0
    end = -1  # the first "\n" or ">" at or after the last position asked (len: none)
    while pos >= 0:
        tag = text[pos + 1:pos + 2] in ("!", "@", "#")
        if not tag:
            stop = _TAG_STOP.search(text, pos + 1)
            if stop is not None and stop.group() == "|":
                if end < stop.end():
                    found = _LINK_END.search(text, stop.end())
                    end = found.start() if found is not None else len(text)
                tag = end < len(text) and text[end] == ">"
        if tag:
            parts += (text[done:pos], "&lt;")
            done = pos + 1
        pos = text.find("<", pos + 1)
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def teams(text: str) -> str:
    """Plain text for an Adaptive Card ``TextBlock`` (its Markdown subset)."""
    text = _TEAMS_INLINE.sub(r"\\\g<0>", break_mentions(text))
    text = _MD_LINK_CLOSE.sub(r"\\]", text)
    return _TEAMS_BLOCK.sub(_escape_block_marker, text)


def telegram(text: str) -> str:
    """Plain text for Telegram's ``parse_mode: HTML``."""
    return html.escape(break_mentions(text), quote=False)


def _escape_block_marker(match: re.Match[str]) -> str:
    indent, marker = match.group(1), match.group(2)
    if marker.isdigit():  # "1." starts an ordered list: escape the dot after the number
        return f"{indent}{marker}\\"
    return f"{indent}\\{marker}"


def fit(text: str, limit: int, markup: str) -> str:
    """:func:`~.common.truncate` for escaped text: never ends inside an escape."""
    cut = truncate(text, limit)
    if cut == text:
        return text
    head, marker = cut.rsplit("…(+", 1)
    partial = _PARTIAL.get(markup)
    if partial is not None:
        trimmed = partial.sub("", head)
        if trimmed != head:
            return f"{trimmed}…(+{int(marker.rstrip(')')) + len(head) - len(trimmed)})"
    return cut
