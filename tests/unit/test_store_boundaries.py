"""Every SQLite table is read and written only by the module of the subsystem that owns
it (issue 16): the reports, layer-4 sharing, the CLI ask the owner's read methods
(:class:`socd.alerts.store.AlertStore`, :mod:`socd.ioc.store`, :mod:`socd.block.decisions`,
:mod:`socd.incidents.store`, :mod:`socd.sharing.records`) instead of running SQL on
another subsystem's tables; every store is built on the one base, :mod:`socd.sqlite`.

The check reads the source: every string literal of ``socd``, ``collectors`` and
``alerting`` (docstrings aside) that names a table after an SQL keyword (``FROM``,
``JOIN``, ``INTO``, ``UPDATE``, ``TABLE``, ``ON``, ``REFERENCES``,
``PRAGMA table_info(...)``) must be in a module :data:`OWNERS` allows for that table.
:data:`OWNERS` is the one map of who owns what; a new table, or a store moved to
another module, is added there (the test says so when a created table is missing).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Source folder -> import name of the package it holds.
ROOTS = {"socd": "socd", "collectors": "socd.collectors", "alerting": "socd.alerting"}

BASE = "socd.sqlite"  # the store base: reads the catalogue and every store's version row

# Table -> the modules that may run SQL on it (the owner of the store holding it).
OWNERS: dict[str, frozenset[str]] = {
    # alerts.db
    "alerts": frozenset({"socd.alerts.store"}),
    "alert_history": frozenset({"socd.alerts.store"}),
    # ioc.db
    "iocs": frozenset({"socd.ioc.store"}),
    "attrs": frozenset({"socd.ioc.store"}),
    # blocks.db (its trail is called `audit`, as the audit log's table is)
    "decisions": frozenset({"socd.block.decisions"}),
    "audit": frozenset({"socd.block.decisions", "socd.alerts.audit"}),
    # incidents.db
    "incidents": frozenset({"socd.incidents.store"}),
    "incident_alerts": frozenset({"socd.incidents.store"}),
    "incident_actions": frozenset({"socd.incidents.store"}),
    "incident_reminders": frozenset({"socd.incidents.store"}),
    # sharing.db
    "exchanges": frozenset({"socd.sharing.records"}),
    # spool/<sink>.db
    "spool": frozenset({"socd.app.spool"}),
    # notify.db
    "pending": frozenset({"socd.notify.queue"}),
    "groups": frozenset({"socd.notify.queue"}),
    "dedup": frozenset({"socd.notify.queue"}),
    "outbox": frozenset({"socd.notify.queue"}),
    # console-users.db
    "console_users": frozenset({"socd.console.users"}),
    "console_sessions": frozenset({"socd.console.users"}),
    # Each versioned store has its own `meta` table; the base reads their version rows.
    "meta": frozenset({BASE, "socd.alerts.store", "socd.ioc.store", "socd.block.decisions",
                       "socd.incidents.store", "socd.alerts.audit", "socd.console.users"}),
    "sqlite_master": frozenset({BASE}),
}

_NAME = r'"?([a-z_][a-z0-9_]*)"?'
_SQL = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|REFERENCES|ON|TABLE(?: IF NOT EXISTS)?)\s+"
                  + _NAME + r"|PRAGMA table_info\(" + _NAME + r"\)")
_CREATE = re.compile(r"\bCREATE TABLE(?: IF NOT EXISTS)?\s+" + _NAME)


def _modules() -> Iterator[tuple[str, Path]]:
    for folder, package in ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            yield ".".join([package, *parts]), path


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes (they describe tables, they run no SQL)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value,
                                                                     ast.Constant):
                found.add(id(body[0].value))
    return found


def _literals(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of every string literal but docstrings; an f-string's literal parts."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in skip:
            yield node.lineno, node.value


def _tables(text: str) -> set[str]:
    return {a or b for a, b in _SQL.findall(text)} & OWNERS.keys()


def sql_uses() -> dict[str, dict[str, list[int]]]:
    """module -> table -> lines where its SQL names the table."""
    uses: dict[str, dict[str, list[int]]] = {}
    for module, path in _modules():
        for line, text in _literals(path):
            for table in _tables(text):
                uses.setdefault(module, {}).setdefault(table, []).append(line)
    return uses


def violations() -> list[str]:
    """One line per module running SQL on a table its subsystem does not own."""
    out = []
    for module, tables in sorted(sql_uses().items()):
        for table, lines in sorted(tables.items()):
            if module not in OWNERS[table]:
                owners = ", ".join(sorted(OWNERS[table]))
                out.append(f"{module} (lines {', '.join(map(str, lines))}) runs SQL on "
                           f"`{table}`, which belongs to {owners}: call the owner's read "
                           "methods instead")
    return out


def test_no_module_runs_sql_on_another_subsystems_tables() -> None:
    assert violations() == []


def test_every_table_a_store_creates_has_an_owner() -> None:
    created: dict[str, set[str]] = {}
    for module, path in _modules():
        for _, text in _literals(path):
            for table in _CREATE.findall(text):
                created.setdefault(table, set()).add(module)
    missing = {t: sorted(m) for t, m in created.items() if t not in OWNERS}
    assert not missing, f"tables without an owner in OWNERS: {missing}"
    for table, modules in created.items():
        assert modules <= OWNERS[table], (table, modules)
    # And no owner is stale: each table of the map is still created by one of its owners.
    unused = {t for t in OWNERS if t != "sqlite_master" and t not in created}
    assert not unused, f"OWNERS names tables no store creates any more: {sorted(unused)}"


def test_the_scan_sees_sql() -> None:
    """The scanner finds what it must (guards against a pattern that matches nothing)."""
    uses = sql_uses()
    assert uses["socd.alerts.store"].keys() >= {"alerts", "alert_history", "meta"}
    assert uses["socd.block.decisions"].keys() >= {"decisions", "audit"}
    assert uses["socd.ioc.store"].keys() >= {"iocs", "attrs"}
    assert _tables('f"SELECT {x} FROM incidents WHERE id = ?"') == {"incidents"}
    assert _tables("SELECT i.kind FROM iocs i JOIN attrs a ON a.id = i.attr") == {
        "iocs", "attrs"}
    assert _tables("the alerts from a period") == set()


def test_every_store_is_built_on_the_base() -> None:
    """Only the base opens SQLite files: no module but socd.sqlite calls sqlite3.connect,
    and every module that runs SQL on a table is a store on the base."""
    from socd.sqlite import Store

    connect = [module for module, path in _modules()
               if module != BASE and "sqlite3.connect(" in path.read_text(encoding="utf-8")]
    assert connect == []
    import importlib

    stores = {"socd.alerts.store": "AlertStore", "socd.ioc.store": "IocDatabase",
              "socd.block.decisions": "BlockStore", "socd.incidents.store": "IncidentStore",
              "socd.sharing.records": "ExchangeLog", "socd.app.spool": "SpoolFile",
              "socd.alerts.audit": "AuditLog", "socd.notify.queue": "NotifyStore",
              "socd.console.users": "UserStore"}
    for module, name in stores.items():
        assert issubclass(getattr(importlib.import_module(module), name), Store), module
    owners = set().union(*OWNERS.values()) - {BASE}
    assert owners == set(stores), owners ^ set(stores)
