"""The ``email`` notifier: one e-mail per notification over SMTP (aiosmtplib).

* Transport: ``security: starttls`` (default, port 587; the upgrade is required,
  never opportunistic), ``tls`` (implicit TLS, port 465) or ``none`` (port 25,
  for a relay on the same host or LAN). The server certificate is verified
  against the system store or ``ca_file``. ``username``/``password`` use AUTH
  (PLAIN or LOGIN, whichever the server offers).
* Message: ``Subject`` is the rendered title (RFC 2047 encoded UTF-8, so
  Vietnamese survives every mail client), ``text/plain`` is the text and, when
  the core rendered HTML, a ``text/html`` alternative follows. ``Message-ID``
  is derived from the notification id, which is stable across retries: a retry
  after a lost answer produces the same Message-ID, which mail stores and
  clients use to drop duplicates. ``X-Socd-Severity`` (code), ``X-Socd-Route``
  and ``Auto-Submitted: auto-generated`` (no vacation replies) are added.
* Errors: connection failures, timeouts and 4xx replies (and 421/450/451/452
  anywhere) are retryable; other 5xx replies (535 wrong password, 550 unknown
  mailbox, 554) are not. When the server refuses some recipients but accepts
  the message for others, the send counts as done (a retry would duplicate it
  for the accepted ones) and the refused addresses are logged.
* One SMTP session per message: alerts are rare enough and servers close idle
  sessions. The health check does connect, EHLO, STARTTLS, AUTH and QUIT and
  sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, parseaddr
from typing import Literal

import aiosmtplib
import structlog
from pydantic import Field, SecretStr, field_validator

from socd.config import NotifierConfig
from socd.config.tls import client_context_for
from socd.errors import HealthCheckError, NotifyError
from socd.plugins import Notification, PluginContext

from .common import severity_of

log = structlog.get_logger("socd.alerting.notifiers.email")

DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
# 5xx codes that RFC 5321 servers also use for temporary conditions.
RETRYABLE_CODES = frozenset({421, 450, 451, 452})
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_MSGID_SAFE = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def is_retryable_reply(code: int) -> bool:
    """Whether an SMTP reply code may succeed later (4xx yes, 5xx no)."""
    return code in RETRYABLE_CODES or 400 <= code < 500 or code < 0


def message_id(notification_id: str, domain: str) -> str:
    """A Message-ID that depends only on the notification id (stable across retries)."""
    local = notification_id if _MSGID_SAFE.match(notification_id) else \
        hashlib.sha256(notification_id.encode()).hexdigest()[:40]
    return f"<socd.{local}@{domain or 'socd.invalid'}>"


def build_message(notification: Notification, *, from_addr: str, to: Sequence[str],
                  cc: Sequence[str] = (), subject_prefix: str = "") -> EmailMessage:
    """The e-mail for one notification (pure, for tests)."""
    msg = EmailMessage(policy=SMTP_POLICY)
    subject = " ".join(notification.title.split())  # one line, even if a template broke it
    msg["Subject"] = f"{subject_prefix} {subject}".strip() if subject_prefix else subject
    msg["From"] = from_addr
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Date"] = formatdate(notification.created, localtime=False, usegmt=True)
    msg["Message-ID"] = message_id(notification.id, from_addr.rpartition("@")[2])
    msg["X-Socd-Severity"] = severity_of(notification).value
    msg["X-Socd-Route"] = notification.route
    msg["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps the message 7-bit clean for relays without 8BITMIME.
    msg.set_content(notification.text, subtype="plain", charset="utf-8",
                    cte="quoted-printable")
    if notification.html:
        msg.add_alternative(notification.html, subtype="html", charset="utf-8",
                            cte="quoted-printable")
    for filename, mime, content in notification.attachments:
        maintype, _, subtype = mime.partition("/")
        msg.add_attachment(content, maintype=maintype, subtype=subtype or "octet-stream",
                           filename=filename)
    return msg


def smtp_error(what: str, exc: BaseException) -> NotifyError:
    """Map an aiosmtplib exception to a :class:`NotifyError` (pure, for tests)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return NotifyError(f"{what}: every recipient refused: {detail}"[:500],
                           retryable=any(is_retryable_reply(c) for c in codes))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return NotifyError(f"{what}: SMTP {exc.code} {exc.message}"[:500],
                           retryable=is_retryable_reply(exc.code))
    if isinstance(exc, aiosmtplib.SMTPNotSupported) or type(exc) is aiosmtplib.SMTPException:
        # aiosmtplib raises the bare base class when STARTTLS or AUTH is not offered or
        # no AUTH mechanism fits: a configuration mismatch, not an outage.
        return NotifyError(f"{what}: {exc}", retryable=False)
    if isinstance(exc, TimeoutError):
        return NotifyError(f"{what}: timed out: {exc}", retryable=True)
    return NotifyError(f"{what}: {type(exc).__name__}: {exc}", retryable=True)


