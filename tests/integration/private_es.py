"""A private Elasticsearch node for tests that must crash or restart it (the shared
one from `make services` is left alone).

It reuses the distribution ``scripts/services.sh`` unpacked (no download here), runs
as the same unprivileged user (``socd-es`` when we are root) with the same settings
(``deploy/dev/elasticsearch.yml.in``: single node, loopback, no security), on free
ports, with its own config/data/log/tmp directories under ``/tmp``. ``stop(SIGKILL)``
simulates a crash; ``start()`` again reuses the same data directory. A node that
cannot start makes the test fail with the tail of its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from glob import glob
from pathlib import Path
from typing import Any

from tests.conftest import REPO, SERVICES_DIR, free_port

ES_USER = os.environ.get("SOCD_ES_USER", "socd-es")
_CONFIG_FILES = ("log4j2.properties", "jvm.options", "roles.yml", "role_mapping.yml", "users",
                 "users_roles")


def _version() -> str:
    if "SOCD_ES_VERSION" in os.environ:
        return os.environ["SOCD_ES_VERSION"]
    services = SERVICES_DIR / "services.json"
    if services.exists():
        version = json.loads(services.read_text()).get("ES_VERSION")
        if version:
            return str(version)
    return "8.19.3"


def _java_home() -> str:
    if os.environ.get("ES_JAVA_HOME"):
        return os.environ["ES_JAVA_HOME"]
    for candidate in sorted(glob("/usr/lib/jvm/java-17-openjdk-*/bin/java")):
        return str(Path(candidate).resolve().parent.parent)
    java = shutil.which("java")
    if java is None:
        raise AssertionError("no Java runtime for Elasticsearch: run `make services` first")
    return str(Path(java).resolve().parent.parent)


class PrivateElasticsearch:
    """One single-node Elasticsearch; see the module documentation."""

    def __init__(self, *, heap: str = "512m", start_timeout: float = 240.0) -> None:
        self.version = _version()
        self.heap = heap
        self.start_timeout = start_timeout
        self.root = os.geteuid() == 0
        if self.root:
            try:
                user = pwd.getpwnam(ES_USER)
            except KeyError:
                raise AssertionError(f"user {ES_USER} is missing: run `make services` "
                                     "(scripts/services.sh creates it)") from None
            self.uid, self.gid = user.pw_uid, user.pw_gid
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
        self.dir = Path(tempfile.mkdtemp(prefix="socd-private-es-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.home = self._distribution()
        self.java_home = _java_home()
        self.http_port = free_port()
        self.transport_port = free_port()
        self.cluster = f"socd-private-{self.dir.name[-8:].lower()}"
        self.pidfile = self.dir / "elasticsearch.pid"
        self.marker = f"-Djava.io.tmpdir={self.dir / 'tmp'}"
        self._configure()

    # -- setup -------------------------------------------------------------------

    def _readable(self, home: Path) -> bool:
        jar = home / "lib" / f"elasticsearch-{self.version}.jar"
        if not jar.exists():
            return False
        if not self.root:
            return os.access(jar, os.R_OK)
        probe = subprocess.run(self._as_user("test", "-r", str(jar)), check=False,
                               capture_output=True)
        return probe.returncode == 0

    def _distribution(self) -> Path:
        """The unpacked distribution services.sh uses: its mirror beside the shared
        node's run dir, or the download cache (mirrored with hard links when the
        unprivileged user cannot read it, as services.sh does)."""
        candidates: list[Path] = []
        if os.environ.get("SOCD_ES_HOME"):
            candidates.append(Path(os.environ["SOCD_ES_HOME"]))
        shared = (SERVICES_DIR / "elasticsearch").resolve()
        candidates.append(shared / f"home-{self.version}")
        cache = Path(os.environ.get("SOCD_CACHE", Path.home() / ".cache" / "socd"))
        dist = cache / f"elasticsearch-{self.version}"
        candidates.append(dist)
        for home in candidates:
            if self._readable(home):
                return home
        if (dist / "bin" / "elasticsearch").exists():
            mirror = self.dir / f"home-{self.version}"
            result = subprocess.run(["cp", "-al", str(dist), str(mirror)], check=False,
                                    capture_output=True)
            if result.returncode != 0:
                shutil.rmtree(mirror, ignore_errors=True)
                shutil.copytree(dist, mirror, symlinks=True)
            if self._readable(mirror):
                return mirror
        raise AssertionError(
            f"no Elasticsearch {self.version} distribution readable by {ES_USER} (looked at "
            f"{', '.join(str(c) for c in candidates)}): run `make services` first")

    def _configure(self) -> None:
        conf = self.dir / "config"
        for sub in ("config", "config/jvm.options.d", "data", "logs", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        for name in _CONFIG_FILES:
            source = self.home / "config" / name
            if source.exists():
                shutil.copyfile(source, conf / name)
        template = (REPO / "deploy" / "dev" / "elasticsearch.yml.in").read_text()
        values = {"ES_HTTP_PORT": str(self.http_port),
                  "ES_TRANSPORT_PORT": str(self.transport_port),
                  "ES_DATA_DIR": str(self.dir / "data"), "ES_LOG_DIR": str(self.dir / "logs")}
        text = re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], template)
        text = re.sub(r"(?m)^cluster\.name:.*$", f"cluster.name: {self.cluster}", text)
        text = re.sub(r"(?m)^node\.name:.*$", f"node.name: {self.cluster}-1", text)
        (conf / "elasticsearch.yml").write_text(text)
        if self.root:
            for path in [self.dir, *self.dir.rglob("*")]:
                if not path.is_relative_to(self.dir / f"home-{self.version}"):
                    os.chown(path, self.uid, self.gid, follow_symlinks=False)

    def _as_user(self, *argv: str) -> list[str]:
        if not self.root:
            return list(argv)
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups",
                *argv]

    # -- lifecycle ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "logs" / f"{self.cluster}.log"

    def pid(self) -> int | None:
        """The server JVM's pid while it runs (checked against its command line)."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None
        if self.marker not in cmdline or state == "Z":
            return None
        return pid

    @property
    def running(self) -> bool:
        return self.pid() is not None

    def start(self) -> PrivateElasticsearch:
        """Start the node (on the existing data, if any) and wait until it is yellow."""
        if self.running:
            raise AssertionError("private elasticsearch is already running")
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        env = ["env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
               f"HOME={self.dir}", "LANG=C.UTF-8", f"ES_JAVA_HOME={self.java_home}",
               f"ES_PATH_CONF={self.dir / 'config'}", f"ES_TMPDIR={self.dir / 'tmp'}",
               f"ES_JAVA_OPTS=-Xms{self.heap} -Xmx{self.heap}"]
        argv = ["setsid", *self._as_user(*env, str(self.home / "bin" / "elasticsearch"),
                                         "-d", "-p", str(self.pidfile))]
        with open(self.dir / "launcher.log", "ab") as out:
            try:
                # -d: the launcher returns once the node has started (or failed).
                result = subprocess.run(argv, cwd=self.dir, stdin=subprocess.DEVNULL,
                                        stdout=out, stderr=subprocess.STDOUT,
                                        timeout=self.start_timeout, check=False)
            except subprocess.TimeoutExpired:
                self.kill_all()
                self._fail(f"launcher did not return within {self.start_timeout}s")
        if result.returncode != 0:
            self._fail(f"launcher exited with status {result.returncode}")
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.start_timeout)
        last = ""
        while time.monotonic() < deadline:
            if not self.running:
                self._fail("elasticsearch process died during startup")
            try:
                health = self.request("GET", "/_cluster/health?wait_for_status=yellow"
                                             "&timeout=2s")
                if health.get("status") in ("yellow", "green"):
                    return
                last = str(health.get("status"))
            except (OSError, urllib.error.URLError) as exc:
                last = str(exc)
            time.sleep(0.5)
        self._fail(f"not yellow after {timeout or self.start_timeout}s (last: {last})")

    def stop(self, sig: signal.Signals = signal.SIGKILL, timeout: float = 60.0) -> None:
        """Send ``sig`` (SIGKILL: a crash; SIGTERM: a clean stop) and wait for the end."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while self.pid() is not None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 30
            time.sleep(0.1)

    def kill_all(self) -> None:
        """SIGKILL every process of this node (also a launcher that lost its pid file)."""
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(self.dir) in cmdline and int(proc.name) != os.getpid():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(proc.name), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)

    def close(self) -> None:
        """Kill the node and delete its directory (always call this at teardown)."""
        self.kill_all()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback URL
            return json.load(resp)

    def log_tail(self, lines: int = 60) -> str:
        out = []
        for path in (self.log_path, self.dir / "launcher.log"):
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"----- {path} -----\n" + "\n".join(tail))
        return "\n".join(out) or "(no log written)"

    def _fail(self, message: str) -> None:
        raise AssertionError(f"private elasticsearch ({self.dir}): {message}\n{self.log_tail()}")
