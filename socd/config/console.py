"""The ``console:`` config section: the analyst console's listener, sign-in and sessions.

The console is off unless ``console.enabled`` is set, and the daemon starts its
listener only once a first administrator exists (``socd console create-admin``).
Cookies are ``Secure``: the browser must reach the console over HTTPS, either served
by socd itself (``tls``) or by a reverse proxy in front of it (``trusted_proxies``).
``dev_plain_http`` is the one exception, for a developer's loopback console only.
Secrets (the LDAP service account's password) are :class:`~pydantic.SecretStr`,
normally written as ``${VAR}``.
"""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from socd.config.models import HttpLimits, StrictModel
from socd.config.tls import TlsServerConfig

ConsoleRole = Literal["viewer", "analyst", "admin"]


class SessionConfig(StrictModel):
    """Server-side sessions: how long a signed-in browser stays signed in."""

    idle_timeout_secs: float = Field(
        1800.0, ge=60, le=86_400, description="A session unused for this long ends (the "
        "analyst signs in again).")
    absolute_timeout_secs: float = Field(
        43_200.0, ge=300, le=7 * 86_400, description="A session ends this long after "
        "sign-in whatever its use (a shift).")
    max_per_user: int = Field(
        20, ge=1, le=1000, description="Open sessions per user; signing in once more ends "
        "the oldest.")


class LockoutConfig(StrictModel):
    """Limits on guessing passwords, per account and per client address."""

    max_failures: int = Field(
        5, ge=1, le=100, description="Failed sign-ins of one account within `window_secs` "
        "that lock it.")
    window_secs: float = Field(900.0, gt=0, le=86_400,
                               description="The window the failures are counted in.")
    lock_secs: float = Field(900.0, gt=0, le=7 * 86_400,
                             description="How long a locked account refuses every sign-in.")
    per_address_per_minute: int = Field(
        20, ge=1, le=10_000, description="Sign-in attempts one client address may make per "
        "minute (more get 429), whatever the account.")


class LdapConfig(StrictModel):
    """Sign-in against an LDAP directory or Active Directory (simple bind as the user).

    The user's DN is ``user_dn_template`` with ``{user}`` replaced (escaped), or is found
    by searching ``search_base`` with ``search_filter`` as ``bind_dn``. The roles come
    from the user's groups: ``group_roles`` maps a group DN to a role (the highest
    wins); a user in none of them is refused unless ``default_role`` is set."""

    url: str = Field(description="`ldap://host:389` or `ldaps://host:636`.")
    start_tls: bool = Field(False, description="Upgrade an `ldap://` connection with "
                            "StartTLS before binding (never bind in clear text over a "
                            "network).")
    ca_file: str | None = Field(None, description="CA bundle (PEM) of the directory's "
                                "certificate, relative to the config file's folder; "
                                "default: the system store.")
    verify: bool = Field(True, description="Verify the directory's certificate.")
    user_dn_template: str | None = Field(
        None, description="The user's DN, `{user}` replaced by the escaped sign-in name: "
        "`uid={user},ou=people,dc=example,dc=vn`, or for AD `{user}@example.vn` (UPN).")
    bind_dn: str | None = Field(None, description="Service account that searches for the "
                                "user (search-then-bind).")
    bind_password: SecretStr | None = Field(None, description="Its password (`${VAR}`).")
    search_base: str | None = Field(None, description="Where users are searched.")
    search_filter: str = Field(
        "(uid={user})", description="How a user is found; `{user}` escaped. AD: "
        "`(sAMAccountName={user})`.")
    group_search_base: str | None = Field(
        None, description="Where groups are searched for the user's membership; unset: "
        "the user's `memberOf` attribute is read instead.")
    group_search_filter: str = Field(
        "(|(member={dn})(uniqueMember={dn}))", description="How the user's groups are "
        "found; `{dn}` (escaped) is the user's DN, `{user}` the name.")
    group_roles: dict[str, ConsoleRole] = Field(
        default_factory=dict, description="Group DN → role (`viewer`, `analyst`, `admin`); "
        "compared case-insensitively.")
    default_role: ConsoleRole | None = Field(
        None, description="Role of a directory user in none of `group_roles`; unset: such "
        "a user is refused.")
    display_name_attribute: str = Field("cn", description="Attribute shown as the user's "
                                        "name (AD: `displayName`).")
    timeout_secs: float = Field(5.0, gt=0, le=60, description="Connect and per-operation "
                                "timeout.")

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("ldap://", "ldaps://")):
            raise ValueError("must start with ldap:// or ldaps://")
        return value

    @model_validator(mode="after")
    def _encrypted(self) -> LdapConfig:
        host = urlsplit(self.url).hostname or ""
        if self.url.startswith("ldap://") and not self.start_tls and not _loopback(host):
            raise ValueError("users' passwords would cross the network in clear text: use "
                             "ldaps:// or start_tls: true")
        return self

    @model_validator(mode="after")
    def _how_to_find(self) -> LdapConfig:
        if (self.user_dn_template is None) == (self.search_base is None):
            raise ValueError("set either user_dn_template or search_base (search-then-bind)")
        if self.user_dn_template is not None and "{user}" not in self.user_dn_template:
            raise ValueError("user_dn_template must contain {user}")
        if self.search_base is not None and "{user}" not in self.search_filter:
            raise ValueError("search_filter must contain {user}")
        if (self.bind_dn is None) != (self.bind_password is None):
            raise ValueError("bind_dn and bind_password go together")
        if not self.group_roles and self.default_role is None:
            raise ValueError("map at least one group in group_roles, or set default_role")
        return self


