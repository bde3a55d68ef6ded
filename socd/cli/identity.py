"""Who the ``socd`` command acts as, and who it records.

Two questions an installed system asks of every command:

* **As whom are state files written?** The daemon runs as the service user (``socd``)
  and owns ``/var/lib/socd``. A command run as root there would create root-owned
  files (``incidents.db``) that the daemon later cannot write. So root switches to the
  service user before it touches state (:func:`become`): the same rights as the daemon,
  nothing created with the wrong owner. Files the operator names (an IoC appendix in
  their home folder, a document to write) are still opened with root's rights, in
  :func:`as_invoker`, since the operator and not the service asked for them.
* **Who is recorded?** ``socd alert ack`` under ``runuser -u socd`` used to record
  "by socd": the analyst was lost. :func:`actor` takes ``--by``, else the person behind
  ``sudo`` or the terminal's login name, and refuses when the only name left is the
  service account itself.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass


class UnknownActor(ValueError):
    """No person's name is known for a change that records one (a usage error)."""


@dataclass(frozen=True, slots=True)
class Switch:
    """The service account a root process switched to (None: it did not switch)."""

    user: str
    uid: int
    gid: int
    # True when root's rights can be taken back for the operator's own files.
    invoker_kept: bool


class _Current:
    """The switch this process made (one per process: a user switch is not undone)."""

    switch: Switch | None = None


def switched() -> Switch | None:
    return _Current.switch


def become(user: str, *, keep_invoker: bool = True) -> Switch:
    """Switch this root process to ``user`` (its groups, gid, then uid).

    With ``keep_invoker`` root stays the *saved* user id, so :func:`as_invoker` can take
    root's rights back for a moment (to read a file in root's home); without it (the
    daemon, ``socd run``) the switch is final."""
    entry = pwd.getpwnam(user)
    os.setgroups(os.getgrouplist(user, entry.pw_gid))
    saved_gid = 0 if keep_invoker else entry.pw_gid
    saved_uid = 0 if keep_invoker else entry.pw_uid
    os.setresgid(entry.pw_gid, entry.pw_gid, saved_gid)
    os.setresuid(entry.pw_uid, entry.pw_uid, saved_uid)
    # Files socd creates stay private to the service user and its group, as under the
    # unit (UMask=0077 there; 0027 keeps them readable by the socd group here).
    os.umask(0o027)
    _Current.switch = Switch(user, entry.pw_uid, entry.pw_gid, keep_invoker)
    return _Current.switch


@contextlib.contextmanager
def as_invoker() -> Iterator[None]:
    """Run the block with the rights of the user who ran the command (root), when
    :func:`become` switched away from it; a no-op otherwise."""
    state = _Current.switch
    if state is None or not state.invoker_kept:
        yield
        return
    os.setresuid(-1, 0, -1)
    os.setresgid(-1, 0, -1)
    try:
        yield
    finally:
        os.setresgid(-1, state.gid, -1)
        os.setresuid(-1, state.uid, -1)


def actor(by: str | None, service_user: str | None = None,
          environ: Mapping[str, str] | None = None) -> str:
    """The person a change is recorded for: ``by`` (``--by``), else ``$SUDO_USER``,
    else the login name of the controlling terminal (``os.getlogin()``), else
    ``$LOGNAME``/``$USER``. Raises :class:`UnknownActor` when that leaves no name, or
    only the service account's (``runuser -u socd`` keeps no trace of who ran it)."""
    env = os.environ if environ is None else environ
    service = service_user if service_user is not None else _service_user()
    if by is not None and _clean(by):
        return _clean(by)  # a blank --by counts as none
    candidates = [env.get("SUDO_USER", ""), _login_name(), env.get("LOGNAME", ""),
                  env.get("USER", "")]
    for candidate in candidates:
        name = _clean(candidate)
        if name and name != service:
            return name
    if any(_clean(c) for c in candidates):
        raise UnknownActor(f"the only user name known here is the service account "
                           f"{service!r}, which would hide who acted: pass --by NAME "
                           "(or run the command with sudo from your own login)")
    raise UnknownActor("who is this? pass --by NAME ($SUDO_USER, $LOGNAME and $USER are "
                       "unset and there is no login terminal)")


def _clean(name: str) -> str:
    return unicodedata.normalize("NFC", name.strip())


def _login_name() -> str:
    try:
        return os.getlogin()
    except OSError:
        return ""


def _service_user() -> str:
    from socd.config import install

    return install.detect().service_user
