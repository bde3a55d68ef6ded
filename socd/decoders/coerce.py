"""Vendor JSON values as the types events need, shared by the decoders.

A vendor record holds whatever its writer chose: a port as ``80`` or ``"80"``, a
severity as a number or a word, ``-`` or ``""`` for "nothing", an object where a list
was expected. These functions take any JSON value and answer the type asked for or
None, never raising, so one odd field never fails an event.

The decoders do not all read "no value" the same way, and their outputs depend on
it: Suricata keeps any non-empty string as it is, Wazuh also drops whitespace-only
strings, the Windows decoders strip values and treat ``-`` and ``null`` as absent and
never take a float. Those differences are the parameters of :func:`text`, visible
at each decoder's binding of it.
"""

from __future__ import annotations

from typing import Any

_NOTHING: frozenset[str] = frozenset()


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def text(value: Any, *, strip: bool = False, blank_is_none: bool = False,
         absent: frozenset[str] = _NOTHING, floats: bool = True) -> str | None:
    """A string value, or a number as its decimal text; None for anything else
    (objects, lists, booleans, null) and for the empty string.

    ``strip``: the answer without surrounding whitespace (so whitespace alone is no
    value). ``blank_is_none``: whitespace alone is no value, but a value keeps its
    whitespace. ``absent``: placeholders that mean no value (compared after
    stripping). ``floats``: whether a float is a value at all.
    """
    if isinstance(value, str):
        if strip:
            value = value.strip()
        elif blank_is_none and not value.strip():
            return None
        return None if not value or value in absent else value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if floats and isinstance(value, float):
        return str(value)
    return None


def texts(value: Any, *, blank_is_none: bool = False) -> list[str]:
    """A string (or number) or a list of them as a list of :func:`text` values; the
    items that are no value are left out."""
    items = value if isinstance(value, list) else [value]
    return [t for t in (text(item, blank_is_none=blank_is_none) for item in items) if t]


def int_or_none(value: Any) -> int | None:
    """A vendor value as an int, or None when it is not a whole number (bools are not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        try:
            return int(value)
        except ValueError:
            return None
    return None
