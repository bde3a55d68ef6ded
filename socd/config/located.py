"""Located YAML: problems that name the file, the key path, the line and the likely fix.

Every YAML file socd reads (the configuration, rule files, mapping files, the asset
inventory) reports its problems the same way, as :class:`~socd.errors.ConfigProblem`::

    socd.yaml:6: http.prot: unknown key 'prot' (hint: did you mean 'port'?)

This module is the toolkit for that, shared by :mod:`socd.config`, the rule loader
(:mod:`socd.engine.loader` and :mod:`socd.engine.compiler`), the mapping decoder and
the asset inventory (:mod:`socd.engine.enrich`):

* :func:`parse` reads a text into its data and the line of every key path
  (:func:`line_index`, :func:`line_for`);
* :func:`dotted` writes a key path as the messages show it (``routes[0].notifiers``);
* :func:`did_you_mean` and :func:`unknown_key_hint` suggest the key that was meant;
* :func:`report` turns a pydantic :class:`~pydantic.ValidationError` into problems,
  finding the model of each misspelled key's parent with :func:`model_at`;
* :func:`strings_at` reads the values at key-path patterns from a validated model or
  from a section as written (the decoder names a collector declares).

A key path (:data:`Loc`) is a tuple of mapping keys and list indexes, from the top of
the document; ``()`` is the document itself.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from socd.errors import ConfigError, ConfigProblem

Loc = tuple[Any, ...]
"""A key path: mapping keys and list indexes from the top of a document."""

Lines = Mapping[Loc, int]
"""The line (1-based) of each key path of a document (:func:`line_index`)."""

ProblemSink = Callable[..., None]
"""Receives ``(loc, message, hint=None)`` for each problem found (:func:`report`)."""

MakeProblem = Callable[[Loc, str, "str | None"], ConfigProblem]
"""Makes the problem of one file at a key path (:func:`problem_at`)."""


@dataclass(frozen=True, slots=True)
class Located:
    """A parsed YAML text: its data and the line of each key path."""

    file: str
    data: Any
    lines: Lines

    def line(self, loc: Loc) -> int | None:
        return line_for(self.lines, loc)

    def problem(self, loc: Loc, message: str, hint: str | None = None) -> ConfigProblem:
        return ConfigProblem(self.file, dotted(loc), message, hint, line_for(self.lines, loc))


def parse(text: str, file: str) -> Located:
    """Parse ``text`` (the content of ``file``) with the line of each key path.

    Raises :class:`ConfigError` with one problem, ``invalid YAML: <reason>`` at the
    line where the parser stopped, when the text is not YAML."""
    try:
        data, lines = read(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(file, "", f"invalid YAML: {reason}",
                                         line=line)]) from exc
    return Located(file, data, lines)


def read(text: str) -> tuple[Any, dict[Loc, int]]:
    """The data of a YAML text (as :func:`yaml.safe_load` reads it) and the line of
    every key path (:func:`line_index`), from one pass over the text.

    libyaml's C parser reads the text when PyYAML has it (the rule pack, read at
    every start, in 55 ms instead of 750 ms with PyYAML's own scanner, which read each
    text twice: once for the lines, once for the data). The two readers
    differ on a few unusual texts (tabs, tags, ``?`` inside a flow collection, a
    comment right after a block scalar's ``|``): those texts, and every text libyaml
    refuses, are read again by PyYAML's own reader, so the data, the lines and every
    error message are PyYAML's. Raises :class:`yaml.YAMLError`."""
    fast = _read_fast(text)
    return fast if fast is not None else _read(yaml.SafeLoader(text))


def _read(loader: yaml.SafeLoader) -> tuple[Any, dict[Loc, int]]:
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        # Index before constructing: merge keys (``<<``) rewrite the mapping nodes.
        lines = line_index(node)
        return loader.construct_document(node), lines
    finally:
        loader.dispose()


_CSafeLoader: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)
# Characters around which libyaml and PyYAML read a text differently (tabs, tags, line
# breaks other than \n, a byte order mark): such texts go to PyYAML's reader.
_UNSURE_TEXT = re.compile("[\t!\r\x85\u2028\u2029\ufeff]")
# A comment glued to a block scalar's header (``key: |#``): libyaml reads it, PyYAML
# refuses it.
_GLUED_COMMENT = re.compile(r"[|>][-+0-9]*#")


def read_fast(text: str) -> tuple[Any, dict[Loc, int]] | None:
    """:func:`read` with libyaml, or None when PyYAML's reader must say (see there): for
    the callers that read a text with PyYAML themselves, for its own error messages."""
    return _read_fast(text)


