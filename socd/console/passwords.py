"""Password hashing for local console users: Argon2id (argon2-cffi's defaults, RFC 9106).

Hashes carry their parameters, so a stronger default in a later argon2-cffi is picked
up at the user's next sign-in (:func:`needs_rehash`). Verifying costs the same whether
the user exists or not (:func:`verify_dummy`), so timing does not tell which names exist.
"""

from __future__ import annotations

import functools
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
MAX_LENGTH = 1024  # Argon2 takes any length; a megabyte "password" is an attack


class PasswordError(ValueError):
    """A password that cannot be accepted as a new password (too short...)."""


@functools.cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # Argon2id, RFC 9106 low-memory profile


def _prepared(password: str) -> str:
    # NFC: "ệ" typed on a Mac and on Windows is the same password.
    return unicodedata.normalize("NFC", password)


def check_new(password: str) -> None:
    """Refuse a new password that is too short, too long or has control characters."""
    text = _prepared(password)
    if len(text) < MIN_LENGTH:
        raise PasswordError(f"a password has at least {MIN_LENGTH} characters")
    if len(text) > MAX_LENGTH:
        raise PasswordError(f"a password has at most {MAX_LENGTH} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise PasswordError("a password has no control characters")


def hash_password(password: str) -> str:
    """The Argon2id hash of a new password (checked by :func:`check_new`)."""
    check_new(password)
    return _hasher().hash(_prepared(password))


def verify(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (False for a malformed hash)."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher().verify(password_hash, _prepared(password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    return _hasher().hash("socd-console-no-such-user")


def verify_dummy(password: str) -> bool:
    """Spend the time of a verification for a user that does not exist; always False."""
    verify(_dummy_hash(), password)
    return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher().check_needs_rehash(password_hash)
    except InvalidHashError:
        return False
