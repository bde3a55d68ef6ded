"""The detection rules engine (docs/rules.md).

Entry points for the pipeline::

    engine = build_engine(config, ioc_lookup=store.lookup)  # raises ConfigError
    events = engine.process(events)          # input events + new alerts
    new.carry_state_from(old)                # on reload
"""

from __future__ import annotations

from socd.access import read_problem
from socd.config import Config
from socd.config.located import did_you_mean
from socd.engine.compiler import IocLookup
from socd.engine.engine import RuleEngine, event_time
from socd.engine.loader import CompiledRule, expand_paths, load_files, load_paths, load_text
from socd.errors import ConfigError, ConfigProblem

__all__ = ["CompiledRule", "RuleEngine", "build_engine", "event_time", "expand_paths",
           "load_config_rules", "load_files", "load_paths", "load_text"]


def load_config_rules(config: Config) -> list[CompiledRule]:
    """Every rule the config names (disabled ones included, marked by the caller)."""
    cfg = config.document.rules
    files = expand_paths(cfg.paths, config.config_dir)
    problems: list[ConfigProblem] = []
    for i, raw in enumerate(cfg.paths):
        if raw != "builtin" and not any(ch in raw for ch in "*?["):
            path = config.resolve(raw)
            unreadable = read_problem(path, what="file or directory")
            if unreadable is not None:
                problems.append(ConfigProblem(config.file, f"rules.paths[{i}]",
                                              unreadable.message, unreadable.hint))
    if problems:
        raise ConfigError(problems)
    return load_files(files)


def build_engine(config: Config, *, ioc_lookup: IocLookup | None = None) -> RuleEngine:
    """The rules engine for ``config``: rules loaded and compiled; raises ConfigError.

    ``ioc_lookup(kind, value[, source]) -> bool`` serves ``ioc`` conditions: the
    daemon passes its IoC store's (:meth:`socd.engine.classify.Classifier.ioc_lookup`, built by
    the wiring). Without one, ``ioc`` conditions never match.
    """
    cfg = config.document.rules
    rules = load_config_rules(config)
    known = {r.id for r in rules}
    problems = []
    for i, rule_id in enumerate(cfg.disabled):
        if rule_id not in known:
            problems.append(ConfigProblem(
                config.file, f"rules.disabled[{i}]", f"no rule has id {rule_id!r}",
                did_you_mean(rule_id, known) or "see `socd rules list`"))
    if problems:
        raise ConfigError(problems)
    disabled = set(cfg.disabled)
    active = [r for r in rules if r.rule.enabled and r.id not in disabled]
    return RuleEngine(active, ioc_lookup=ioc_lookup,
                      max_out_of_order_secs=cfg.max_out_of_order_secs,
                      max_field_bytes=cfg.max_field_bytes,
                      max_clock_skew_secs=cfg.max_clock_skew_secs)
