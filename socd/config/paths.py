"""Paths a config names, read relative to the config file's folder."""

from __future__ import annotations

import os


def resolve_path(base: str, path: str) -> str:
    """``path`` with ``~`` expanded, relative to ``base`` unless it is absolute."""
    expanded = os.path.expanduser(path)
    return expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(base, expanded))