class ConsoleConfig(StrictModel):
    """The analyst console (docs/console.md)."""

    enabled: bool = Field(False, description="Serve the console (once an administrator "
                          "exists: `socd console create-admin NAME`).")
    host: str = Field("127.0.0.1", description="Listen address; keep loopback behind a "
                      "reverse proxy.")
    port: int = Field(9443, ge=0, le=65535, description="Listen port; 0 picks a free one "
                      "(tests).")
    base_url: str | None = Field(
        None, description="The console's address as analysts reach it "
        "(`https://soc.example.vn`); notifications link to alert pages under it.")
    tls: TlsServerConfig | None = Field(None, description="Serve HTTPS with this "
                                        "certificate.")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="Addresses or CIDRs of reverse proxies that "
        "serve HTTPS in front of the console and whose `X-Forwarded-For` is believed (the "
        "client address of the sign-in limit and the audit log); from anyone else it is "
        "ignored.")
    dev_plain_http: bool = Field(
        False, description="Development only: plain HTTP on a loopback address, cookies "
        "without `Secure`. Refused with any other host.")
    users_db: str = Field("console-users.db", description="Local users and sessions "
                          "(SQLite), relative to state_dir.")
    session: SessionConfig = Field(SessionConfig(), description="How long a sign-in lasts.")
    lockout: LockoutConfig = Field(LockoutConfig(), description="Limits on guessing "
                                   "passwords.")
    ldap: LdapConfig | None = Field(None, description="Also sign users in against an LDAP "
                                    "directory or Active Directory.")
    alert_source: str = Field(
        "auto", min_length=1, max_length=100, description="Where the alert queue reads "
        "alerts: `auto` (the `sqlite` sink's store when there is one, else the first "
        "`elasticsearch` sink), `store` (the first `sqlite` sink), `elasticsearch` (the "
        "first `elasticsearch` sink), or the name of one `sqlite` or `elasticsearch` sink "
        "when there are several. Changes are always written to a `sqlite` sink's store "
        "(the named one, else the first).")
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024, description="Largest "
        "request body (an IoC appendix upload); more gets 413.")
    limits: HttpLimits = Field(HttpLimits(), description="Timeouts, connection caps and "
                               "header sizes of the console's listener.")

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"not an address or CIDR: {item!r}") from None
        return value

    @model_validator(mode="after")
    def _https(self) -> ConsoleConfig:
        if self.dev_plain_http:
            if not _loopback(self.host):
                raise ValueError("dev_plain_http is for a loopback host only (127.0.0.1, "
                                 "::1); serve TLS or put a reverse proxy in front")
            if self.tls is not None:
                raise ValueError("dev_plain_http and tls exclude each other")
        elif self.enabled and self.tls is None and not self.trusted_proxies:
            raise ValueError("the console's cookies are Secure: set tls (cert_file, "
                             "key_file), or trusted_proxies for a reverse proxy that serves "
                             "HTTPS, or dev_plain_http on loopback for development")
        return self

    @property
    def secure_cookies(self) -> bool:
        return not self.dev_plain_http


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
