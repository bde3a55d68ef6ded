"""The console's security over real HTTP: the daemon's console listener on loopback.

Every state-changing route is found by enumerating the application's router (the
pages' routes included, whoever adds them), and each must refuse a missing or wrong
CSRF token and a viewer. Sign-in rotates the session id (no fixation), cookies carry
their flags, failed sign-ins lock the account, sign-out ends the session, and every
answer carries the security headers. No external service is needed: the marker is
``integration`` because a real listener and real files are used.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web

from socd.console.app import CSP
from socd.console.auth import is_public, required_role
from socd.console.csrf import UNSAFE_METHODS
from socd.console.roles import Role
from socd.console.users import UserStore
from tests.console_support import PASSWORDS, browser, running_console

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# State-changing routes open to every signed-in role: signing out.
_ANY_ROLE = {"logout"}
# Public state changes: signing in (with the pre-session CSRF token).
_PUBLIC = {"login_submit"}


def _unsafe_routes(app: web.Application) -> list[tuple[str, str, str]]:
    """(method, path with its parts filled, route name) of every state-changing route."""
    found = []
    for route in app.router.routes():
        if route.method not in UNSAFE_METHODS:
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter", "")
        path = re.sub(r"\{[^}]+\}", "1", path)
        found.append((route.method, path, route.name or path))
    return found


async def test_every_state_change_refuses_missing_or_wrong_csrf(tmp_path: Path) -> None:
    async with running_console(tmp_path) as console, browser(console) as b:
        assert console.http is not None
        routes = _unsafe_routes(console.http.app)
        assert ("POST", "/logout", "logout") in routes
        assert (await b.login("admin")).status == 303
        for method, path, name in routes:
            for token in ("", "wrong-" + b.csrf[6:]):
                answer = await b.request(method, path,
                                         data={"csrf_token": token} if token else None)
                assert answer.status == 403, (name, token, answer.status, answer.text[:200])
            header = await b.request(method, path, headers={"X-CSRF-Token": "x" * 43})
            assert header.status == 403, (name, header.status)
        # The session survived all of that: the token was what was refused.
        assert (await b.get("/")).status == 200


async def test_every_state_change_refuses_a_viewer(tmp_path: Path) -> None:
    async with running_console(tmp_path) as console, browser(console) as b:
        assert console.http is not None
        assert (await b.login("viewer")).status == 303
        await b.get("/")
        checked = 0
        for method, path, name in _unsafe_routes(console.http.app):
            if name in _ANY_ROLE | _PUBLIC:
                continue
            answer = await b.request(method, path, headers={"X-CSRF-Token": b.csrf})
            assert answer.status == 403, (name, answer.status, answer.text[:200])
            checked += 1
        # Every state-changing handler declares a role above viewer (the router check
        # above only sees routes this build has; this one fails for a forgotten one).
        for route in console.http.app.router.routes():
            if route.method in UNSAFE_METHODS and route.name not in _ANY_ROLE | _PUBLIC:
                role = required_role(route.handler)
                assert role is not None, route.name
                assert role > Role.VIEWER, route.name
            if route.method in ("GET", "HEAD") and not is_public(route.handler) \
                    and not isinstance(route.resource, web.StaticResource) \
                    and route.name not in ("login",):
                assert required_role(route.handler) is not None, route.name


async def test_signed_out_requests_go_to_the_sign_in_page(tmp_path: Path) -> None:
    async with running_console(tmp_path) as console, browser(console) as b:
        page = await b.get("/")
        assert page.status == 303
        assert page.location.startswith("/login?next=")
        htmx = await b.get("/alerts?severity=high", headers={"HX-Request": "true"})
        assert htmx.status == 401
        assert htmx.headers["HX-Redirect"] == "/login?next=/alerts?severity%3Dhigh"
        post = await b.post("/logout", headers={"HX-Request": "true",
                                                "HX-Current-URL": "https://soc/alerts/7"})
        assert post.status in (401, 403)
        static = await b.get("/static/htmx.min.js")
        assert static.status == 200
        assert "htmx" in static.text


async def test_session_id_is_rotated_at_sign_in(tmp_path: Path) -> None:
    """A session id planted before sign-in (or a previous session's) is never the one
    the signed-in browser gets, and the old one is dead afterwards."""
    async with running_console(tmp_path) as console, browser(console) as b:
        planted = "attacker-chosen-session-id-0123456789abcdef"
        b.cookies["__Host-socd_session"] = planted
        await b.get("/login")
        assert (await b.login("analyst")).status == 303
        first = b.cookies["__Host-socd_session"]
        assert first != planted
        assert (await b.get("/")).status == 200
        # Signing in again from a signed-in browser issues yet another id.
        await b.get("/login")
        again = await b.post("/login", {"name": "analyst",
                                         "password": PASSWORDS["analyst"]})
        assert again.status == 303
        second = b.cookies["__Host-socd_session"]
        assert second != first
        b.cookies["__Host-socd_session"] = first
        assert (await b.get("/")).status == 303  # the old session ended


async def test_cookie_flags(tmp_path: Path) -> None:
    async with running_console(tmp_path) as console, browser(console) as b:
        pre = await b.get("/login")
        presession = pre.cookies["__Host-socd_presession"]
        assert presession["secure"]
        assert presession["httponly"]
        answer = await b.login("admin")
        morsel = answer.cookies["__Host-socd_session"]
        assert morsel["secure"] is True
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "Strict"
        assert morsel["path"] == "/"
        assert not morsel["domain"]
        assert len(morsel.value) >= 43  # 256 random bits, base64url
        # The file holds a digest, never the id itself.
        data = (tmp_path / "state" / "console-users.db").read_bytes()
        assert morsel.value.encode() not in data


async def test_plain_http_dev_mode_has_no_secure_prefix(tmp_path: Path) -> None:
    async with running_console(tmp_path, trusted_proxies=[], dev_plain_http=True) as console, \
            browser(console) as b:
        answer = await b.login("admin")
        morsel = answer.cookies["socd_session"]
        assert not morsel["secure"]
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "Strict"
        assert "Strict-Transport-Security" not in answer.headers


async def test_lockout_after_failed_sign_ins(tmp_path: Path) -> None:
    async with running_console(tmp_path, lockout={"max_failures": 3}) as console, \
            browser(console) as b:
        for _ in range(2):
            answer = await b.login("analyst", "wrong password 1234")
            assert answer.status == 401
            assert "không đúng" in answer.text
        locked = await b.login("analyst", "wrong password 1234")
        assert locked.status == 401
        assert "tạm khoá" in locked.text
        # The right password does not open a locked account.
        right = await b.login("analyst")
        assert right.status == 401
        assert "tạm khoá" in right.text
        assert "__Host-socd_session" not in b.cookies
        # Another account is not affected.
        assert (await b.login("viewer")).status == 303
        # A name without an account answers the same sequence: the lockout does not
        # tell which names exist.
        b.cookies.clear()
        words = []
        for _ in range(3):
            text = (await b.login("no-such-user", "wrong password 1234")).text
            words.append("tạm khoá" if "tạm khoá" in text else
                         "không đúng" if "không đúng" in text else text[:100])
        assert words == ["không đúng", "không đúng", "tạm khoá"]


async def test_sign_in_rate_limit_per_address(tmp_path: Path) -> None:
    async with running_console(tmp_path,
                               lockout={"per_address_per_minute": 3}) as console, \
            browser(console) as b:
        statuses = [(await b.login(f"nobody{i}", "wrong password 1234")).status
                    for i in range(4)]
        assert statuses == [401, 401, 401, 429]
        # Behind the trusted proxy, another client address has its own budget.
        await b.get("/login")
        other = await b.post("/login", {"name": "viewer", "password": PASSWORDS["viewer"]},
                             headers={"X-Forwarded-For": "192.0.2.7"})
        assert other.status == 303


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(tmp_path: Path) -> None:
    async with running_console(tmp_path, trusted_proxies=["192.0.2.0/24"],
                               lockout={"per_address_per_minute": 2}) as console, \
            browser(console) as b:
        for i in range(2):
            await b.login(f"x{i}", "wrong password 1234")
        spoofed = await b.get("/login")
        assert spoofed.status == 200
        answer = await b.post("/login", {"name": "viewer", "password": PASSWORDS["viewer"]},
                              headers={"X-Forwarded-For": "198.51.100.9"})
        assert answer.status == 429


async def test_sign_out_ends_the_session(tmp_path: Path) -> None:
    async with running_console(tmp_path) as console, browser(console) as b:
        await b.login("analyst")
        session_id = b.cookies["__Host-socd_session"]
        await b.get("/")
        out = await b.post("/logout")
        assert out.status == 303
        assert "__Host-socd_session" not in b.cookies
        b.cookies["__Host-socd_session"] = session_id  # replayed: dead server-side
        assert (await b.get("/")).status == 303
        store = UserStore(str(tmp_path / "state" / "console-users.db"))
        try:
            assert store.session_count("analyst") == 0
        finally:
            store.close()


async def test_security_headers_on_every_kind_of_answer(tmp_path: Path) -> None:
    async with running_console(tmp_path) as console, browser(console) as b:
        answers = [await b.get("/login"), await b.get("/static/console.css"),
                   await b.get("/no-such-page"), await b.post("/logout", token="")]
        await b.login("viewer")
        answers += [await b.get("/"), await b.get("/no-such-page")]
        for answer in answers:
            h = answer.headers
            assert h["Content-Security-Policy"] == CSP
            assert "'unsafe-inline'" not in CSP
            assert h["X-Frame-Options"] == "DENY"
            assert h["X-Content-Type-Options"] == "nosniff"
            assert h["Referrer-Policy"] == "same-origin"
            assert h["Strict-Transport-Security"].startswith("max-age=")
        assert answers[-1].status == 404
        assert "Không tìm thấy trang" in answers[-1].text


async def test_cross_site_posts_are_refused_even_with_the_token(tmp_path: Path) -> None:
    async with running_console(tmp_path) as console, browser(console) as b:
        await b.login("admin")
        await b.get("/")
        for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"},
                        {"Origin": "null"}):
            assert (await b.post("/logout", headers=headers)).status == 403
        assert (await b.get("/")).status == 200


async def test_next_never_leaves_the_console(tmp_path: Path) -> None:
    async with running_console(tmp_path) as console, browser(console) as b:
        for target, expected in (("//evil.example/x", "/"), ("https://evil.example", "/"),
                                 ("/\\evil.example", "/"), ("/alerts?x=1", "/alerts?x=1")):
            b.cookies.pop("__Host-socd_session", None)
            await b.get("/login")
            answer = await b.post("/login", {"name": "viewer", "next": target,
                                             "password": PASSWORDS["viewer"]})
            assert answer.status == 303
            assert answer.location == expected, target


async def test_disabled_user_loses_its_session_and_cannot_sign_in(tmp_path: Path) -> None:
    async with running_console(tmp_path) as console, browser(console) as b:
        await b.login("analyst")
        assert (await b.get("/")).status == 200
        store = UserStore(str(tmp_path / "state" / "console-users.db"))
        try:
            store.set_disabled("analyst", True)
        finally:
            store.close()
        assert (await b.get("/")).status == 303
        assert (await b.login("analyst")).status == 401


async def test_sign_ins_are_audited_without_passwords(tmp_path: Path) -> None:
    from socd.alerts.audit import AuditLog, verify

    async with running_console(tmp_path) as console, browser(console) as b:
        await b.login("viewer", "wrong password 1234")
        await b.login("viewer")
        await b.get("/")
        await b.post("/logout")
    path = str(tmp_path / "state" / "audit.db")
    log = AuditLog(path, use_env=False)
    try:
        records = list(log.records())
    finally:
        log.close()
    assert [(r.action, r.actor, r.object_type) for r in records] == [
        ("login_failed", "viewer", "user"), ("login", "viewer", "user"),
        ("logout", "viewer", "user")]
    assert all(r.details["via"] == "console" for r in records)
    raw = (tmp_path / "state" / "audit.db").read_bytes()
    assert PASSWORDS["viewer"].encode() not in raw
    assert b"wrong password" not in raw
    assert verify(path, use_env=False).ok


async def test_no_listener_without_an_administrator(tmp_path: Path) -> None:
    async with running_console(tmp_path, users=False) as console:
        assert console.http is None
        assert console.url is None


async def test_served_over_tls_with_the_configured_certificate(tmp_path: Path) -> None:
    import ssl

    import aiohttp

    from tests.integration.slapd import make_certificates

    ca, cert, key = make_certificates(tmp_path / "tls")
    tls = {"cert_file": str(cert), "key_file": str(key)}
    async with running_console(tmp_path, trusted_proxies=[], tls=tls) as console:
        assert console.url is not None
        assert console.url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(ca))
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            async with session.get(console.url + "/login", ssl=trusted) as resp:
                assert resp.status == 200
                morsel = resp.cookies["__Host-socd_presession"]
                assert morsel["secure"]
            untrusted = ssl.create_default_context()  # the system CAs do not know it
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(console.url + "/login", ssl=untrusted)
            plain = console.url.replace("https://", "http://")
            with pytest.raises(aiohttp.ClientError):
                await session.get(plain + "/login")


async def test_a_weaker_hash_is_replaced_at_sign_in(tmp_path: Path) -> None:
    from argon2 import PasswordHasher

    from socd.console.passwords import needs_rehash

    async with running_console(tmp_path) as console, browser(console) as b:
        path = str(tmp_path / "state" / "console-users.db")
        store = UserStore(path)
        try:
            weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
            store.add_user("old", Role.ANALYST,
                           password_hash=weak.hash(PASSWORDS["analyst"]))
        finally:
            store.close()
        assert (await b.login("old", PASSWORDS["analyst"])).status == 303
        store = UserStore(path)
        try:
            user = store.get("old")
        finally:
            store.close()
        assert user is not None
        assert user.password_hash is not None
        assert not needs_rehash(user.password_hash)


async def test_origin_of_the_base_url_is_same_site(tmp_path: Path) -> None:
    """Behind a proxy that rewrites Host, the browser's Origin is the base URL's."""
    async with running_console(tmp_path, base_url="https://soc.example.vn") as console, \
            browser(console) as b:
        await b.login("admin")
        await b.get("/")
        same = await b.post("/logout", headers={"Origin": "https://soc.example.vn"})
        assert same.status == 303
        await b.login("admin")
        await b.get("/")
        other = await b.post("/logout", headers={"Origin": "https://soc.example.vn.evil"})
        assert other.status == 403


async def test_users_page_for_administrators(tmp_path: Path) -> None:
    from socd.alerts.audit import AuditLog

    async with running_console(tmp_path) as console, browser(console) as admin, \
            browser(console) as other:
        await other.login("analyst")
        assert (await other.get("/users")).status == 403
        assert "/users" not in (await other.get("/")).text  # not in an analyst's menu
        await admin.login("admin")
        page = await admin.get("/users")
        assert page.status == 200
        assert "Người dùng" in page.text
        assert 'href="/users"' in page.text
        new_password = "Mật khẩu của Hoa 2026"
        added = await admin.post("/users", {"name": "Hoa", "display_name": "Lê Thị Hoa",
                                            "role": "analyst", "password": new_password})
        assert added.status == 200
        assert "Đã thêm người dùng hoa" in added.text
        short = await admin.post("/users", {"name": "x", "role": "viewer",
                                            "password": "short"})
        assert short.status == 400
        assert "12 characters" in short.text
        other.cookies.clear()
        assert (await other.login("hoa", new_password)).status == 303
        assert (await other.get("/")).status == 200
        # A new role ends her session; disabling refuses her sign-in.
        assert (await admin.post("/users/hoa/role", {"role": "viewer"})).status == 200
        assert (await other.get("/")).status == 303
        assert (await admin.post("/users/hoa/disabled", {"disabled": "1"})).status == 200
        assert (await other.login("hoa", new_password)).status == 401
        assert (await admin.post("/users/hoa/disabled", {"disabled": "0"})).status == 200
        renewed = "Mật khẩu mới của Hoa 2027"
        assert (await admin.post("/users/hoa/password", {"password": renewed})).status == 200
        assert (await other.login("hoa", new_password)).status == 401
        assert (await other.login("hoa", renewed)).status == 303
        # The last enabled administrator stays one.
        last = await admin.post("/users/admin/disabled", {"disabled": "1"})
        assert last.status == 400
        assert "last enabled administrator" in last.text
        # An administrator who demotes themself is signed out.
        await admin.post("/users/hoa/role", {"role": "admin"})
        out = await admin.post("/users/admin/role", {"role": "analyst"})
        assert out.status == 303
        assert (await admin.get("/users")).status == 303
    log = AuditLog(str(tmp_path / "state" / "audit.db"), use_env=False)
    try:
        changes = [(r.action, r.actor, r.object_id) for r in log.records()
                   if r.action.startswith("user_")]
    finally:
        log.close()
    assert changes == [
        ("user_add", "admin", "hoa"), ("user_role", "admin", "hoa"),
        ("user_disable", "admin", "hoa"), ("user_enable", "admin", "hoa"),
        ("user_password", "admin", "hoa"), ("user_role", "admin", "hoa"),
        ("user_role", "admin", "admin")]
    raw = (tmp_path / "state" / "audit.db").read_bytes()
    assert "Mật khẩu".encode() not in raw


async def test_a_port_in_use_leaves_the_daemon_running_without_console(
        tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        async with running_console(tmp_path, port=port) as console:
            assert console.http is None
            assert console.url is None


async def test_a_refused_form_post_shows_the_error_page(tmp_path: Path) -> None:
    async with running_console(tmp_path) as console, browser(console) as b:
        await b.login("admin")
        await b.get("/")
        page = await b.post("/logout", token="", headers={"Accept": "text/html"})
        assert page.status == 403
        assert page.headers["Content-Type"].startswith("text/html")
        assert "Phiên biểu mẫu không hợp lệ" in page.text
        htmx = await b.post("/logout", token="", headers={"Accept": "text/html",
                                                           "HX-Request": "true"})
        assert htmx.status == 403
        assert htmx.headers["Content-Type"].startswith("text/plain")
