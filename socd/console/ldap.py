"""Sign-in against an LDAP directory or Active Directory (``console.ldap``), with ldap3.

The user's password is checked by a simple bind as the user: with a DN made from
``user_dn_template``, or found by a search as the service account ``bind_dn``
(search-then-bind). The role comes from the user's groups (``group_roles``): found by
a search under ``group_search_base`` (``member``/``uniqueMember``), else from the
user's ``memberOf``. Names go into DNs and filters escaped (RFC 4514, RFC 4515), so a
user name cannot change the query. An empty password is refused before any bind: LDAP
treats a bind with a DN and no password as an anonymous bind that succeeds.

The connection is TLS (``ldaps://``) or upgraded with StartTLS, the server's certificate
checked against ``ca_file`` (or the system store). ldap3 blocks: every sign-in runs in a
thread, each network operation bounded by ``timeout_secs``. A directory that cannot be
reached is :class:`DirectoryUnavailable` (the sign-in page says so), not a wrong password.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import warnings
from dataclasses import dataclass
from typing import Any

import structlog

with warnings.catch_warnings():
    # ldap3 2.9.1 imports names pyasn1 0.6 deprecates (tagMap, typeMap): its problem,
    # not one to fail on (the tests turn warnings into errors).
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ldap3(\.|$)")
    from ldap3 import BASE, NONE, SUBTREE, Connection, Server, Tls
    from ldap3.core.exceptions import LDAPException, LDAPSocketOpenError, LDAPStartTLSError
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import escape_rdn

from socd.config.console import LdapConfig
from socd.config.tls import client_context_for
from socd.console.roles import Role
from socd.errors import SocdError
from socd.tls import closing_on_failure

log = structlog.get_logger("socd.console.ldap")

_MAX_GROUPS = 1000


class DirectoryUnavailable(SocdError):
    """The directory could not be asked (connection, TLS, timeout, service account)."""


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    """A user the directory signed in: DN, display name, role from its groups."""

    dn: str
    display_name: str
    role: Role
    groups: tuple[str, ...]


class _ContextTls(Tls):  # type: ignore[misc]  # ldap3 is untyped
    """ldap3's TLS with socd's context (:func:`socd.tls.client_context`): Python checks
    the certificate and the host name in the handshake. ldap3's own check calls
    ``ssl.match_hostname``, deprecated since Python 3.7 and gone in 3.12."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(validate=ssl.CERT_NONE)  # ldap3's checks off: the context's run
        self._context = context

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket, server_side=False, do_handshake_on_connect=do_handshake,
            server_hostname=connection.server.host)


