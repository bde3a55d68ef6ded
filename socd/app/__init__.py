"""The daemon at run time: wiring (components), the pipeline and its journal, spool and
dead letter, the server's supervision of collectors and sinks, systemd notify, and the
offline replay. Nothing below imports this package (docs/architecture.md)."""
