"""Console sign-in against a real directory: Debian's slapd in a temporary folder.

Simple bind as the user (DN template, or search-then-bind with a service account),
groups mapped to roles, StartTLS and LDAPS with the directory's certificate checked,
names escaped (a user name cannot widen the search), the anonymous-bind trap (an empty
password), an unreachable directory told apart from a wrong password, and the whole
path through the console's sign-in form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from socd.config.console import LdapConfig
from socd.console.ldap import DirectoryUnavailable, LdapAuthenticator
from socd.console.roles import Role
from socd.console.users import UserStore
from tests.conftest import free_port
from tests.console_support import browser, running_console
from tests.integration.slapd import (
    ADMINS,
    ANALYSTS,
    GROUPS,
    PEOPLE,
    PEOPLE_ENTRIES,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Directory,
    directory,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
__all__ = ["directory"]  # the fixture, imported for the tests of this module

ROLES = {ANALYSTS: "analyst", ADMINS: "admin"}


def _password(uid: str) -> str:
    return PEOPLE_ENTRIES[uid][1]


def _template(d: Directory, **extra: Any) -> LdapAuthenticator:
    options: dict[str, Any] = {"url": d.url, "start_tls": True, "ca_file": str(d.ca_file),
                               "user_dn_template": f"uid={{user}},{PEOPLE}",
                               "group_search_base": GROUPS, "group_roles": ROLES}
    options.update(extra)
    return LdapAuthenticator(LdapConfig(**options), "/")


def _search(d: Directory, **extra: Any) -> LdapAuthenticator:
    options: dict[str, Any] = {"url": d.ldaps_url, "ca_file": str(d.ca_file),
                               "bind_dn": SERVICE_DN, "bind_password": SERVICE_PASSWORD,
                               "search_base": PEOPLE, "search_filter": "(uid={user})",
                               "group_search_base": GROUPS, "group_roles": ROLES}
    options.update(extra)
    return LdapAuthenticator(LdapConfig(**options), "/")


async def test_template_bind_with_start_tls_maps_groups(directory: Directory) -> None:
    ldap = _template(directory)
    lan = await ldap.authenticate("lan", _password("lan"))
    assert lan is not None
    assert lan.role == Role.ANALYST
    assert lan.display_name == "Nguyễn Thị Lan"
    assert lan.dn == f"uid=lan,{PEOPLE}"
    minh = await ldap.authenticate("minh", _password("minh"))
    assert minh is not None
    assert minh.role == Role.ADMIN  # the highest of its groups


async def test_wrong_password_and_unknown_user(directory: Directory) -> None:
    ldap = _template(directory)
    assert await ldap.authenticate("lan", "not her password") is None
    assert await ldap.authenticate("lan", _password("minh")) is None
    assert await ldap.authenticate("nobody", "whatever password") is None


async def test_empty_password_is_not_an_anonymous_bind(directory: Directory) -> None:
    ldap = _template(directory)
    assert await ldap.authenticate("lan", "") is None
    assert ldap.authenticate_blocking("lan", "") is None


async def test_user_without_a_mapped_group(directory: Directory) -> None:
    assert await _template(directory).authenticate("hoa", _password("hoa")) is None
    hoa = await _template(directory, default_role="viewer").authenticate(
        "hoa", _password("hoa"))
    assert hoa is not None
    assert hoa.role == Role.VIEWER


async def test_search_then_bind_over_ldaps(directory: Directory) -> None:
    ldap = _search(directory)
    lan = await ldap.authenticate("lan", _password("lan"))
    assert lan is not None
    assert lan.role == Role.ANALYST
    assert await ldap.authenticate("lan", "wrong password") is None


async def test_names_cannot_change_the_search(directory: Directory) -> None:
    ldap = _search(directory)
    for name in ("*", "l*", "lan)(uid=*", "*)(|(uid=*", "lan\\2a"):
        assert await ldap.authenticate(name, _password("lan")) is None, name
    template = _template(directory)
    for name in ("lan,ou=people", "lan+cn=x", "*"):
        assert await template.authenticate(name, _password("lan")) is None, name


async def test_bad_service_account_is_unavailable_not_wrong(directory: Directory) -> None:
    with pytest.raises(DirectoryUnavailable, match="service account"):
        await _search(directory, bind_password="wrong").authenticate("lan", _password("lan"))


async def test_unreachable_directory(directory: Directory) -> None:
    closed = f"ldap://127.0.0.1:{free_port()}"
    with pytest.raises(DirectoryUnavailable):
        await _template(directory, url=closed, timeout_secs=2).authenticate(
            "lan", _password("lan"))


async def test_certificate_is_checked(directory: Directory, tmp_path: Path) -> None:
    from tests.integration.slapd import make_certificates

    other_ca, _, _ = make_certificates(tmp_path / "other")
    for ldap in (_search(directory, ca_file=str(other_ca)),
                 _template(directory, ca_file=str(other_ca))):
        with pytest.raises(DirectoryUnavailable):
            await ldap.authenticate("lan", _password("lan"))


async def test_sign_in_through_the_console(directory: Directory, tmp_path: Path) -> None:
    ldap = {"url": directory.ldaps_url, "ca_file": str(directory.ca_file),
            "user_dn_template": f"uid={{user}},{PEOPLE}", "group_search_base": GROUPS,
            "group_roles": ROLES, "display_name_attribute": "cn"}
    async with running_console(tmp_path, ldap=ldap) as console, browser(console) as b:
        assert (await b.login("lan", "wrong password")).status == 401
        answer = await b.login("lan", _password("lan"))
        assert answer.status == 303, answer.text[:300]
        home = await b.get("/")
        assert home.status == 200
        assert "Nguyễn Thị Lan" in home.text
        assert "phân tích viên" in home.text
        # A local user keeps signing in locally (the directory is not asked).
        b.cookies.clear()
        assert (await b.login("viewer")).status == 303
        # A directory user disabled at the console is refused although the
        # directory accepts the password.
        store = UserStore(str(tmp_path / "state" / "console-users.db"))
        try:
            row = store.get("lan")
            assert row is not None
            assert row.source == "ldap"
            assert row.password_hash is None
            store.set_disabled("lan", True)
        finally:
            store.close()
        b.cookies.clear()
        assert (await b.login("lan", _password("lan"))).status == 401
