"""TLS options of plugin configs, turned into contexts by the one builder (:mod:`socd.tls`).

The ``tls:`` sections: a client section (:class:`TlsClientConfig`: the MQTT collector
and notifier) and a server section (:class:`TlsServerConfig`: the webhook collector;
:class:`TlsListenerConfig`, which can also check client certificates: the syslog and
RELP listeners). Plugins whose TLS options are flat keys of their own config
(``ca_file``/``verify_certs`` of the HTTP and e-mail notifiers, the CEF sink's
``ca_file``/``cert_file``/``key_file``/``verify``, the sharing targets, the blocker's
EDL certificate) pass them to :func:`client_context_for` / :func:`server_context_for`.
Either way file names are resolved against the config file's folder here, and the
context is built by :func:`socd.tls.client_context` or :func:`socd.tls.server_context`.
"""

from __future__ import annotations

import ssl

from pydantic import Field, model_validator

from socd.config.models import StrictModel
from socd.config.paths import resolve_path
from socd.tls import client_context, closing_on_failure, server_context


def _resolved(base: str, p: str | None) -> str | None:
    """``p`` relative to the config file's folder ``base``; unset stays unset."""
    return resolve_path(base, p) if p else None


def client_context_for(config_dir: str, *, ca_file: str | None = None,
                       cert_file: str | None = None, key_file: str | None = None,
                       verify: bool = True, check_hostname: bool = True) -> ssl.SSLContext:
    """:func:`socd.tls.client_context` for files named in the config in ``config_dir``."""
    return client_context(ca_file=_resolved(config_dir, ca_file),
                          cert_file=_resolved(config_dir, cert_file),
                          key_file=_resolved(config_dir, key_file),
                          verify=verify, check_hostname=check_hostname)


def server_context_for(config_dir: str, *, cert_file: str, key_file: str,
                       ca_file: str | None = None,
                       require_client_cert: bool = False) -> ssl.SSLContext:
    """:func:`socd.tls.server_context` for files named in the config in ``config_dir``."""
    return server_context(cert_file=resolve_path(config_dir, cert_file),
                          key_file=resolve_path(config_dir, key_file),
                          ca_file=_resolved(config_dir, ca_file),
                          require_client_cert=require_client_cert)


class TlsClientConfig(StrictModel):
    """TLS to a server (an MQTT broker), with an optional client certificate."""

    ca_file: str | None = Field(None, description="CA bundle that signed the server "
                                "certificate; default: the system store.")
    cert_file: str | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: str | None = Field(None, description="Client private key.")
    verify_hostname: bool = Field(True, description="Check that the server certificate "
                                  "names the host.")

    def context(self, config_dir: str) -> ssl.SSLContext:
        """The client context; its sockets close themselves when the handshake fails
        (:func:`socd.tls.closing_on_failure`: paho, under aiomqtt, would leak them)."""
        return closing_on_failure(client_context_for(
            config_dir, ca_file=self.ca_file, cert_file=self.cert_file, key_file=self.key_file,
            check_hostname=self.verify_hostname))


class TlsServerConfig(StrictModel):
    """The certificate a listener presents."""

    cert_file: str = Field(description="Server certificate chain (PEM), relative to the "
                           "config file's folder.")
    key_file: str = Field(description="Private key of the certificate (PEM).")

    def context(self, config_dir: str) -> ssl.SSLContext:
        return server_context_for(config_dir, cert_file=self.cert_file, key_file=self.key_file)


class TlsListenerConfig(TlsServerConfig):
    """A listener's certificate, and the CA its clients' certificates are checked with."""

    ca_file: str | None = Field(None, description="CA bundle for client certificates.")
    require_client_cert: bool = Field(False, description="Mutual TLS: refuse clients "
                                      "without a certificate signed by `ca_file`.")

    @model_validator(mode="after")
    def _ca_for_mtls(self) -> TlsListenerConfig:
        if self.require_client_cert and not self.ca_file:
            raise ValueError("require_client_cert needs ca_file")
        return self

    def context(self, config_dir: str) -> ssl.SSLContext:
        return server_context_for(config_dir, cert_file=self.cert_file, key_file=self.key_file,
                                  ca_file=self.ca_file,
                                  require_client_cert=self.require_client_cert)
