"""The IoC store: indicators from national letters and public feeds, matched on events.

The one IoC model: every list (the plain-text ``classification.ioc_files``, a network
sensor's ``ioc_files``, a rule test's ``iocs``, ``socd ioc import``) becomes
:class:`~socd.ioc.store.Entry` rows of an :class:`~socd.ioc.store.IocStore`.

* :mod:`socd.ioc.store` — :class:`IocStore` (SQLite + immutable in-memory index; or
  memory-only with ``path=None``): ``lookup(kind, value[, source]) -> bool``,
  ``match_ip(value) -> ref | None``, ``entries_for(kind, value)``,
  ``lookup_many_ipv4(ints)``.
* :mod:`socd.ioc.importers` — text (``load_text_lists``), CSV, IPsum, STIX 2.1 and
  MISP readers.
* :mod:`socd.ioc.allowlist` — :class:`Allowlist` of own infrastructure
  (``is_allowed``, ``covers``, ``reason``), shared with the blocking engine.
* :mod:`socd.cli.ioc` (the command line's package) — ``socd ioc
  import|list|check|expire|delete|stats``.

See docs/ioc.md.
"""

# The alert the classification step makes of a plain event that hit an IoC list; the
# notifications name it per language (socd.notify.render.OWN_RULES).
IOC_MATCH_ID = "socd-ioc-match"
IOC_MATCH_NAME = "Trùng khớp chỉ dấu IoC"  # "IoC match"
