"""A private, real Prometheus Alertmanager for the notifier tests.

Runs ``prometheus-alertmanager`` (Debian package, listed in
deploy/dev/apt-packages.txt and installed by `make services`) on a free loopback
port with its own storage directory, no clustering and one receiver that
discards everything, so alerts can be read back with ``GET /api/v2/alerts``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import free_port

CANDIDATES = ("prometheus-alertmanager", "alertmanager")
CONFIG = """\
route:
  receiver: discard
  group_by: ['...']
receivers:
  - name: discard
"""


def find_binary() -> str:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    for path in ("/usr/bin/prometheus-alertmanager", "/usr/local/bin/alertmanager"):
        if Path(path).exists():
            return path
    raise AssertionError("Alertmanager is not installed (/usr/bin/prometheus-alertmanager "
                         "missing): run `make services`, which installs "
                         "deploy/dev/apt-packages.txt")


class Alertmanager:
    """One Alertmanager process; use as a context manager."""

    def __init__(self, directory: Path) -> None:
        self.binary = find_binary()
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "alertmanager.log"

    def start(self, timeout: float = 60) -> None:
        config = self.dir / "alertmanager.yml"
        config.write_text(CONFIG)
        (self.dir / "data").mkdir(exist_ok=True)
        argv = [self.binary, f"--config.file={config}", f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
                "--log.level=warn"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"alertmanager exited with {self.proc.returncode}: "
                                     f"{self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"alertmanager not ready within {timeout}s: "
                             f"{self.log.read_text()[-2000:]}")

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts", timeout=10) as resp:
            data: list[dict[str, Any]] = json.loads(resp.read())
            return data

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc = None

    def __enter__(self) -> Alertmanager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
