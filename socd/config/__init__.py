"""socd's one YAML configuration: loading, validation and the models of every section.

``socd.config.load(path)`` reads a file and returns a validated :class:`Config`, or
raises :class:`~socd.errors.ConfigError` listing every problem with its file, line,
key path and hint. The package:

* :mod:`~socd.config.loader` - :func:`load` / :func:`loads`, the plugin sections, the
  checks across sections (decoder references, zones, warnings) and the second pass over
  the files the configuration names (:func:`reference_problems`);
* :mod:`~socd.config.env` - ``${VAR}`` substitution and what an unset variable blocks;
* :mod:`~socd.config.install` - where an installed socd keeps its configuration, and
  its environment file;
* :mod:`~socd.config.located` - the located-YAML toolkit (line numbers, key paths,
  did-you-mean hints, pydantic errors as problems) that rule files, mapping files and
  the asset inventory use too;
* :mod:`~socd.config.models` - :class:`StrictModel`, the one base of every config
  model, and the bases of the plugins' configs (:class:`CollectorConfig`,
  :class:`DecoderConfig`, :class:`SinkConfig`, :class:`NotifierConfig`);
* :mod:`~socd.config.document` - :class:`DocumentConfig`, the top level, with the
  daemon's own sections; the feature sections beside it:
  :mod:`~socd.config.notifications`, :mod:`~socd.config.incidents`,
  :mod:`~socd.config.sharing`, :mod:`~socd.config.reports`;
* :mod:`~socd.config.tls` - the TLS settings every client and listener shares.

A new section is a model deriving from :class:`StrictModel` in one of those modules (or
a new one beside them) and a field of :class:`DocumentConfig`; a plugin's options are
its own ``Config`` class deriving from the base of its kind.
"""

from socd.config.document import (
    AllowlistConfig,
    ClassificationConfig,
    DeadLetterConfig,
    DocumentConfig,
    EnrichmentConfig,
    HttpConfig,
    IocConfig,
    JournalConfig,
    LogConfig,
    PipelineConfig,
    RulesConfig,
)
from socd.config.env import UnsetSecret, env_hint
from socd.config.incidents import ContactConfig, IncidentsConfig
from socd.config.loader import (
    BUILTIN_DECODERS,
    DEFAULT_CONFIG_NAME,
    Config,
    Plugin,
    default_config_path,
    load,
    loads,
    reference_problems,
)
from socd.config.models import (
    CollectorConfig,
    DecoderConfig,
    HttpLimits,
    NotifierConfig,
    PluginConfig,
    SinkConfig,
    SpoolConfig,
    StrictModel,
)
from socd.config.notifications import (
    GroupingConfig,
    NotificationsConfig,
    QuietHoursConfig,
    RouteConfig,
    RouteMatch,
)
from socd.config.paths import resolve_path
from socd.config.reports import ReportsConfig
from socd.config.sharing import SharingConfig
from socd.errors import ConfigError, ConfigProblem

__all__ = [
    "BUILTIN_DECODERS",
    "DEFAULT_CONFIG_NAME",
    "AllowlistConfig",
    "ClassificationConfig",
    "CollectorConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "ContactConfig",
    "DeadLetterConfig",
    "DecoderConfig",
    "DocumentConfig",
    "EnrichmentConfig",
    "GroupingConfig",
    "HttpConfig",
    "HttpLimits",
    "IncidentsConfig",
    "IocConfig",
    "JournalConfig",
    "LogConfig",
    "NotificationsConfig",
    "NotifierConfig",
    "PipelineConfig",
    "Plugin",
    "PluginConfig",
    "QuietHoursConfig",
    "ReportsConfig",
    "RouteConfig",
    "RouteMatch",
    "RulesConfig",
    "SharingConfig",
    "SinkConfig",
    "SpoolConfig",
    "StrictModel",
    "UnsetSecret",
    "default_config_path",
    "env_hint",
    "load",
    "loads",
    "reference_problems",
    "resolve_path",
]
