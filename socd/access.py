"""Why a file cannot be read or written, said so that an operator can fix it.

"no such file" for a file that exists but is not readable, or SQLite's "attempt to
write a readonly database" without a file name, sends an operator looking in the wrong
place. These helpers find which path (the file, a sidecar, a folder on the way) the
user lacks which permission on, and say who owns it and what would fix it. They read
modes and owners, so they also answer for a user other than the one running (``check-
config`` run by root checks what the service user ``socd`` may do).
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from dataclasses import dataclass

READ, WRITE, SEARCH = 4, 2, 1


@dataclass(frozen=True, slots=True)
class Who:
    """A user as the kernel checks permissions: uid and every group."""

    name: str
    uid: int
    gids: frozenset[int]

    @classmethod
    def current(cls) -> Who:
        uid = os.geteuid()
        return cls(user_name(uid), uid, frozenset({os.getegid(), *os.getgroups()}))

    @classmethod
    def named(cls, name: str) -> Who:
        """Raises KeyError when there is no such user."""
        entry = pwd.getpwnam(name)
        return cls(name, entry.pw_uid,
                   frozenset(os.getgrouplist(name, entry.pw_gid)))

    def may(self, st: os.stat_result, want: int) -> bool:
        """``want`` (READ|WRITE|SEARCH bits) granted by the mode bits that apply."""
        if self.uid == 0:
            # Root reads and writes anything; it needs one x bit to execute/search.
            return not want & SEARCH or bool(st.st_mode & 0o111) or stat.S_ISDIR(st.st_mode)
        mode = st.st_mode
        if st.st_uid == self.uid:
            bits = (mode >> 6) & 7
        elif st.st_gid in self.gids:
            bits = (mode >> 3) & 7
        else:
            bits = mode & 7
        return bits & want == want


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def owner(st: os.stat_result) -> str:
    """``root:socd 0640``: who owns a file and its mode, as ``ls -l`` would tell."""
    return f"{user_name(st.st_uid)}:{group_name(st.st_gid)} {stat.S_IMODE(st.st_mode):04o}"


def _blocking_folder(path: str, who: Who) -> tuple[str, os.stat_result] | None:
    """The first folder on the way to ``path`` that ``who`` cannot search."""
    folder = os.path.dirname(os.path.abspath(path))
    chain = []
    while True:
        chain.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for folder in reversed(chain):
        try:
            st = os.stat(folder)
        except OSError:
            return None
        if not who.may(st, SEARCH):
            return folder, st
    return None


@dataclass(frozen=True, slots=True)
class Problem:
    """What is wrong with a path for a user, and how to fix it."""

    message: str
    hint: str | None = None

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


def read_problem(path: str, who: Who | None = None, *, what: str = "file") -> Problem | None:
    """None when ``who`` (default: this process) can read ``path``; else whether it is
    missing or not readable, and by whose permission."""
    who = who or Who.current()
    blocked = _blocking_folder(path, who)
    if blocked is not None:
        folder, st = blocked
        return Problem(f"cannot read {path}: permission denied: the folder {folder} "
                       f"({owner(st)}) is not searchable by {who.name}",
                       f"chgrp {group_name(_primary_gid(who))} {folder} && chmod g+x {folder}, "
                       f"or move the {what} where {who.name} can read it")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Problem(f"no such {what}: {path}")
    except OSError as exc:
        return Problem(f"cannot read {path}: {exc.strerror}")
    want = READ | SEARCH if stat.S_ISDIR(st.st_mode) else READ
    if who.may(st, want):
        return None
    bits = "g+rx" if want & SEARCH else "g+r"
    return Problem(f"cannot read {path}: permission denied ({owner(st)}; {what} read as "
                   f"{who.name})",
                   f"chgrp {group_name(_primary_gid(who))} {path} && chmod {bits} {path}")


def _primary_gid(who: Who) -> int:
    try:
        return pwd.getpwuid(who.uid).pw_gid
    except KeyError:
        return min(who.gids) if who.gids else 0


def write_problems(folder: str, who: Who, *, limit: int = 20) -> list[Problem]:
    """What keeps ``who`` from writing its state below ``folder``: the folder itself
    (or, when it does not exist yet, the folder that would hold it) and every file or
    folder inside that ``who`` cannot write (a ``incidents.db`` left by root). At most
    ``limit`` problems."""
    fix_owner = f"{who.name}:{group_name(_primary_gid(who))}"
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(folder))
        while not os.path.isdir(parent) and os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
        pst = os.stat(parent)
        if who.may(pst, WRITE | SEARCH):
            return []
        return [Problem(f"{folder} does not exist and {who.name} cannot create it: {parent} "
                        f"is {owner(pst)}",
                        f"install -d -o {who.name} -g {group_name(_primary_gid(who))} -m 0750 "
                        f"{folder}")]
    except OSError as exc:
        return [Problem(f"cannot inspect {folder}: {exc.strerror}")]
    blocked = _blocking_folder(os.path.join(folder, "x"), who)
    if blocked is not None:
        where, bst = blocked
        return [Problem(f"{folder} cannot be reached by {who.name}: the folder {where} "
                        f"({owner(bst)}) is not searchable by it",
                        f"chmod o+x {where}, or put state_dir elsewhere")]
    if not who.may(st, WRITE | SEARCH):
        return [Problem(f"{folder} is not writable by {who.name} ({owner(st)})",
                        f"chown -R {fix_owner} {folder}")]
    out: list[Problem] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            path = os.path.join(root, name)
            try:
                est = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISLNK(est.st_mode):
                continue
            want = WRITE | SEARCH if stat.S_ISDIR(est.st_mode) else READ | WRITE
            if not who.may(est, want):
                out.append(Problem(f"{path} is not writable by {who.name} ({owner(est)}): "
                                   "the daemon would fail on it",
                                   f"chown {fix_owner} {path}"))
                if len(out) >= limit:
                    return out
    return out


# -- SQLite ------------------------------------------------------------------------------

# SQLite's primary result codes that mean "the OS refused": SQLITE_PERM, SQLITE_READONLY,
# SQLITE_CANTOPEN (the extended codes keep these in their low byte).
SQLITE_PERMISSION_CODES = frozenset({3, 8, 14})


def database_problem(path: str, who: Who | None = None) -> Problem:
    """Why ``who`` (default: this process) cannot write the SQLite file ``path``: the
    file, one of its ``-wal``/``-shm``/``-journal`` sidecars, or its folder; with the
    command that fixes it."""
    who = who or Who.current()
    folder = os.path.dirname(os.path.abspath(path)) or "."
    try:
        fst = os.stat(folder)
    except OSError:
        fst = None
    state_owner = user_name(fst.st_uid) if fst is not None else who.name
    run_as = ("" if state_owner in (who.name, "root") else
              f"; or run socd as {state_owner}, the owner of {folder} (sudo -u {state_owner} "
              "socd ...)")
    blocked = _blocking_folder(path, who)
    if blocked is not None:
        where, st = blocked
        return Problem(f"{path}: the folder {where} ({owner(st)}) is not searchable by "
                       f"{who.name}", f"chown {who.name} {where}{run_as}")
    for candidate in (path, *(path + s for s in ("-wal", "-shm", "-journal"))):
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if not who.may(st, READ | WRITE):
            fix_to = state_owner if state_owner != "root" else who.name
            return Problem(f"{candidate} is not writable by {who.name} ({owner(st)})",
                           f"chown {fix_to}:{group_name(fst.st_gid if fst else st.st_gid)} "
                           f"{path}*{run_as if fix_to != state_owner else ''}")
    if fst is not None and not who.may(fst, WRITE | SEARCH):
        return Problem(f"{path}: its folder {folder} ({owner(fst)}) is not writable by "
                       f"{who.name}, and SQLite creates its -wal and -shm files there",
                       f"chown {who.name} {folder}{run_as}")
    if not os.path.exists(path):
        return Problem(f"{path} does not exist")
    return Problem(f"{path}: the file system refused the write (read-only mount?)",
                   "check `findmnt -T " + folder + "` and the unit's ReadWritePaths=")


def is_permission_error(exc: BaseException) -> bool:
    """An OSError or sqlite3 error that means "not allowed" rather than "broken"."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in SQLITE_PERMISSION_CODES
