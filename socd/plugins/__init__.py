"""The plugin roles, their optional capabilities, the registry and the plugin context.

* :mod:`socd.plugins.protocols` — one small typed Protocol per plugin kind
  (:class:`Collector`, :class:`Decoder`, :class:`Sink`, :class:`Notifier`), the
  records they exchange, and the optional **capabilities** (:class:`ZoneAware`,
  :class:`LineDecoder`, :class:`IocAware`, :class:`AllowlistAware`), checked with
  ``isinstance``.
* :mod:`socd.plugins.registry` — config ``type:`` → the class implementing it.
* :mod:`socd.plugins.context` — :class:`PluginContext` (what a plugin gets besides its
  config) and :data:`NotifierFactory` (how a feature service gets notifiers).

A new collector, decoder, sink or notifier implements its Protocol in its own module
(``collectors/``, ``socd/decoders/``, ``alerting/``, ``alerting/notifiers/``) and
adds one :class:`~socd.plugins.registry.PluginSpec` line to the registry.
"""

from socd.plugins.context import DeadLetterWriter, NotifierFactory, PluginContext
from socd.plugins.protocols import (
    Ack,
    AllowlistAware,
    Collector,
    DecodeFailure,
    Decoder,
    DecodeResult,
    DurableIntake,
    Emit,
    IocAware,
    IpLookup,
    LineDecoder,
    Notification,
    Notifier,
    OwnInfrastructure,
    RawRecord,
    Sink,
    ZoneAware,
    durable_emit,
    intake_of,
)

__all__ = ["Ack", "AllowlistAware", "Collector", "DeadLetterWriter", "DecodeFailure",
           "DecodeResult", "Decoder", "DurableIntake", "Emit", "IocAware", "IpLookup",
           "LineDecoder", "Notification", "Notifier", "NotifierFactory", "OwnInfrastructure",
           "PluginContext", "RawRecord", "Sink", "ZoneAware", "durable_emit", "intake_of"]
