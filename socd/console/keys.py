"""The typed keys of the console's aiohttp application and requests.

Everything the core puts on the application (``app[SERVICES_KEY]``) or on a request
(``request[USER_KEY]``) is reached through these keys, so handlers get typed values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import jinja2

    from socd.config.console import ConsoleConfig
    from socd.console.ldap import LdapAuthenticator
    from socd.console.roles import ConsoleUser, Session
    from socd.console.services import ConsoleServices
    from socd.console.users import UserStore
    from socd.ratelimit import KeyedRateLimiter

# -- application keys -------------------------------------------------------------------
SERVICES_KEY: web.AppKey[ConsoleServices] = web.AppKey("socd_console_services")
CONFIG_KEY: web.AppKey[ConsoleConfig] = web.AppKey("socd_console_config")
USERS_KEY: web.AppKey[UserStore] = web.AppKey("socd_console_users")
JINJA_KEY: web.AppKey[jinja2.Environment] = web.AppKey("socd_console_jinja")
LDAP_KEY: web.AppKey[LdapAuthenticator | None] = web.AppKey("socd_console_ldap")
LOGIN_LIMIT_KEY: web.AppKey[KeyedRateLimiter] = web.AppKey("socd_console_login_limit")
#: Sign-in attempts per name that has no account (see socd.console.auth).
UNKNOWN_LIMIT_KEY: web.AppKey[KeyedRateLimiter] = web.AppKey("socd_console_unknown_limit")
AUDIT_PATH_KEY: web.AppKey[str] = web.AppKey("socd_console_audit_path")

# -- request keys -----------------------------------------------------------------------
USER_KEY: web.RequestKey[ConsoleUser | None] = web.RequestKey("socd_console_user")
SESSION_KEY: web.RequestKey[Session | None] = web.RequestKey("socd_console_session")
#: The CSRF token of a signed-out browser (the sign-in form's), from its pre-session cookie.
ANON_CSRF_KEY: web.RequestKey[str] = web.RequestKey("socd_console_anon_csrf")
LANG_KEY: web.RequestKey[str] = web.RequestKey("socd_console_lang")  # "vi" | "en"
#: The client's address: the peer, or what a trusted reverse proxy says it is.
CLIENT_KEY: web.RequestKey[str] = web.RequestKey("socd_console_client")