def _read_fast(text: str) -> tuple[Any, dict[Loc, int]] | None:
    """:func:`read` with libyaml, or None when PyYAML's reader must say (see there)."""
    if _CSafeLoader is None or _UNSURE_TEXT.search(text):
        return None
    loader = _CSafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        text_lines = text.split("\n")
        try:
            data, lines, unsure = _build(node, loader, text_lines)
        except _Unusual:
            data = _NOT_BUILT
            lines, unsure = _index(node, text_lines)
        if unsure:
            return None
        return (loader.construct_document(node) if data is _NOT_BUILT else data), lines
    except yaml.YAMLError:
        return None  # PyYAML's reader words the error
    finally:
        loader.dispose()


class _Unusual(Exception):
    """A node :func:`_build` leaves to PyYAML's constructor."""


_NOT_BUILT: Any = object()
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
# The other tags the resolver gives a plain scalar, built by the loader's own
# constructor (``merge`` and ``value`` keys change the mapping: left to PyYAML).
_SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in
                         ("null", "bool", "int", "float", "timestamp"))


def _build(node: yaml.Node, loader: yaml.SafeLoader,
           text_lines: list[str]) -> tuple[Any, dict[Loc, int], bool]:
    """``loader.construct_document(node)`` and ``_index(node, text_lines)`` in one walk
    over the nodes: the rule pack is read at every start, and SafeConstructor's
    generic machinery (a generator for each mapping and list, the memo of every node)
    took as long as libyaml's parse. Only plain trees: strings, the resolver's
    scalars (built by ``loader``'s own constructors), lists and mappings with scalar
    keys. An alias (a node met twice), a merge key (``<<``) or any other tag raises
    :class:`_Unusual`, and the caller does both the usual way."""
    index: dict[Loc, int] = {}
    unsure = False
    seen: set[int] = set()
    construct = loader.construct_object
    scalar_node, mapping_node, sequence_node = yaml.ScalarNode, yaml.MappingNode, yaml.SequenceNode

    def scalar(n: yaml.ScalarNode, in_flow: bool) -> Any:
        nonlocal unsure
        style = n.style
        if style in ("|", ">"):
            # as _index's check: from the node's first line to its last
            span = text_lines[n.start_mark.line:n.end_mark.line + 1]
            unsure = unsure or any(_GLUED_COMMENT.search(line) for line in span)
        elif in_flow and not style and "?" in n.value:
            unsure = True
        tag = n.tag
        if tag == _STR:
            return n.value
        if tag in _SCALAR_TAGS:
            return construct(n)
        raise _Unusual

    def value(n: yaml.Node, loc: Loc, in_flow: bool) -> Any:
        index[loc] = n.start_mark.line + 1
        if isinstance(n, scalar_node):
            return scalar(n, in_flow)
        if id(n) in seen:
            raise _Unusual  # an alias: the constructor shares (or recurses into) it
        seen.add(id(n))
        if isinstance(n, mapping_node) and n.tag == _MAP:
            flow = bool(n.flow_style)
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                if not isinstance(key_node, scalar_node):
                    raise _Unusual
                key = scalar(key_node, flow)
                at = (*loc, key_node.value)
                line = index[at] = key_node.start_mark.line + 1
                out[key] = value(value_node, at, flow)
                index[at] = line
            return out
        if isinstance(n, sequence_node) and n.tag == _SEQ:
            flow = bool(n.flow_style)
            return [value(item, (*loc, i), flow) for i, item in enumerate(n.value)]
        raise _Unusual

    return value(node, (), False), index, unsure


def line_index(node: yaml.Node) -> dict[Loc, int]:
    """The line of every key path below ``node`` (a key's own line for a mapping key,
    the item's first line for a list item)."""
    return _index(node, None)[0]


def _index(node: yaml.Node, text_lines: list[str] | None) -> tuple[dict[Loc, int], bool]:
    """:func:`line_index`, and with ``text_lines`` (the text libyaml read) whether the
    nodes hold something PyYAML reads differently: a plain scalar with ``?`` in a flow
    collection (PyYAML splits it there), a block scalar with a comment glued to its
    header."""
    index: dict[Loc, int] = {}
    unsure = False

    def check(n: yaml.Node, in_flow: bool) -> None:
        nonlocal unsure
        if text_lines is None or not isinstance(n, yaml.ScalarNode):
            return
        if n.style in ("|", ">"):
            # from the node's first line (an anchor may come first) to its last
            span = text_lines[n.start_mark.line:n.end_mark.line + 1]
            unsure = unsure or any(_GLUED_COMMENT.search(line) for line in span)
        elif in_flow and not n.style and "?" in n.value:
            unsure = True

    def walk(n: yaml.Node, loc: Loc, in_flow: bool) -> None:
        index[loc] = n.start_mark.line + 1
        check(n, in_flow)
        if isinstance(n, yaml.MappingNode):
            flow = bool(n.flow_style)
            for key_node, value_node in n.value:
                check(key_node, flow)
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # a key the data cannot hold: constructing it fails
                key = key_node.value
                index[(*loc, key)] = key_node.start_mark.line + 1
                walk(value_node, (*loc, key), flow)
                index[(*loc, key)] = key_node.start_mark.line + 1
        elif isinstance(n, yaml.SequenceNode):
            flow = bool(n.flow_style)
            for i, item in enumerate(n.value):
                walk(item, (*loc, i), flow)

    walk(node, (), False)
    return index, unsure


