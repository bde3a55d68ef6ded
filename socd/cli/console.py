"""``socd console``: the analyst console's users (``create-admin``, ``user add|set-role|
disable|enable|passwd|list``).

Users live in ``<state_dir>/<console.users_db>``. Passwords are read from
``--password-file`` (its first line), else typed at a prompt (twice), else from the
first line of standard input when it is not a terminal; never from the command line,
where ``ps`` and the shell history would show them. Every change is appended to the
audit log (``audit.db``, the chain alert and incident changes share) with who ran the
command, and a change of role, password or the disabled flag ends the user's sessions.
The daemon serves the console once an enabled administrator exists (after
``create-admin``, reload it: ``systemctl reload socd``).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import TYPE_CHECKING, Any

from socd.cli.common import (
    BY_HELP,
    EXIT_FAILURE,
    EXIT_OK,
    On,
    Subparsers,
    UsageError,
    WithConfig,
    fail,
    json_line,
    run_guarded,
    table,
)
from socd.cli.identity import UnknownActor, actor

if TYPE_CHECKING:
    from socd.console.users import UserStore

_ROLES = ("viewer", "analyst", "admin")


def register(sub: Subparsers, with_config: WithConfig) -> None:
    console = sub.add_parser("console", help="the analyst console: administrators and users")
    actions = console.add_subparsers(dest="console_command", required=True, metavar="ACTION")

    def common(p: argparse.ArgumentParser) -> None:
        with_config(p)
        p.add_argument("--by", help=BY_HELP)

    def password(p: argparse.ArgumentParser) -> None:
        p.add_argument("--password-file", metavar="FILE",
                       help="read the password from the first line of FILE (default: a "
                       "prompt, or standard input when it is not a terminal)")
        # `--password X` (or argparse's abbreviation of --password-file) would put the
        # password in `ps` and the shell history: refused, without repeating it.
        p.add_argument("--password", nargs="?", action=_RefusePassword, help=argparse.SUPPRESS)

    admin = actions.add_parser("create-admin", help="create an administrator (the console "
                               "is served once one exists)")
    common(admin)
    admin.add_argument("name", metavar="NAME")
    admin.add_argument("--display-name", default="", help="the name shown in the console")
    password(admin)
    admin.set_defaults(handler=_create_admin)

    users = actions.add_parser("user", help="local users of the console")
    user_actions = users.add_subparsers(dest="user_command", required=True, metavar="ACTION")

    add = user_actions.add_parser("add", help="add a local user")
    common(add)
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=_ROLES)
    add.add_argument("--display-name", default="")
    password(add)
    add.set_defaults(handler=_add)

    role = user_actions.add_parser("set-role", help="change a user's role (ends its sessions)")
    common(role)
    role.add_argument("name", metavar="NAME")
    role.add_argument("role", choices=_ROLES)
    role.set_defaults(handler=_set_role)

    for verb, helptext in (("disable", "refuse a user's sign-ins and end its sessions"),
                           ("enable", "let a disabled user sign in again")):
        p = user_actions.add_parser(verb, help=helptext)
        common(p)
        p.add_argument("name", metavar="NAME")
        p.set_defaults(handler=_disable if verb == "disable" else _enable)

    passwd = user_actions.add_parser("passwd", help="set a local user's password (ends its "
                                     "sessions, lifts a lockout)")
    common(passwd)
    passwd.add_argument("name", metavar="NAME")
    password(passwd)
    passwd.set_defaults(handler=_passwd)

    lst = user_actions.add_parser("list", help="list the users")
    with_config(lst)
    lst.add_argument("--json", action="store_true", help="one JSON object a line")
    lst.set_defaults(handler=_list)


# -- helpers ---------------------------------------------------------------------------


class _RefusePassword(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        parser.error("a password is never taken on the command line (ps and the shell "
                     "history would show it): use --password-file FILE, the prompt, or "
                     "standard input")


def _paths(args: argparse.Namespace) -> tuple[str, str]:
    """(users file, audit log) of ``-c CONFIG``."""
    from socd import config as config_mod
    from socd.cli.audit import audit_db_path
    from socd.console.app import users_db_path

    cfg = config_mod.load(args.config)
    return users_db_path(cfg.document.console, cfg.state_dir), audit_db_path(cfg)


def _guarded(args: argparse.Namespace, body: Any) -> int:
    """Run ``body(store, audit_path)``; the user store's refusals are failures."""
    from socd.console.passwords import PasswordError
    from socd.console.users import UserError, UserStore

    def run() -> int:
        users_path, audit_path = _paths(args)
        store = UserStore(users_path)
        try:
            return int(body(store, audit_path))
        finally:
            store.close()

    return run_guarded(run, On(UserError, EXIT_FAILURE), On(PasswordError, EXIT_FAILURE))


