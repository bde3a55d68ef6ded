"""The ``email`` notifier against a real SMTP server (aiosmtpd) with STARTTLS, implicit
TLS and AUTH."""

from __future__ import annotations

import email
import email.policy
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from socd.alerting.notifiers.email import EmailNotifier
from socd.app.deadletter import DeadLetter
from socd.errors import HealthCheckError, NotifyError
from socd.plugins import PluginContext
from tests.conftest import free_port
from tests.integration.private_broker import make_pki
from tests.unit.test_notifiers import TEXT, TITLE, sample_notification

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

USER, PASSWORD = "soc-relay", "s3cret-pass-word"


@dataclass
class Mailbox:
    """The aiosmtpd handler: stores what was accepted, refuses some recipients."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    auth_attempts: list[str] = field(default_factory=list)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("unknown@"):
            return "550 5.1.1 no such user"
        if address.startswith("busy@"):
            return "451 4.3.0 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append({
            "from": envelope.mail_from, "to": list(envelope.rcpt_tos),
            "content": envelope.original_content or envelope.content,
            # STARTTLS sets session.ssl; implicit TLS shows on the transport only.
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": session.authenticated})
        return "250 2.0.0 queued"

    def authenticator(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        self.auth_attempts.append(mechanism)
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
              and auth_data.password == PASSWORD.encode())
        return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("smtp-pki"))


def _server_tls(pki: dict[str, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki["server.crt"], pki["server.key"])
    return ctx


@dataclass
class SmtpServer:
    mailbox: Mailbox
    port: int


def _run(mailbox: Mailbox, **kwargs: Any) -> Iterator[SmtpServer]:
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port,
                            authenticator=mailbox.authenticator, **kwargs)
    controller.start()
    try:
        yield SmtpServer(mailbox, port)
    finally:
        controller.stop()


@pytest.fixture
def starttls_server(pki: dict[str, Path]) -> Iterator[SmtpServer]:
    """Submission-style: STARTTLS required, AUTH required (only after TLS)."""
    yield from _run(Mailbox(), tls_context=_server_tls(pki), require_starttls=True,
                    auth_required=True)


@pytest.fixture
def implicit_tls_server(pki: dict[str, Path]) -> Iterator[SmtpServer]:
    # aiosmtpd counts only STARTTLS as TLS for `auth_require_tls`; the whole session
    # is encrypted here, so AUTH is offered without that check.
    yield from _run(Mailbox(), ssl_context=_server_tls(pki), auth_require_tls=False)


@pytest.fixture
def plain_server() -> Iterator[SmtpServer]:
    """A LAN relay without TLS or AUTH."""
    yield from _run(Mailbox(), auth_require_tls=True)


def notifier(port: int, tmp_path: Path, pki: dict[str, Path] | None = None,
             **options: Any) -> EmailNotifier:
    doc: dict[str, Any] = {
        "type": "email", "host": "127.0.0.1", "port": port, "username": USER,
        "password": PASSWORD, "from_addr": "SOC Tỉnh <soc@so-tttt.example.vn>",
        "to": ["analyst1@so-tttt.example.vn", "Trực ban <analyst2@so-tttt.example.vn>"],
        "cc": ["lanh-dao@so-tttt.example.vn"], "subject_prefix": "[SOC]",
        "timeout_secs": 20,
    }
    if pki is not None:
        doc["ca_file"] = str(pki["ca.crt"])
    doc.update(options)
    cfg = EmailNotifier.Config.model_validate(doc)
    ctx = PluginContext(name="mail", dead_letter=DeadLetter(str(tmp_path / "dl")),
                        config_dir=str(tmp_path))
    return EmailNotifier(cfg, ctx)


async def test_starttls_auth_delivers_vietnamese_mail(starttls_server: SmtpServer,
                                                      pki: dict[str, Path],
                                                      tmp_path: Path) -> None:
    mail = notifier(starttls_server.port, tmp_path, pki)
    await mail.start()
    try:
        await mail.healthcheck()
        assert starttls_server.mailbox.messages == []  # the health check sends nothing
        n = sample_notification()
        await mail.send(n)
        await mail.send(n)  # a retry: same Message-ID, so clients can drop it
    finally:
        await mail.close()
    first, second = starttls_server.mailbox.messages
    assert first["tls"]
    assert first["authenticated"]
    assert first["from"] == "soc@so-tttt.example.vn"
    assert first["to"] == ["analyst1@so-tttt.example.vn", "analyst2@so-tttt.example.vn",
                           "lanh-dao@so-tttt.example.vn"]
    msg = email.message_from_bytes(first["content"], policy=email.policy.default)
    assert msg["Subject"] == f"[SOC] {TITLE}"
    assert msg["From"].addresses[0].display_name == "SOC Tỉnh"
    assert msg["X-Socd-Severity"] == "critical"
    assert msg["X-Socd-Route"] == "critical-soc"
    assert msg["Message-ID"] == f"<socd.{n.id}@so-tttt.example.vn>"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None
    assert plain.get_content().replace("\r\n", "\n").rstrip("\n") == TEXT
    assert html is not None
    assert "<b>srv-01</b>" in html.get_content()
    again = email.message_from_bytes(second["content"], policy=email.policy.default)
    assert again["Message-ID"] == msg["Message-ID"]


async def test_implicit_tls(implicit_tls_server: SmtpServer, pki: dict[str, Path],
                            tmp_path: Path) -> None:
    mail = notifier(implicit_tls_server.port, tmp_path, pki, security="tls")
    try:
        await mail.healthcheck()
        await mail.send(sample_notification(html=None))
    finally:
        await mail.close()
    (got,) = implicit_tls_server.mailbox.messages
    assert got["tls"]
    msg = email.message_from_bytes(got["content"], policy=email.policy.default)
    assert msg.get_content_type() == "text/plain"


async def test_plain_relay_without_auth(plain_server: SmtpServer, tmp_path: Path) -> None:
    mail = notifier(plain_server.port, tmp_path, security="none", username=None,
                    password=None)
    try:
        await mail.healthcheck()
        await mail.send(sample_notification())
    finally:
        await mail.close()
    assert len(plain_server.mailbox.messages) == 1


async def test_wrong_password_is_final(starttls_server: SmtpServer, pki: dict[str, Path],
                                       tmp_path: Path) -> None:
    mail = notifier(starttls_server.port, tmp_path, pki, password="wrong-password")
    try:
        with pytest.raises(NotifyError) as info:
            await mail.send(sample_notification())
        with pytest.raises(HealthCheckError, match="535"):
            await mail.healthcheck()
    finally:
        await mail.close()
    assert not info.value.retryable
    assert "535" in str(info.value)
    assert "wrong-password" not in str(info.value)
    assert starttls_server.mailbox.messages == []


async def test_untrusted_certificate_fails(starttls_server: SmtpServer,
                                           tmp_path: Path) -> None:
    mail = notifier(starttls_server.port, tmp_path)  # no ca_file: the test CA is unknown
    try:
        with pytest.raises(NotifyError, match="(?i)certificate"):
            await mail.send(sample_notification())
        with pytest.raises(HealthCheckError):
            await mail.healthcheck()
    finally:
        await mail.close()
    assert starttls_server.mailbox.messages == []


async def test_starttls_required_but_not_offered(plain_server: SmtpServer,
                                                 tmp_path: Path) -> None:
    mail = notifier(plain_server.port, tmp_path, username=None, password=None)
    try:
        with pytest.raises(NotifyError, match="(?i)starttls") as info:
            await mail.send(sample_notification())
    finally:
        await mail.close()
    assert not info.value.retryable
    assert plain_server.mailbox.messages == []


async def test_server_not_listening_is_retryable(tmp_path: Path) -> None:
    mail = notifier(free_port(), tmp_path)
    try:
        with pytest.raises(NotifyError) as info:
            await mail.send(sample_notification())
        with pytest.raises(HealthCheckError):
            await mail.healthcheck()
    finally:
        await mail.close()
    assert info.value.retryable


async def test_some_recipients_refused(starttls_server: SmtpServer, pki: dict[str, Path],
                                       tmp_path: Path) -> None:
    mail = notifier(starttls_server.port, tmp_path, pki, cc=[],
                    to=["analyst1@so-tttt.example.vn", "unknown@so-tttt.example.vn"])
    try:
        await mail.send(sample_notification())  # accepted for one: done, not retried
    finally:
        await mail.close()
    (got,) = starttls_server.mailbox.messages
    assert got["to"] == ["analyst1@so-tttt.example.vn"]


@pytest.mark.parametrize(("to", "retryable"), [
    (["unknown@so-tttt.example.vn"], False),
    (["busy@so-tttt.example.vn"], True),
])
async def test_every_recipient_refused(starttls_server: SmtpServer, pki: dict[str, Path],
                                       tmp_path: Path, to: list[str],
                                       retryable: bool) -> None:
    mail = notifier(starttls_server.port, tmp_path, pki, to=to, cc=[])
    try:
        with pytest.raises(NotifyError) as info:
            await mail.send(sample_notification())
    finally:
        await mail.close()
    assert info.value.retryable is retryable
    assert starttls_server.mailbox.messages == []
