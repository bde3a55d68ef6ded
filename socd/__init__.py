"""socd: a security-operations monitoring daemon for a provincial SOC."""

__version__ = "0.1.0"
