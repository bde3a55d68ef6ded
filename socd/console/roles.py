"""The console's roles, ordered: each role may do what the ones below it may."""

from __future__ import annotations

from enum import IntEnum


class Role(IntEnum):
    """viewer reads; analyst works alerts and incidents; admin also manages users, imports
    IoC lists and unblocks addresses."""

    VIEWER = 1
    ANALYST = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        """The name stored and written in the config (``viewer``, ``analyst``, ``admin``)."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named ``text`` (case-insensitive); ValueError names the choices."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}; roles: viewer, analyst, admin") from None
