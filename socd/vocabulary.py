"""The SOC's fixed vocabularies: the asset kinds and the four protection layers.

They label events (``socd.asset_kind``, ``socd.layer``), metric series and report
columns, so they are closed sets (a label set must stay bounded whatever the input
says). The layers are the 4-layer protection model of the SOC's context
(docs/events.md); the severity levels are in :mod:`socd.severity`.
"""

from __future__ import annotations

from typing import Final

ASSET_KINDS: Final = frozenset({"server", "workstation", "network", "application", "unknown"})
LAYERS: Final = (1, 2, 3, 4)
