"""Who acts at the console: the roles (ordered: each may do what the ones below it may),
the signed-in user and the session of a request.

These are plain values with no dependency on the rest of the console, so every module
(and the typed keys of :mod:`socd.console.keys`) can name them without an import cycle;
:mod:`socd.console.auth` and :mod:`socd.console.sessions` re-export them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

Source = Literal["local", "ldap"]


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


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """The signed-in user of a request."""

    name: str
    display_name: str
    role: Role
    source: Source

    def can(self, role: Role) -> bool:
        return self.role >= role


@dataclass(frozen=True, slots=True)
class Session:
    """The session of a request: its cookie id, CSRF token, user and start."""

    id: str
    csrf: str
    user: ConsoleUser
    created: float
