"""A private Mosquitto for tests that must restart the broker or change its
listeners (TLS, passwords); the shared one from `make services` is left alone."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port


def _run(*argv: str, cwd: Path) -> None:
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)


def make_pki(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client one."""
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=socd test CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", "server.ext"]), ("client", [])):
        _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=socd-{name}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        _run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey",
             "ca.key", "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", *ext, cwd=d)
    for f in d.iterdir():
        f.chmod(0o644)
    return {k: d / f"{k}" for k in ("ca.crt", "server.crt", "server.key", "client.crt",
                                     "client.key")}


class PrivateBroker:
    """Mosquitto on free loopback ports, with persistence, restartable."""

    def __init__(self, directory: Path, *, tls: dict[str, Path] | None = None,
                 users: dict[str, str] | None = None) -> None:
        if not shutil.which("mosquitto") and not Path("/usr/sbin/mosquitto").exists():
            raise AssertionError("mosquitto is not installed: run `make services`")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {self.dir}/",
            "autosave_interval 1",
            "max_inflight_messages 1000",
            "max_queued_messages 1000000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "user root",
        ]
        if users:
            pwfile = self.dir / "passwd"
            first = True
            for user, password in users.items():
                args = ["mosquitto_passwd", "-b"] + (["-c"] if first else [])
                subprocess.run([*args, str(pwfile), user, password], check=True,
                               capture_output=True)
                first = False
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines += ["allow_anonymous true"]
        if tls:
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {tls['ca.crt']}",
                      f"certfile {tls['server.crt']}", f"keyfile {tls['server.key']}",
                      "require_certificate true", "tls_version tlsv1.2"]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> PrivateBroker:
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.log = open(self.dir / "mosquitto.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([mosquitto, "-c", str(self.conf)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.dir / "mosquitto.log").read_text()
                raise AssertionError(f"mosquitto exited: {log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # saves the persistence file
            self.proc.wait(20)
            self.log.close()
        self.proc = None

    def services(self) -> dict[str, object]:
        return {"MQTT_HOST": "127.0.0.1", "MQTT_PORT": self.port}
