"""The IoC store: indicators from national letters and public feeds, matched on events.

* :mod:`socd.ioc.store` — :class:`IocStore` (SQLite + immutable in-memory index):
  ``lookup(kind, value) -> bool``, ``match_ip(value) -> ref | None``,
  ``entries_for(kind, value)``, ``lookup_many_ipv4(ints)``.
* :mod:`socd.ioc.importers` — text, CSV, IPsum, STIX 2.1 and MISP readers.
* :mod:`socd.ioc.allowlist` — :class:`Allowlist` of own infrastructure
  (``is_allowed``, ``covers``, ``reason``), shared with the blocking engine.
* :mod:`socd.cli.ioc` (the command line's package) — ``socd ioc
  import|list|check|expire|delete|stats``.

See docs/ioc.md.
"""
