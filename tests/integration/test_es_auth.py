"""Authentication and TLS of the Elasticsearch sink, end to end.

The test Elasticsearch runs without security, so each test puts a real
TLS-terminating, credential-checking reverse proxy in front of it: an aiohttp
server with a certificate signed by a CA the test makes (openssl), which answers
401 like Elasticsearch's security layer unless the ``Authorization`` header holds
the expected Basic credentials or API key, and forwards everything else to the
real server.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from structlog.testing import capture_logs

from socd.alerting.elasticsearch import ElasticsearchSink
from socd.app.deadletter import DeadLetter
from socd.errors import HealthCheckError, SinkError
from socd.event import fingerprint, normalize, set_severity
from socd.plugins import PluginContext
from socd.severity import Severity
from tests.conftest import REPO
from tests.helpers import es_client, es_count
from tests.integration.test_elasticsearch_sink import cleanup

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

USER = "socd_writer"
PASSWORD = "s3cret-Pw-for-tests"
API_KEY = base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw").decode()


def _openssl(*args: str, cwd: Path) -> None:
    try:
        subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True,
                       timeout=60)
    except FileNotFoundError:
        pytest.fail("the openssl CLI is needed to make the test certificates", pytrace=False)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"openssl {' '.join(args)} failed: {exc.stderr.decode()}", pytrace=False)


def make_ca(directory: Path, name: str) -> Path:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=socd test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    return directory / f"{name}.pem"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("es-tls")
    ca = make_ca(d, "ca")
    other_ca = make_ca(d, "other-ca")
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid,issuer\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
             cwd=d)
    return {"ca": ca, "other_ca": other_ca, "cert": d / "server.pem", "key": d / "server.key"}


class AuthProxy:
    """HTTPS in, the real Elasticsearch out; 401 without the right credentials."""

    def __init__(self, upstream: str, certs: dict[str, Path]) -> None:
        self.upstream = upstream.rstrip("/")
        self.accepted = {
            "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
            f"ApiKey {API_KEY}",
        }
        self.ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ssl.load_cert_chain(certs["cert"], certs["key"])
        self.schemes: list[str] = []  # the auth scheme of every request seen
        self.refused = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        self.schemes.append(auth.split(" ", 1)[0])
        if auth not in self.accepted:
            self.refused += 1
            return web.json_response(
                {"error": {"type": "security_exception",
                           "reason": "unable to authenticate user [socd_writer] for REST "
                           f"request [{request.path}]"}, "status": 401},
                status=401, headers={"WWW-Authenticate": 'Basic realm="security", ApiKey',
                                     "X-Elastic-Product": "Elasticsearch"})
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "accept")}
        async with self._session.request(request.method, self.upstream + request.path_qs,
                                         data=await request.read(), headers=headers) as resp:
            body = await resp.read()
            out = {k: v for k, v in resp.headers.items()
                   if k.lower() in ("content-type", "content-encoding", "x-elastic-product",
                                    "warning")}
            return web.Response(status=resp.status, body=body, headers=out)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


@pytest.fixture
async def proxy(services: dict[str, Any], certs: dict[str, Path]) -> AsyncIterator[AuthProxy]:
    p = AuthProxy(services["ES_URL"], certs)
    await p.start()
    yield p
    await p.close()


@pytest.fixture
def prefix(services: dict[str, Any], unique: str):
    prefix = f"socd-it-auth-{unique}"
    yield prefix
    es = es_client(services)
    cleanup(es, prefix)
    es.close()


def _events(n: int, run: str) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        event: dict[str, Any] = {
            "@timestamp": f"2026-11-16T08:00:{i:02d}+07:00",
            "event": {"kind": "alert", "id": f"{run}-{i}", "hash": fingerprint(run, str(i))},
            "host": {"name": "srv-01", "ip": "10.10.20.11"},
            "socd": {"layer": 2, "asset_kind": "server", "collector": "test"},
            "message": "Đăng nhập SSH thất bại nhiều lần",
        }
        set_severity(event, Severity.HIGH)
        out.append(normalize(event))
    return out


@pytest.fixture
async def make_sink(prefix: str, tmp_path: Path):
    started: list[tuple[ElasticsearchSink, DeadLetter]] = []

    async def make(**options: Any) -> ElasticsearchSink:
        dead = DeadLetter(str(tmp_path / "dl"))
        config = ElasticsearchSink.Config(type="elasticsearch", index_prefix=prefix,
                                          refresh=True, request_timeout_secs=10, **options)
        s = ElasticsearchSink(config, PluginContext(name="es", dead_letter=dead))
        started.append((s, dead))
        await s.start()
        return s

    yield make
    for s, dead in started:
        await s.close()
        dead.close()


async def test_basic_auth_over_tls_with_the_ca_file(make_sink, proxy, certs, services, prefix,
                                                    unique):
    sink = await make_sink(hosts=[proxy.url], username=USER, password=PASSWORD,
                           ca_file=str(certs["ca"]))
    await sink.healthcheck()
    await sink.write(_events(5, unique))
    assert proxy.refused == 0
    assert set(proxy.schemes) == {"Basic"}
    es = es_client(services)
    assert es_count(es, f"{prefix}-*") == 5
    es.close()


async def test_api_key(make_sink, proxy, certs, services, prefix, unique):
    sink = await make_sink(hosts=[proxy.url], api_key=API_KEY, ca_file=str(certs["ca"]))
    await sink.healthcheck()
    await sink.write(_events(3, unique))
    assert set(proxy.schemes) == {"ApiKey"}
    es = es_client(services)
    assert es_count(es, f"{prefix}-*") == 3
    es.close()


async def test_wrong_password_fails_clearly_and_keeps_the_alerts(
        make_sink, proxy, certs, unique, tmp_path: Path):
    with capture_logs() as logs:
        sink = await make_sink(hosts=[proxy.url], username=USER, password="wrong-password",
                               ca_file=str(certs["ca"]))
        with pytest.raises(HealthCheckError) as health:
            await sink.healthcheck()
        with pytest.raises(SinkError) as write:
            await sink.write(_events(3, unique))
    assert "authentication failed (401): check username/password" in str(health.value)
    assert "authentication failed (401)" in str(write.value)
    # Credentials are the operator's to fix: the batch is retried (and spooled), never
    # dead-lettered, and the log says so loudly.
    assert write.value.retryable
    assert not (tmp_path / "dl" / "dead-letter.ndjson").exists()
    assert any(e["log_level"] == "error" and "credentials" in e["event"] for e in logs)
    for text in (str(health.value), str(write.value), repr(logs)):
        assert "wrong-password" not in text
    assert proxy.refused >= 2


async def test_wrong_api_key_is_reported_as_such(make_sink, proxy, certs):
    bad = base64.b64encode(b"id:nope").decode()
    sink = await make_sink(hosts=[proxy.url], api_key=bad, ca_file=str(certs["ca"]))
    with pytest.raises(HealthCheckError, match=r"authentication failed \(401\): check api_key"):
        await sink.healthcheck()


async def test_tls_without_the_ca_is_a_clear_certificate_error(make_sink, proxy, unique):
    sink = await make_sink(hosts=[proxy.url], username=USER, password=PASSWORD)
    with pytest.raises(HealthCheckError) as health:
        await sink.healthcheck()
    message = str(health.value)
    assert "TLS failed" in message
    assert "CERTIFICATE_VERIFY_FAILED" in message or "certificate verify failed" in message
    assert "set ca_file to the CA that signed it" in message
    with pytest.raises(SinkError) as write:
        await sink.write(_events(1, unique))
    assert write.value.retryable
    assert "TLS failed" in str(write.value)
    assert proxy.schemes == []  # nothing got past the handshake


async def test_tls_with_another_ca_names_the_ca_file(make_sink, proxy, certs):
    sink = await make_sink(hosts=[proxy.url], username=USER, password=PASSWORD,
                           ca_file=str(certs["other_ca"]))
    with pytest.raises(HealthCheckError, match="not signed by ca_file"):
        await sink.healthcheck()


async def test_a_missing_ca_file_is_named(make_sink, proxy, unique, tmp_path: Path):
    missing = str(tmp_path / "no-such-ca.pem")
    sink = await make_sink(hosts=[proxy.url], username=USER, password=PASSWORD, ca_file=missing)
    with pytest.raises(HealthCheckError, match=f"ca_file {missing} is not a file"):
        await sink.healthcheck()
    with pytest.raises(SinkError, match="is not a file") as write:
        await sink.write(_events(1, unique))
    assert write.value.retryable


async def _check_config(path: Path) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "socd", "check-config", "--connect", "-c", str(path),
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_check_config_connect_through_the_proxy(proxy, certs, prefix, tmp_path: Path):
    def config(password: str) -> Path:
        path = tmp_path / f"socd-{password}.yaml"
        path.write_text(yaml.safe_dump({
            "state_dir": str(tmp_path / "state"),
            "sinks": {"es": {"type": "elasticsearch", "hosts": [proxy.url],
                             "index_prefix": prefix, "username": USER, "password": password,
                             "ca_file": str(certs["ca"])}},
        }))
        return path

    code, out, err = await _check_config(config(PASSWORD))
    assert code == 0, out + err
    assert "all reachable" in out

    code, out, err = await _check_config(config("not-the-password"))
    assert code != 0
    assert "health check failed: sink es" in err
    assert "authentication failed (401): check username/password" in err
    assert "not-the-password" not in out + err