class EmailNotifier:
    """Sends each notification as one e-mail."""

    class Config(NotifierConfig):
        type: Literal["email"]
        host: str = Field(min_length=1, description="SMTP server (relay) host name.")
        port: int | None = Field(None, ge=1, le=65535, description="SMTP port; default 587 "
                                 "for starttls, 465 for tls, 25 for none.")
        security: Literal["starttls", "tls", "none"] = Field(
            "starttls", description="`starttls`: plain connection upgraded with STARTTLS "
            "(required); `tls`: implicit TLS; `none`: no encryption (a local relay only).")
        username: str | None = Field(None, description="AUTH user; unset: no AUTH.")
        password: SecretStr | None = Field(None, description="AUTH password.")
        from_addr: str = Field(description="Envelope sender and From address.")
        to: list[str] = Field(min_length=1, description="Recipients.")
        cc: list[str] = Field(default_factory=list, description="Copy recipients.")
        ca_file: str | None = Field(None, description="CA bundle that signed the server "
                                    "certificate (relative to the config file).")
        verify_certs: bool = Field(True, description="Verify the server certificate and "
                                   "name. Turn off only for a test server.")
        subject_prefix: str = Field("", description="Put before every subject, e.g. "
                                    "`[SOC]`, for mail filters.")
        local_hostname: str | None = Field(None, description="Name sent in EHLO; default "
                                           "the machine's FQDN.")

        @field_validator("from_addr")
        @classmethod
        def _one_address(cls, value: str) -> str:
            addr = _bare(value)
            if not _ADDRESS.match(addr):
                raise ValueError(f"{value!r} is not an e-mail address")
            return value

        @field_validator("to", "cc")
        @classmethod
        def _addresses(cls, values: list[str]) -> list[str]:
            for value in values:
                if not _ADDRESS.match(_bare(value)):
                    raise ValueError(f"{value!r} is not an e-mail address")
            return values

    def __init__(self, config: Config, ctx: PluginContext) -> None:
        self.name = ctx.name
        self.config = config
        self.ctx = ctx
        self.what = f"email {ctx.name}"
        self.port = config.port or DEFAULT_PORTS[config.security]
        self._tls: ssl.SSLContext | None = None

    def _client(self) -> aiosmtplib.SMTP:
        cfg = self.config
        if cfg.security != "none" and self._tls is None:
            self._tls = client_context_for(self.ctx.config_dir, ca_file=cfg.ca_file,
                                           verify=cfg.verify_certs)
        return aiosmtplib.SMTP(
            hostname=cfg.host, port=self.port, timeout=cfg.timeout_secs,
            use_tls=cfg.security == "tls", start_tls=cfg.security == "starttls",
            tls_context=self._tls if cfg.security != "none" else None,
            validate_certs=cfg.verify_certs, local_hostname=cfg.local_hostname)

    async def _session(self, smtp: aiosmtplib.SMTP) -> None:
        """Connect (EHLO, STARTTLS, EHLO) and log in."""
        cfg = self.config
        await smtp.connect()
        if cfg.username:
            password = cfg.password.get_secret_value() if cfg.password else ""
            await smtp.login(cfg.username, password)

    async def start(self) -> None:
        return None

    async def healthcheck(self) -> None:
        smtp = self._client()
        try:
            await self._session(smtp)
            await smtp.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise HealthCheckError(
                f"{smtp_error(self.what, exc)} ({self.config.host}:{self.port})") from None
        finally:
            await _closed(smtp)

    async def send(self, notification: Notification) -> None:
        cfg = self.config
        msg = build_message(notification, from_addr=cfg.from_addr, to=cfg.to, cc=cfg.cc,
                            subject_prefix=cfg.subject_prefix)
        recipients = [_bare(a) for a in (*cfg.to, *cfg.cc)]
        smtp = self._client()
        try:
            await self._session(smtp)
            refused, _ = await smtp.sendmail(_bare(cfg.from_addr), recipients, msg.as_bytes())
            # The message was accepted; a failed QUIT changes nothing.
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await smtp.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise smtp_error(self.what, exc) from None
        finally:
            await _closed(smtp)
        if refused:
            log.warning("recipients refused", notifier=self.name,
                        refused={k: f"{v.code} {v.message}" for k, v in refused.items()})

    async def close(self) -> None:
        return None


async def _closed(smtp: aiosmtplib.SMTP) -> None:
    """End the session's connection and return only once its socket is closed.

    asyncio closes a socket in the transport's ``connection_lost`` callback, one loop
    pass after ``close()``; and a graceful ``close()`` first waits for unsent data.
    After a failure (a refused certificate, no STARTTLS, a refused login, a timeout)
    nothing needs to be sent any more, so the transport is aborted: that schedules
    ``connection_lost`` at once, and since the loop runs callbacks in the order they
    were scheduled, one pass releases the socket (also when aiosmtplib already closed
    the connection itself). Without it the descriptor outlives ``send()``, and a loop
    that stops right then (shutdown, a test's end) drops it unclosed with a
    ``ResourceWarning``. After QUIT aiosmtplib has closed the connection already.
    """
    transport = smtp.transport
    if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
        transport.abort()
    smtp.close()
    await asyncio.sleep(0)


def _bare(value: str) -> str:
    """The address part of ``Name <addr@host>`` (or the value itself)."""
    return parseaddr(value)[1] or value.strip()
