"""The console's sign-in building blocks without a network: password hashing, the users
and sessions store (lockout, idle and absolute timeouts with time-machine), roles, the
per-address limiter, the catalogues and the ``console:`` config checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import time_machine
from argon2 import PasswordHasher

from socd import config as config_mod
from socd.console import i18n
from socd.console.passwords import (
    PasswordError,
    check_new,
    hash_password,
    needs_rehash,
    verify,
    verify_dummy,
)
from socd.console.roles import Role
from socd.console.users import UserError, UserStore, normalise_name
from socd.errors import ConfigError
from socd.ratelimit import KeyedRateLimiter

T0 = 1_800_000_000.0  # 2027-01-15


@pytest.fixture(scope="module")
def a_hash() -> str:
    return hash_password("đúng mật khẩu 2026")


@pytest.fixture
def store(tmp_path: Path, a_hash: str) -> UserStore:
    s = UserStore(str(tmp_path / "users.db"))
    s.add_user("Admin", Role.ADMIN, password_hash=a_hash, display_name="Quản trị")
    s.add_user("lan", Role.ANALYST, password_hash=a_hash)
    return s


# -- passwords ---------------------------------------------------------------------------


def test_argon2id_hash_and_verify(a_hash: str) -> None:
    assert a_hash.startswith("$argon2id$")
    assert verify(a_hash, "đúng mật khẩu 2026")
    assert not verify(a_hash, "sai mật khẩu 2026")
    assert not verify("not a hash", "đúng mật khẩu 2026")
    assert not verify(a_hash, "x" * 5000)  # absurd lengths are refused before hashing
    assert not verify_dummy("anything")


def test_passwords_are_compared_in_nfc(a_hash: str) -> None:
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "đúng mật khẩu 2026")
    assert decomposed != "đúng mật khẩu 2026"
    assert verify(a_hash, decomposed)


def test_new_password_rules() -> None:
    for bad in ("short", "x" * 1025, "has a\ttab in it", "x" * 11):
        with pytest.raises(PasswordError):
            check_new(bad)
    check_new("twelve chars")


def test_weaker_hash_needs_rehash(a_hash: str) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("p" * 12)
    assert needs_rehash(weak)
    assert not needs_rehash(a_hash)
    assert not needs_rehash("garbage")


# -- users ---------------------------------------------------------------------------------


def test_names_are_normalised(store: UserStore) -> None:
    assert normalise_name("  ADMIN ") == "admin"
    user = store.get("ADMIN")
    assert user is not None
    assert user.name == "admin"
    assert user.display_name == "Quản trị"
    for bad in ("", " ", "a\x00b", "tab\tname", "x" * 129, "line\nbreak"):
        with pytest.raises(UserError):
            normalise_name(bad)
    assert store.get("a\x00b") is None
    with pytest.raises(UserError, match="exists"):
        store.add_user("admin", Role.VIEWER, password_hash=None)


def test_roles_are_ordered() -> None:
    assert Role.VIEWER < Role.ANALYST < Role.ADMIN
    assert Role.parse(" Analyst ") is Role.ANALYST
    with pytest.raises(ValueError, match="roles: viewer, analyst, admin"):
        Role.parse("root")


def test_last_enabled_admin_is_kept(store: UserStore, a_hash: str) -> None:
    with pytest.raises(UserError, match="last enabled administrator"):
        store.set_role("admin", Role.ANALYST)
    with pytest.raises(UserError, match="last enabled administrator"):
        store.set_disabled("admin", True)
    store.add_user("minh", Role.ADMIN, password_hash=a_hash)
    store.set_disabled("admin", True)
    assert store.has_admin()
    with pytest.raises(UserError):
        store.set_role("minh", Role.VIEWER)


def test_directory_users_do_not_replace_local_ones(store: UserStore) -> None:
    with pytest.raises(UserError, match="local user"):
        store.upsert_directory_user("lan", Role.ADMIN, "Lan")
    hoa = store.upsert_directory_user("Hoa", Role.VIEWER, "Lê Thị Hoa")
    assert hoa.source == "ldap"
    assert hoa.password_hash is None
    again = store.upsert_directory_user("hoa", Role.ANALYST, "Lê Thị Hoa")
    assert again.role == Role.ANALYST


# -- lockout ---------------------------------------------------------------------------------


def _fail(store: UserStore, name: str = "lan") -> float | None:
    return store.record_failure(name, max_failures=3, window_secs=600, lock_secs=900)


def test_lockout_after_failures_within_the_window(store: UserStore) -> None:
    with time_machine.travel(T0, tick=False):
        assert _fail(store) is None
        assert _fail(store) is None
        until = _fail(store)
        assert until == T0 + 900
        assert store.locked_until("lan") == T0 + 900
        assert _fail(store) == T0 + 900  # further tries do not extend the lock
    with time_machine.travel(T0 + 901, tick=False):
        assert store.locked_until("lan") is None
        assert _fail(store) is None  # a fresh count after the lock


def test_failures_outside_the_window_do_not_add_up(store: UserStore) -> None:
    with time_machine.travel(T0, tick=False):
        _fail(store)
        _fail(store)
    with time_machine.travel(T0 + 601, tick=False):
        assert _fail(store) is None
        assert _fail(store) is None
        assert _fail(store) is not None


def test_success_clears_failures_and_unknown_names_are_not_stored(store: UserStore) -> None:
    _fail(store)
    _fail(store)
    store.clear_failures("lan")
    assert _fail(store) is None
    assert _fail(store, "nobody") is None
    assert [u.name for u in store.users()] == ["admin", "lan"]


def test_password_change_lifts_the_lock(store: UserStore, a_hash: str) -> None:
    for _ in range(3):
        _fail(store)
    assert store.locked_until("lan") is not None
    store.set_password_hash("lan", a_hash)
    assert store.locked_until("lan") is None


# -- sessions -------------------------------------------------------------------------------


def _session(store: UserStore, sid: str) -> object:
    return store.session(sid, idle_secs=1800, absolute_secs=43200)


def test_session_lookup_and_csrf(store: UserStore) -> None:
    sid, csrf = store.create_session("lan", Role.ANALYST, "192.0.2.1", max_per_user=5)
    assert len(sid) >= 43
    assert len(csrf) >= 43
    assert sid != csrf
    found = store.session(sid, idle_secs=1800, absolute_secs=43200)
    assert found is not None
    assert found.user.name == "lan"
    assert found.csrf == csrf
    assert found.role == Role.ANALYST
    assert store.session("not-a-session", idle_secs=1800, absolute_secs=43200) is None


def test_idle_timeout(store: UserStore) -> None:
    with time_machine.travel(T0, tick=False):
        sid, _ = store.create_session("lan", Role.ANALYST, "", max_per_user=5)
    with time_machine.travel(T0 + 1700, tick=False):
        assert _session(store, sid) is not None  # its use moves the idle clock
    with time_machine.travel(T0 + 1700 + 1799, tick=False):
        assert _session(store, sid) is not None
    with time_machine.travel(T0 + 1700 + 1799 + 1800, tick=False):
        assert _session(store, sid) is None
    assert store.session_count("lan") == 0  # an expired session is deleted


def test_absolute_timeout_whatever_the_use(store: UserStore) -> None:
    with time_machine.travel(T0, tick=False):
        sid, _ = store.create_session("lan", Role.ANALYST, "", max_per_user=5)
    for step in range(1, 28):  # used every 25 minutes: never idle, for 11 h 15 min
        with time_machine.travel(T0 + step * 1500, tick=False):
            assert _session(store, sid) is not None, step
    with time_machine.travel(T0 + 43200, tick=False):
        assert _session(store, sid) is None


def test_purge_deletes_expired_sessions(store: UserStore) -> None:
    with time_machine.travel(T0, tick=False):
        store.create_session("lan", Role.ANALYST, "", max_per_user=5)
        store.create_session("admin", Role.ADMIN, "", max_per_user=5)
    with time_machine.travel(T0 + 1800, tick=False):
        assert store.purge_sessions(idle_secs=1800, absolute_secs=43200) == 2
    assert store.session_count() == 0


def test_oldest_sessions_beyond_the_cap_end(store: UserStore) -> None:
    ids = []
    for i in range(4):
        with time_machine.travel(T0 + i, tick=False):
            ids.append(store.create_session("lan", Role.ANALYST, "", max_per_user=2)[0])
    with time_machine.travel(T0 + 10, tick=False):
        alive = [_session(store, sid) is not None for sid in ids]
    assert alive == [False, False, True, True]


def test_role_change_disable_and_password_end_sessions(store: UserStore, a_hash: str) -> None:
    for change in (lambda: store.set_role("lan", Role.VIEWER),
                   lambda: store.set_password_hash("lan", a_hash),
                   lambda: store.set_disabled("lan", True)):
        store.set_disabled("lan", False)
        sid, _ = store.create_session("lan", Role.ANALYST, "", max_per_user=5)
        change()
        assert _session(store, sid) is None


def test_a_session_never_has_more_than_its_users_role(store: UserStore) -> None:
    sid, _ = store.create_session("lan", Role.ADMIN, "", max_per_user=5)  # stale snapshot
    found = store.session(sid, idle_secs=1800, absolute_secs=43200)
    assert found is not None
    assert found.role == Role.ANALYST


def test_the_file_holds_digests_not_session_ids(store: UserStore, tmp_path: Path) -> None:
    sid, _ = store.create_session("lan", Role.ANALYST, "", max_per_user=5)
    store.close()
    data = b"".join(p.read_bytes() for p in tmp_path.glob("users.db*"))
    assert sid.encode() not in data


# -- the limiter, the catalogues, the config --------------------------------------------------


def test_keyed_rate_limiter() -> None:
    now = [0.0]
    limiter = KeyedRateLimiter(2, 60.0, max_keys=3, clock=lambda: now[0])
    assert limiter.hit("a")
    assert limiter.hit("a")
    assert not limiter.hit("a")
    assert limiter.retry_after("a") == 60.0
    assert limiter.hit("b")
    now[0] = 61.0
    assert limiter.hit("a")
    for key in ("c", "d", "e"):
        limiter.hit(key)
    assert len(limiter._hits) <= 3  # noqa: SLF001 - bounded memory is the point


def test_every_vietnamese_text_has_an_english_one() -> None:
    assert set(i18n.VI) == set(i18n.EN)
    assert i18n.translate("en", "nav.alerts") == "Alerts"
    assert i18n.translate("vi", "nav.alerts") == "Cảnh báo"
    assert i18n.translate("xx", "nav.alerts") == "Cảnh báo"
    assert i18n.translate("vi", "no.such.key") == "no.such.key"
    assert i18n.language_of("en", "vi") == "en"
    assert i18n.language_of("fr", "en") == "en"
    assert i18n.language_of("", "") == "vi"
    with pytest.raises(ValueError, match="twice"):
        i18n.extend({"nav.alerts": "khác"}, {})


@pytest.mark.parametrize(("section", "message"), [
    ("{enabled: true}", "cookies are Secure"),
    ("{enabled: true, dev_plain_http: true, host: 0.0.0.0}", "loopback host only"),
    ("{enabled: true, trusted_proxies: [not-a-cidr]}", "not an address or CIDR"),
    ("{ldap: {url: 'http://x'}}", "ldap:// or ldaps://"),
    ("{ldap: {url: 'ldaps://x', group_roles: {cn=a: admin}}}", "user_dn_template or"),
    ("{ldap: {url: 'ldaps://x', user_dn_template: 'uid=x', default_role: viewer}}",
     "must contain {user}"),
    ("{ldap: {url: 'ldaps://x', user_dn_template: 'uid={user}'}}", "group_roles"),
    ("{ldap: {url: 'ldaps://x', user_dn_template: 'uid={user}', default_role: root}}",
     "default_role"),
    ("{session: {idle_timeout_secs: 5}}", "idle_timeout_secs"),
    ("{ldap: {url: 'ldap://dc01.tinh.gov.vn', user_dn_template: 'uid={user}', "
     "default_role: viewer}}", "clear text"),
])
def test_bad_console_config_is_refused(section: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        config_mod.loads(f"console: {section}\n", file="socd.yaml")
    assert "socd.yaml" in str(info.value)
    assert "console" in str(info.value)


def test_console_is_off_by_default() -> None:
    cfg = config_mod.loads("{}\n", file="socd.yaml").document.console
    assert cfg.enabled is False
    assert cfg.host == "127.0.0.1"
    assert cfg.session.idle_timeout_secs == 1800
    assert cfg.session.absolute_timeout_secs == 12 * 3600
    assert cfg.secure_cookies


# -- CSRF, redirects and client addresses (no network) ----------------------------------------


def _request(headers: dict[str, str] | None = None, *, peer: str = "127.0.0.1",
             base_url: str | None = None, path: str = "/", method: str = "POST") -> Any:
    from unittest import mock

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from socd.config.console import ConsoleConfig
    from socd.console.keys import CONFIG_KEY

    app = web.Application()
    app[CONFIG_KEY] = ConsoleConfig(dev_plain_http=True, base_url=base_url)
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 40000) if name == "peername" else default)
    return make_mocked_request(method, path, headers={"Host": "console.local", **(headers or {})},
                               app=app, transport=transport)


def test_cross_site_requests_are_recognised() -> None:
    from socd.console.csrf import _cross_site

    assert not _cross_site(_request())
    assert not _cross_site(_request({"Origin": "https://console.local"}))
    assert not _cross_site(_request({"Sec-Fetch-Site": "same-origin"}))
    assert _cross_site(_request({"Sec-Fetch-Site": "cross-site"}))
    assert _cross_site(_request({"Origin": "null"}))
    assert _cross_site(_request({"Origin": "https://console.local.evil.example"}))
    assert not _cross_site(_request({"Origin": "https://soc.example.vn"},
                                    base_url="https://soc.example.vn"))


def test_next_is_a_local_path() -> None:
    from socd.console.app import _safe_next

    for bad in ("https://evil.example/", "//evil.example", "/\\evil.example", "evil",
                "/login?next=/x", "/x\r\nSet-Cookie: a=b", "/" + "a" * 3000):
        assert _safe_next(bad) == "/", bad
    assert _safe_next("/alerts?severity=high") == "/alerts?severity=high"


def test_forwarded_for_only_from_trusted_proxies() -> None:
    from socd.console.sessions import client_address

    forwarded = {"X-Forwarded-For": "198.51.100.7, 10.0.0.5"}
    assert client_address(_request(forwarded, peer="192.0.2.9"), []) == "192.0.2.9"
    assert client_address(_request(forwarded, peer="192.0.2.9"),
                          ["127.0.0.1/32"]) == "192.0.2.9"
    # From the proxy: the right-most address that is not a trusted proxy.
    assert client_address(_request(forwarded, peer="127.0.0.1"),
                          ["127.0.0.1/32", "10.0.0.0/8"]) == "198.51.100.7"
    assert client_address(_request({"X-Forwarded-For": "garbage, 203.0.113.4"},
                                   peer="127.0.0.1"), ["127.0.0.1/32"]) == "203.0.113.4"
    assert client_address(_request({}, peer="127.0.0.1"), ["127.0.0.1/32"]) == "127.0.0.1"


async def test_csrf_tokens_are_compared_whole() -> None:
    from aiohttp import web

    from socd.console.csrf import csrf_middleware
    from socd.console.keys import SESSION_KEY
    from socd.console.roles import ConsoleUser, Session

    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(text="done")

    user = ConsoleUser("lan", "Lan", Role.ANALYST, "local")
    for supplied, ok in (("t" * 43, True), ("t" * 42, False), ("t" * 44, False),
                         ("", False), ("T" * 43, False)):
        request = _request({"X-CSRF-Token": supplied} if supplied else {})
        request[SESSION_KEY] = Session("sid", "t" * 43, user, T0)
        if ok:
            assert (await csrf_middleware(request, handler)).status == 200
        else:
            with pytest.raises(web.HTTPForbidden):
                await csrf_middleware(request, handler)
    get = _request(method="GET")
    get[SESSION_KEY] = None
    assert (await csrf_middleware(get, handler)).status == 200  # reads need no token