def line_for(lines: Lines, loc: Loc) -> int | None:
    """The line of ``loc``, else of its nearest parent that has one (a key the parser
    did not see, such as a missing required key, is reported at its parent)."""
    # The index holds keys as written (text); a key the YAML reader turned into a
    # number or a date is looked up as that text.
    key = tuple(str(p) if not isinstance(p, int) else p for p in loc)
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return None


def dotted(loc: Loc) -> str:
    """A key path as messages show it: ``notifications.routes[0].notifiers``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def problem_at(file: str, lines: Lines) -> MakeProblem:
    """A maker of problems of ``file`` with their line numbers."""
    def make(loc: Loc, message: str, hint: str | None = None) -> ConfigProblem:
        return ConfigProblem(file, dotted(loc), message, hint, line_for(lines, loc))
    return make


def did_you_mean(word: str, options: Iterable[str]) -> str | None:
    """``did you mean 'x'?`` for the option closest to ``word``; None when none is
    close (the caller then lists the options or says where they come from)."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"did you mean {close[0]!r}?" if close else None


def unknown_key_hint(model: type[BaseModel], loc: Loc) -> str | None:
    """The hint of an unknown key at ``loc`` inside ``model``: the key that was probably
    meant, else the keys valid there."""
    parent = model_at(model, loc[:-1])
    options = sorted(parent.model_fields) if parent else []
    return did_you_mean(str(loc[-1]), options) or (
        f"valid keys here: {', '.join(options)}" if options else None)


def report(exc: ValidationError, model: type[BaseModel], prefix: Loc,
           problem: ProblemSink) -> None:
    """Hand each error of ``exc`` (validating ``model`` at ``prefix``) to ``problem``:
    unknown keys with a hint, missing keys, and the value that was refused (never a
    secret's, see :func:`shown_value`)."""
    for err in exc.errors():
        loc = tuple(err["loc"])
        full = (*prefix, *loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            problem(full, f"unknown key {loc[-1]!r}", unknown_key_hint(model, loc))
        elif kind == "missing":
            problem(full, "required key is missing")
        else:
            problem(full, f"{err['msg']}{shown_value(loc, err.get('input'))}")


def model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that describes the object at ``loc`` inside ``model``."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return None
            current = info.annotation
        else:
            current = _container_item(current)
            if current is None:
                return None
        current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _container_item(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (list, tuple, set, frozenset) and args:
        return _unwrap(args[0])
    if origin is dict and len(args) == 2:
        return _unwrap(args[1])
    return None


_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api_?key|credential", re.IGNORECASE)


def looks_secret(name: str) -> bool:
    """Whether a key or variable name (``api_key``, ``SLACK_TOKEN``) names a secret."""
    return _SECRET_KEY.search(name) is not None


def shown_value(loc: Loc, value: Any) -> str:
    """`` (got <value>)``, except for secrets and whole sections (which may hold secrets)."""
    if isinstance(value, Mapping | list) or any(looks_secret(str(p)) for p in loc):
        return ""
    text = repr(value)
    return f" (got {text if len(text) <= 60 else text[:57] + '...'})"


def strings_at(node: Any, fields: Sequence[Sequence[str]]) -> list[tuple[Loc, str]]:
    """The strings found at each of ``fields`` below ``node``, with their key paths, in
    the order of ``fields`` and then of the document. A field is a key path where
    ``"[*]"`` stands for each item of a list and ``"{*}"`` for each value of a mapping
    (``("subscriptions", "[*]", "decoder")``, see
    :attr:`socd.config.CollectorConfig.decoder_fields`). ``node`` is a validated model
    or, for a section that did not validate, its mapping as written."""
    out: list[tuple[Loc, str]] = []

    def walk(value: Any, rest: Sequence[str], loc: Loc) -> None:
        if not rest:
            if isinstance(value, str):
                out.append((loc, value))
            return
        head, tail = rest[0], rest[1:]
        if head == "[*]":
            for i, item in enumerate(value if isinstance(value, list) else []):
                walk(item, tail, (*loc, i))
        elif head == "{*}":
            for key, item in (value.items() if isinstance(value, Mapping) else ()):
                walk(item, tail, (*loc, key))
        else:
            child = (value.get(head) if isinstance(value, Mapping) else
                     getattr(value, head, None) if isinstance(value, BaseModel) else None)
            walk(child, tail, (*loc, head))

    for path in fields:
        walk(node, path, ())
    return out
