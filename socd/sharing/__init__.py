"""Layer-4 sharing with the national monitoring centre (docs/sharing.md).

* :mod:`~socd.sharing.data` - the alerts of a period or incident and the IoCs
  they matched (read-only on the alert store, the IoC and incident databases);
* :mod:`~socd.sharing.stix` - STIX 2.1 bundles (identity, indicator,
  observed-data, sighting; TLP marking; deterministic ids);
* :mod:`~socd.sharing.misp` - MISP event JSON;
* :mod:`~socd.sharing.push` - TAXII 2.1 and MISP pushes;
* :mod:`~socd.sharing.records` - the exchange log and the layer-4 metrics.

The ``sharing:`` config section is :mod:`socd.config.sharing` (every section model
lives in :mod:`socd.config`).
"""

from socd.config.sharing import SharingConfig

__all__ = ["SharingConfig"]