class LdapAuthenticator:
    """Checks console sign-ins against the directory of ``cfg``."""

    def __init__(self, cfg: LdapConfig, config_dir: str) -> None:
        self.cfg = cfg
        context = client_context_for(config_dir, ca_file=cfg.ca_file, verify=cfg.verify)
        self._server = Server(cfg.url, use_ssl=cfg.url.startswith("ldaps://"),
                              tls=_ContextTls(closing_on_failure(context)),
                              connect_timeout=cfg.timeout_secs, get_info=NONE)
        self._roles = {_norm_dn(dn): Role.parse(role) for dn, role in cfg.group_roles.items()}

    async def authenticate(self, name: str, password: str) -> DirectoryUser | None:
        """The directory user ``name`` when ``password`` is theirs and a role maps;
        None when not (wrong password, unknown user, no mapped group)."""
        if not name or not password:
            return None
        return await asyncio.to_thread(self.authenticate_blocking, name, password)

    def authenticate_blocking(self, name: str, password: str) -> DirectoryUser | None:
        if not name or not password:
            return None
        try:
            return self._authenticate(name, password)
        except (LDAPSocketOpenError, LDAPStartTLSError, ssl.SSLError, OSError) as exc:
            raise DirectoryUnavailable(f"{self.cfg.url}: {exc}") from exc
        except LDAPException as exc:
            raise DirectoryUnavailable(f"{self.cfg.url}: {type(exc).__name__}: {exc}") from exc

    def _connection(self, user: str | None, password: str | None) -> Connection:
        # ldap3 packs receive_timeout into SO_RCVTIMEO as whole seconds.
        conn = Connection(self._server, user=user, password=password, read_only=True,
                          receive_timeout=math.ceil(self.cfg.timeout_secs),
                          raise_exceptions=False, auto_referrals=False)
        try:
            conn.open()
            if self.cfg.start_tls and not self.cfg.url.startswith("ldaps://"):
                self._start_tls(conn)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.unbind()
            # A socket whose connect failed is left open by ldap3.
            sock = getattr(conn, "socket", None)
            if sock is not None:
                sock.close()
            raise
        return conn

    def _start_tls(self, conn: Connection) -> None:
        if not conn.start_tls():
            raise DirectoryUnavailable(f"{self.cfg.url}: StartTLS refused: {conn.result}")

    def _authenticate(self, name: str, password: str) -> DirectoryUser | None:
        cfg = self.cfg
        if cfg.user_dn_template is not None:
            dn = cfg.user_dn_template.replace("{user}", escape_rdn(name))
        else:
            found = self._search_user(name)
            if found is None:
                return None
            dn = found
        conn = self._connection(dn, password)
        try:
            if not conn.bind():
                return None
            display, member_of = self._own_entry(conn, dn)
            groups = (self._search_groups(conn, dn, name) if cfg.group_search_base
                      else member_of)
        finally:
            conn.unbind()
        role = self._role(groups)
        if role is None:
            log.info("directory user has no console role", user=name, groups=len(groups))
            return None
        return DirectoryUser(dn, display or name, role, tuple(groups))

    def _search_user(self, name: str) -> str | None:
        cfg = self.cfg
        secret = cfg.bind_password.get_secret_value() if cfg.bind_password else None
        conn = self._connection(cfg.bind_dn, secret)
        try:
            if cfg.bind_dn is not None and not conn.bind():
                raise DirectoryUnavailable(f"{cfg.url}: the service account {cfg.bind_dn} "
                                           f"cannot bind: {conn.result.get('description')}")
            assert cfg.search_base is not None
            query = cfg.search_filter.replace("{user}", escape_filter_chars(name))
            conn.search(cfg.search_base, query, SUBTREE, attributes=[], size_limit=2)
            entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        finally:
            conn.unbind()
        if len(entries) != 1:  # none, or ambiguous: nobody signs in as "someone"
            return None
        return str(entries[0]["dn"])

    def _own_entry(self, conn: Connection, dn: str) -> tuple[str, list[str]]:
        attribute = self.cfg.display_name_attribute
        conn.search(dn, "(objectClass=*)", BASE, attributes=[attribute, "memberOf"])
        for entry in conn.response or []:
            if entry.get("type") != "searchResEntry":
                continue
            attrs: dict[str, Any] = entry.get("attributes", {})
            return _first(attrs.get(attribute)), [str(g) for g in
                                                   _values(attrs.get("memberOf"))]
        return "", []

    def _search_groups(self, conn: Connection, dn: str, name: str) -> list[str]:
        cfg = self.cfg
        assert cfg.group_search_base is not None
        query = (cfg.group_search_filter.replace("{dn}", escape_filter_chars(dn))
                 .replace("{user}", escape_filter_chars(name)))
        conn.search(cfg.group_search_base, query, SUBTREE, attributes=[],
                    size_limit=_MAX_GROUPS)
        return [str(e["dn"]) for e in conn.response or [] if e.get("type") == "searchResEntry"]

    def _role(self, groups: list[str]) -> Role | None:
        roles = [self._roles[n] for n in map(_norm_dn, groups) if n in self._roles]
        if roles:
            return max(roles)
        return Role.parse(self.cfg.default_role) if self.cfg.default_role else None


def _norm_dn(dn: str) -> str:
    """A DN for comparison: lower case, no spaces around its separators."""
    return ",".join("=".join(p.strip() for p in rdn.split("=", 1)) for rdn in
                    dn.lower().split(","))


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _first(value: Any) -> str:
    values = _values(value)
    return str(values[0]) if values else ""