def read_password(path: str | None, *, confirm: bool = True) -> str:
    """The new password: the first line of ``path``, else a prompt (typed twice), else
    the first line of standard input."""
    if path:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Password again: ") != first:
            raise UsageError("the passwords differ; nothing was changed")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _who(args: argparse.Namespace) -> str:
    """Who runs the command (``--by``, ``$SUDO_USER``, the login...); where no name is
    known at all (a container without a login), the numeric user id. Running as the
    service account without ``--by`` is still refused (:func:`actor`)."""
    try:
        return actor(args.by)
    except UnknownActor:
        if any(os.environ.get(n) for n in ("SUDO_USER", "LOGNAME", "USER")):
            raise
        return f"uid:{os.getuid()}"


def _record(audit_path: str, args: argparse.Namespace, action: str, name: str,
            details: dict[str, Any]) -> None:
    from socd.alerts.audit import record

    record(audit_path, _who(args), "user", name, action, {**details, "via": "cli"})


def _new_user(args: argparse.Namespace, role_name: str) -> int:
    from socd.console.passwords import hash_password
    from socd.console.roles import Role

    def body(store: UserStore, audit_path: str) -> int:
        who = _who(args)  # before anything changes: refuse an unknown actor first
        password_hash = hash_password(read_password(args.password_file))
        user = store.add_user(args.name, Role.parse(role_name), password_hash=password_hash,
                              display_name=args.display_name)
        record_args = {"role": user.role.label, "display_name": user.display_name}
        _record(audit_path, args, "user_add", user.name, record_args)
        print(f"user {user.name} added ({user.role.label}) by {who}")
        return EXIT_OK

    return _guarded(args, body)


def _create_admin(args: argparse.Namespace) -> int:
    return _new_user(args, "admin")


def _add(args: argparse.Namespace) -> int:
    return _new_user(args, args.role)


def _set_role(args: argparse.Namespace) -> int:
    from socd.console.roles import Role

    def body(store: UserStore, audit_path: str) -> int:
        _who(args)
        before = store.get(args.name)
        user = store.set_role(args.name, Role.parse(args.role))
        _record(audit_path, args, "user_role", user.name,
                {"role_from": before.role.label if before else None,
                 "role_to": user.role.label})
        print(f"user {user.name} is now {user.role.label} (its sessions ended)")
        return EXIT_OK

    return _guarded(args, body)


def _switch(args: argparse.Namespace, disabled: bool) -> int:
    def body(store: UserStore, audit_path: str) -> int:
        _who(args)
        user = store.set_disabled(args.name, disabled)
        _record(audit_path, args, "user_disable" if disabled else "user_enable", user.name, {})
        print(f"user {user.name} {'disabled (its sessions ended)' if disabled else 'enabled'}")
        return EXIT_OK

    return _guarded(args, body)


def _disable(args: argparse.Namespace) -> int:
    return _switch(args, True)


def _enable(args: argparse.Namespace) -> int:
    return _switch(args, False)


def _passwd(args: argparse.Namespace) -> int:
    from socd.console.passwords import hash_password

    def body(store: UserStore, audit_path: str) -> int:
        _who(args)
        user = store.get(args.name)
        if user is None or user.source != "local":
            return fail(f"no local user {args.name!r} (directory users change their "
                        "password in the directory)")
        store.set_password_hash(user.name, hash_password(read_password(args.password_file)))
        _record(audit_path, args, "user_password", user.name, {})
        print(f"password of {user.name} changed (its sessions ended)")
        return EXIT_OK

    return _guarded(args, body)


def _list(args: argparse.Namespace) -> int:
    import time

    def body(store: UserStore, _audit_path: str) -> int:
        now = time.time()
        rows = []
        for user in store.users():
            locked = user.locked_until is not None and user.locked_until > now
            state = "disabled" if user.disabled else ("locked" if locked else "active")
            if args.json:
                print(json_line({"name": user.name, "display_name": user.display_name,
                                 "role": user.role.label, "source": user.source,
                                 "state": state, "sessions": store.session_count(user.name)}))
            else:
                rows.append([user.name, user.display_name, user.role.label, user.source,
                             state, str(store.session_count(user.name))])
        if not args.json:
            lines = table([["NAME", "DISPLAY NAME", "ROLE", "SOURCE", "STATE", "SESSIONS"],
                           *rows], right=(5,)) if rows else ["no users"]
            print("\n".join(lines))
        return EXIT_OK

    return _guarded(args, body)
