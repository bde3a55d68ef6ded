"""The console's words, in Vietnamese (the default) and English.

Templates call ``t("key")``; a key missing from the English catalogue falls back to the
Vietnamese text, and a key missing from both is shown as itself (and is a test
failure: tests/unit/test_console_auth.py renders every template). The pages' own keys
are added by :func:`extend` from the module that owns them (:mod:`socd.console.views`).
The language is ``?lang=`` (remembered in a cookie), else the cookie, else Vietnamese.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

LANGUAGES: Final = ("vi", "en")
DEFAULT: Final = "vi"

VI: dict[str, str] = {
    "app.name": "Bảng điều khiển SOC",
    "app.subtitle": "Trung tâm giám sát an toàn, an ninh mạng",
    "nav.alerts": "Cảnh báo",
    "nav.incidents": "Sự cố",
    "nav.iocs": "IoC",
    "nav.blocks": "Chặn",
    "nav.reports": "Báo cáo",
    "nav.health": "Tình trạng",
    "nav.users": "Người dùng",
    "nav.home": "Trang chủ",
    "user.signed_in_as": "Đăng nhập với tên",
    "user.logout": "Đăng xuất",
    "lang.switch": "English",
    "role.viewer": "xem",
    "role.analyst": "phân tích viên",
    "role.admin": "quản trị",
    "login.title": "Đăng nhập",
    "login.name": "Tên đăng nhập",
    "login.password": "Mật khẩu",
    "login.submit": "Đăng nhập",
    "login.failure": "Tên đăng nhập hoặc mật khẩu không đúng.",
    "login.locked": "Tài khoản tạm khoá do đăng nhập sai nhiều lần. Thử lại sau {minutes} "
                    "phút.",
    "login.rate_limited": "Quá nhiều lần đăng nhập từ địa chỉ này. Thử lại sau {seconds} giây.",
    "login.unavailable": "Không kết nối được máy chủ thư mục (LDAP). Thử lại sau.",
    "login.signed_out": "Đã đăng xuất.",
    "login.expired": "Phiên làm việc đã hết hạn, vui lòng đăng nhập lại.",
    "error.title": "Lỗi",
    "error.400": "Yêu cầu không hợp lệ.",
    "error.401": "Vui lòng đăng nhập.",
    "error.403": "Bạn không có quyền thực hiện thao tác này.",
    "error.403.csrf": "Phiên biểu mẫu không hợp lệ hoặc đã hết hạn. Tải lại trang và thử lại.",
    "error.404": "Không tìm thấy trang.",
    "error.405": "Phương thức không được phép.",
    "error.413": "Dữ liệu gửi lên quá lớn.",
    "error.429": "Quá nhiều yêu cầu. Thử lại sau.",
    "error.500": "Lỗi máy chủ. Sự việc đã được ghi lại.",
    "error.other": "Không thực hiện được yêu cầu.",
    "error.back": "Về trang chủ",
    "home.title": "Trang chủ",
    "home.welcome": "Chào mừng {name}.",
    "users.title": "Người dùng",
    "users.name": "Tên đăng nhập",
    "users.display_name": "Tên hiển thị",
    "users.role": "Vai trò",
    "users.source": "Nguồn",
    "users.source.local": "cục bộ",
    "users.source.ldap": "LDAP/AD",
    "users.state": "Trạng thái",
    "users.state.active": "đang hoạt động",
    "users.state.disabled": "đã vô hiệu hoá",
    "users.state.locked": "tạm khoá",
    "users.sessions": "Phiên",
    "users.set_role": "Đổi vai trò",
    "users.disable": "Vô hiệu hoá",
    "users.enable": "Kích hoạt lại",
    "users.new_password": "Mật khẩu mới",
    "users.set_password": "Đặt mật khẩu",
    "users.add": "Thêm người dùng",
    "users.add_submit": "Thêm",
    "users.password": "Mật khẩu",
    "users.hint": "Mật khẩu dài ít nhất 12 ký tự. Đổi vai trò, mật khẩu hoặc vô hiệu hoá sẽ "
                  "kết thúc các phiên đang mở của người dùng đó.",
    "users.added": "Đã thêm người dùng {user}.",
    "users.changed": "Đã cập nhật người dùng {user}.",
    "users.refused": "Không thực hiện được",
    "users.not_local": "chỉ người dùng cục bộ có mật khẩu trong socd (người dùng LDAP/AD "
                       "đổi mật khẩu trong thư mục)",
}

EN: dict[str, str] = {
    "app.name": "SOC console",
    "app.subtitle": "Security operations centre",
    "nav.alerts": "Alerts",
    "nav.incidents": "Incidents",
    "nav.iocs": "IoC",
    "nav.blocks": "Blocks",
    "nav.reports": "Reports",
    "nav.health": "Health",
    "nav.users": "Users",
    "nav.home": "Home",
    "user.signed_in_as": "Signed in as",
    "user.logout": "Sign out",
    "lang.switch": "Tiếng Việt",
    "role.viewer": "viewer",
    "role.analyst": "analyst",
    "role.admin": "admin",
    "login.title": "Sign in",
    "login.name": "User name",
    "login.password": "Password",
    "login.submit": "Sign in",
    "login.failure": "Wrong user name or password.",
    "login.locked": "Account locked after too many failed sign-ins. Try again in {minutes} "
                    "minutes.",
    "login.rate_limited": "Too many sign-ins from this address. Try again in {seconds} "
                          "seconds.",
    "login.unavailable": "The directory server (LDAP) cannot be reached. Try again later.",
    "login.signed_out": "Signed out.",
    "login.expired": "Your session expired; please sign in again.",
    "error.title": "Error",
    "error.400": "Bad request.",
    "error.401": "Please sign in.",
    "error.403": "You are not allowed to do this.",
    "error.403.csrf": "The form's session is invalid or expired. Reload the page and try "
                      "again.",
    "error.404": "Page not found.",
    "error.405": "Method not allowed.",
    "error.413": "What was sent is too large.",
    "error.429": "Too many requests. Try again later.",
    "error.500": "Server error. It has been logged.",
    "error.other": "The request could not be carried out.",
    "error.back": "Back to the start page",
    "home.title": "Home",
    "home.welcome": "Welcome, {name}.",
    "users.title": "Users",
    "users.name": "User name",
    "users.display_name": "Display name",
    "users.role": "Role",
    "users.source": "Source",
    "users.source.local": "local",
    "users.source.ldap": "LDAP/AD",
    "users.state": "State",
    "users.state.active": "active",
    "users.state.disabled": "disabled",
    "users.state.locked": "locked",
    "users.sessions": "Sessions",
    "users.set_role": "Set role",
    "users.disable": "Disable",
    "users.enable": "Enable",
    "users.new_password": "New password",
    "users.set_password": "Set password",
    "users.add": "Add a user",
    "users.add_submit": "Add",
    "users.password": "Password",
    "users.hint": "Passwords have at least 12 characters. A new role or password, or "
                  "disabling, ends that user's open sessions.",
    "users.added": "User {user} added.",
    "users.changed": "User {user} updated.",
    "users.refused": "Not done",
    "users.not_local": "only local users have a password in socd (directory users change "
                       "theirs in the directory)",
}

CATALOGS: Final[dict[str, dict[str, str]]] = {"vi": VI, "en": EN}


def extend(vi: Mapping[str, str], en: Mapping[str, str]) -> None:
    """Add a module's keys (the pages'); a key defined twice must say the same."""
    for catalog, new in ((VI, vi), (EN, en)):
        for key, text in new.items():
            if catalog.get(key, text) != text:
                raise ValueError(f"i18n key {key!r} defined twice with different texts")
            catalog[key] = text


def language_of(asked: str, cookie: str) -> str:
    """``?lang=`` when it names a language, else the cookie's, else Vietnamese."""
    for choice in (asked, cookie):
        if choice in LANGUAGES:
            return choice
    return DEFAULT


def translate(lang: str, key: str, **values: object) -> str:
    """The text of ``key`` in ``lang`` (Vietnamese when English lacks it), with
    ``{name}`` placeholders filled."""
    text = CATALOGS.get(lang, VI).get(key) or VI.get(key) or key
    return text.format(**values) if values else text
