"""Output plugins: sinks that store alerts and notifiers that tell people."""
