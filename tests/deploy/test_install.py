"""Installation: the Debian package and scripts/install.sh.

WARNING: ``test_deb_install_check_config_purge`` MODIFIES THIS MACHINE. It needs
root and installs the socd package for real (``dpkg -i``: /opt/socd, /etc/socd,
/usr/lib/systemd/system/socd.service, the system user socd), then purges it. It
refuses to run (fails) when socd is already installed, so it never touches an
operator's installation, and its ``finally`` purges the package and deletes the
user socd if the test created it. It builds the package first with
scripts/build-deb.sh (a venv with every dependency: about a minute; pip's cache
makes it faster).

``test_service_runs_under_systemd`` boots the real systemd 252 of this machine as
PID 1 of new pid, mount, network, cgroup, UTS and IPC namespaces, on an overlay of
the root file system (writes go to a temporary upper layer), with a private /dev, and
installs the .deb there: the unit is started, reloaded and stopped by a real service
manager (this machine's own PID 1 is not systemd, so ``systemd-run`` is unavailable).
Units that would change global kernel state (sysctl, modules, binfmt, udev) are
masked in the overlay; the box's cgroup subtree and upper layer are removed at the end.

``test_install_script`` runs scripts/install.sh below a temporary root only.
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
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import REPO, analyze_security, parse_unit, sandboxed, tool, values
from tests.helpers import wait_for

pytestmark = pytest.mark.e2e

BUILD_TIMEOUT = 900  # scripts/install.sh builds a venv too


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)


def ok(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = run(argv, **kwargs)
    assert result.returncode == 0, f"{argv}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def package_installed(dpkg_query: str) -> bool:
    result = run([dpkg_query, "-W", "-f=${Status}", "socd"])
    return result.returncode == 0 and "installed" in result.stdout.split()[-1:]


def test_deb_contents(deb: Path) -> None:
    dpkg_deb = tool("dpkg-deb")
    control = ok([dpkg_deb, "-f", str(deb)]).stdout
    assert "Package: socd" in control
    assert "Depends: python3." in control
    # PDF reports (in the default reports.formats): WeasyPrint's libraries and a font
    # with Vietnamese glyphs.
    depends = ok([dpkg_deb, "-f", str(deb), "Depends"]).stdout
    for package in ("libpango-1.0-0", "libpangoft2-1.0-0", "fonts-dejavu-core"):
        assert package in depends, package
    names = ok([dpkg_deb, "-c", str(deb)]).stdout
    # All of docs/ (the shipped config points there), the man page, socd on PATH,
    # WeasyPrint in the venv.
    docs = sorted(p.relative_to(REPO / "docs") for p in (REPO / "docs").rglob("*")
                  if p.is_file())
    assert len(docs) > 20
    for doc in docs:
        assert f" ./opt/socd/share/doc/socd/{doc}\n" in names, doc
    assert " ./usr/share/man/man8/socd.8.gz\n" in names
    assert " ./usr/bin/socd -> /opt/socd/bin/socd\n" in names
    assert "/site-packages/weasyprint/__init__.py\n" in names
    for path in ("./opt/socd/bin/socd", "./opt/socd/pyvenv.cfg", "./etc/socd/socd.yaml",
                 "./etc/socd/socd.env", "./etc/socd/rules.d/README",
                 "./usr/lib/systemd/system/socd.service",
                 "./usr/lib/systemd/system/socd-blocker.service",
                 "./usr/lib/systemd/system/socd-blocker.socket", "./usr/lib/sysusers.d/socd.conf",
                 "./usr/lib/systemd/system/socd@.service",
                 "./opt/socd/share/doc/socd/examples/socd.service.d/sensor.conf",
                 "./opt/socd/share/doc/socd/examples/socd.service.d/blocking.conf",
                 "./opt/socd/share/doc/socd/deployment-systemd.md",
                 "./opt/socd/share/doc/socd/blocking.md"):
        assert f" {path}" in names, path
    conffiles = ok(["sh", "-c", f"{dpkg_deb} --ctrl-tarfile {deb} | tar -xOf - ./conffiles"])
    assert set(conffiles.stdout.split()) == {"/etc/socd/socd.yaml", "/etc/socd/socd.env",
                                             "/etc/socd/rules.d/README"}


def test_deb_install_check_config_purge(deb: Path) -> None:
    """dpkg -i, check the layout and the user, check-config as socd, dpkg --purge."""
    assert os.geteuid() == 0, "this test installs a package: it must run as root"
    dpkg, dpkg_query = tool("dpkg"), tool("dpkg-query")
    runuser, setpriv = tool("runuser"), tool("setpriv")
    assert not package_installed(dpkg_query), "socd is installed on this machine: not touching it"
    assert not Path("/opt/socd").exists(), "/opt/socd exists: not touching it"
    user_before = user_exists("socd")
    try:
        ok([dpkg, "-i", str(deb)], timeout=300)
        assert package_installed(dpkg_query)

        # Layout and ownership.
        socd = pwd.getpwnam("socd")
        assert socd.pw_dir == "/var/lib/socd"
        assert socd.pw_shell == "/usr/sbin/nologin"
        for path, mode, group in (("/etc/socd", 0o750, "socd"),
                                  ("/etc/socd/socd.yaml", 0o640, "socd"),
                                  ("/etc/socd/socd.env", 0o640, "socd")):
            st = Path(path).stat()
            assert st.st_uid == 0, path
            assert st.st_gid == socd.pw_gid, (path, group)
            assert st.st_mode & 0o777 == mode, (path, oct(st.st_mode))
        state = Path("/var/lib/socd").stat()
        assert (state.st_uid, state.st_mode & 0o777) == (socd.pw_uid, 0o750)
        assert Path("/etc/systemd/system/multi-user.target.wants/socd.service").is_symlink()
        python = Path("/opt/socd/bin/python3").resolve()
        assert str(python).startswith("/usr/bin/python3.")
        assert "/tmp" not in Path("/opt/socd/bin/socd").read_text().splitlines()[0]

        # The configuration as shipped is valid, for the service user.
        check = ["/opt/socd/bin/socd", "check-config", "-c", "/etc/socd/socd.yaml"]
        result = ok([runuser, "-u", "socd", "--", *check])
        assert "OK" in result.stdout
        # Also as the unit runs it: user socd, no capability, no W+X memory, only
        # AF_UNIX/AF_INET/AF_INET6 sockets.
        ok([setpriv, "--reuid=socd", "--regid=socd", "--init-groups", "--bounding-set=-all",
            "--inh-caps=-all", *sandboxed(check)],
           env={"PATH": "/usr/bin:/bin", "STATE_DIRECTORY": "/var/lib/socd",
                "PYTHONDONTWRITEBYTECODE": "1"})
        # Nothing writes byte code below /opt/socd when root runs the CLI either.
        ok(["/opt/socd/bin/socd", "--version"])

        # socd is on PATH, its man page and the documentation the config names are there.
        assert shutil.which("socd", path="/usr/bin:/bin") == "/usr/bin/socd"
        version = ok(["socd", "--version"], env={"PATH": "/usr/bin:/bin"}).stdout
        assert version.startswith("socd ")
        page = ok([tool("man"), "-P", "cat", "socd"],
                  env={"PATH": "/usr/bin:/bin", "MANWIDTH": "100"}).stdout
        page = re.sub(".\b", "", page)
        assert "socd - security-operations monitoring daemon" in page
        assert "socd ioc import" in page
        assert "/opt/socd/share/doc/socd/configuration.md" in page
        assert "/opt/socd/share/doc/socd/configuration.md" in Path(
            "/etc/socd/socd.yaml").read_text()
        for doc in ("configuration.md", "rules.md", "runbook.md", "sources/mqtt.md"):
            assert Path("/opt/socd/share/doc/socd", doc).is_file(), doc

        # PDF reports work as the unit runs socd (no W+X memory): check-config accepts
        # the default formats [html, pdf] and WeasyPrint lays out Vietnamese text.
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            os.chmod(tmp, 0o755)
            pdf_config = Path(tmp, "socd.yaml")
            pdf_config.write_text(Path("/etc/socd/socd.yaml").read_text()
                                  + "\nreports:\n  enabled: true\n")
            pdf_config.chmod(0o644)
            ok([setpriv, "--reuid=socd", "--regid=socd", "--init-groups",
                *sandboxed(["/opt/socd/bin/socd", "check-config", "-c", str(pdf_config)])],
               env={"PATH": "/usr/bin:/bin", "STATE_DIRECTORY": "/var/lib/socd",
                    "PYTHONDONTWRITEBYTECODE": "1"})
            render = ("import weasyprint, sys; sys.stdout.buffer.write(weasyprint.HTML("
                      "string='<p>Đã xử lý sự cố</p>').write_pdf())")
            pdf = subprocess.run([setpriv, "--reuid=socd", "--regid=socd", "--init-groups",
                                  *sandboxed(["/opt/socd/bin/python", "-c", render])],
                                 capture_output=True, check=False, timeout=120,
                                 env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
            assert pdf.returncode == 0, pdf.stderr.decode()
            assert pdf.stdout.startswith(b"%PDF-")

        # The installed units verify with the real paths and keep their scores.
        for name in ("socd.service", "socd-blocker.service", "socd-blocker.socket",
                     "socd@worker2.service"):
            installed = Path("/usr/lib/systemd/system") / name
            verified = run([tool("systemd-analyze"), "verify", "--no-pager", str(installed)])
            assert verified.returncode == 0, verified.stderr
            assert verified.stdout + verified.stderr == "", name
            if name.endswith(".service"):
                exposure, _ = analyze_security(installed)
                assert exposure <= 2.5, name
        # The helper's command line works as installed.
        ok(["/opt/socd/bin/socd", "block-helper", "--help"])

        ok([dpkg, "--purge", "socd"], timeout=300)
        assert not package_installed(dpkg_query)
        for path in ("/opt/socd", "/etc/socd", "/var/lib/socd", "/var/log/socd",
                     "/usr/bin/socd", "/usr/share/man/man8/socd.8.gz",
                     "/usr/lib/systemd/system/socd.service",
                     "/usr/lib/systemd/system/socd-blocker.service",
                     "/usr/lib/systemd/system/socd-blocker.socket", "/usr/lib/sysusers.d/socd.conf",
                     "/usr/lib/systemd/system/socd@.service",
                     "/etc/systemd/system/multi-user.target.wants/socd.service"):
            assert not os.path.lexists(path), f"{path} left after dpkg --purge"
        # Documented: the system user stays after purge (Debian practice).
        assert user_exists("socd")
    finally:
        if package_installed(dpkg_query) or run([dpkg_query, "-W", "socd"]).returncode == 0:
            run([dpkg, "--purge", "socd"], timeout=300)
        if not user_before and user_exists("socd"):
            run([tool("userdel"), "socd"])


def test_install_script(tmp_path: Path) -> None:
    """scripts/install.sh below a temporary root: layout, idempotence, config kept,
    uninstall keeps the state, --purge removes it."""
    script = str(REPO / "scripts" / "install.sh")
    root = tmp_path / "root"
    args = ["--root", str(root)]
    ok(["bash", script, *args], timeout=BUILD_TIMEOUT)

    socd = root / "opt" / "socd" / "bin" / "socd"
    etc = root / "etc" / "socd"
    unit = root / "etc" / "systemd" / "system" / "socd.service"
    assert socd.exists()
    assert (etc / "socd.yaml").read_text() == (REPO / "deploy/systemd/socd.yaml").read_text()
    assert (etc / "socd.yaml.dist").exists()
    assert (etc / "socd.env").stat().st_mode & 0o777 == 0o640
    assert (etc / "rules.d" / "README").exists()
    assert unit.read_text() == (REPO / "deploy/systemd/socd.service").read_text()
    for name in ("socd-blocker.service", "socd-blocker.socket", "socd@.service"):
        assert (unit.parent / name).read_text() == (REPO / "deploy/systemd" / name).read_text()
    assert (root / "usr/lib/sysusers.d/socd.conf").exists()
    assert (root / "opt/socd/share/doc/socd/examples/socd.service.d/sensor.conf").exists()
    for doc in (REPO / "docs").rglob("*.md"):
        rel = doc.relative_to(REPO / "docs")
        assert (root / "opt/socd/share/doc/socd" / rel).is_file(), rel
    link = root / "usr/local/bin/socd"
    assert os.readlink(link) == "/opt/socd/bin/socd"
    man_page = root / "usr/local/share/man/man8/socd.8"
    assert man_page.read_text().startswith('.TH "SOCD" "8" ')

    config = tmp_path / "socd.yaml"
    rules_d = tmp_path / "rules.d"
    rules_d.mkdir()
    config.write_text((etc / "socd.yaml").read_text().replace("/etc/socd/rules.d", str(rules_d)))
    env = {**os.environ, "STATE_DIRECTORY": str(tmp_path / "state")}
    ok([str(socd), "check-config", "-c", str(config)], env=env)

    # Run again (an upgrade): the operator's config stays, the .dist is refreshed.
    (etc / "socd.yaml").write_text("# edited by the operator\n")
    (etc / "socd.yaml.dist").write_text("old\n")
    result = ok(["bash", script, *args], timeout=BUILD_TIMEOUT)
    assert "kept /etc/socd/socd.yaml" in result.stderr
    assert (etc / "socd.yaml").read_text() == "# edited by the operator\n"
    assert (etc / "socd.yaml.dist").read_text() == (
        REPO / "deploy/systemd/socd.yaml").read_text()

    # Another prefix and config folder: the unit follows.
    other = tmp_path / "other"
    ok(["bash", script, "--root", str(other), "--prefix", "/srv/socd", "--etc", "/srv/etc"],
       timeout=BUILD_TIMEOUT)
    assert os.readlink(other / "usr/local/bin/socd") == "/srv/socd/bin/socd"
    entries = parse_unit((other / "etc/systemd/system/socd.service").read_text())
    assert values(entries, "ExecStart") == ["/srv/socd/bin/socd run -c /srv/etc/socd.yaml"]
    helper = parse_unit((other / "etc/systemd/system/socd-blocker.service").read_text())
    assert values(helper, "ExecStart")[0].startswith("/srv/socd/bin/socd block-helper ")
    roles = parse_unit((other / "etc/systemd/system/socd@.service").read_text())
    assert "exec /srv/socd/bin/socd run -c /srv/etc/socd.yaml --role" in values(
        roles, "ExecStart")[0]
    assert values(roles, "EnvironmentFile") == ["-/srv/etc/socd.env", "-/srv/etc/socd@%i.env"]
    assert "/srv/etc/rules.d" in (other / "srv/etc/socd.yaml").read_text()
    shutil.rmtree(other)

    # Uninstall keeps the configuration and the state; --purge removes them.
    state = root / "var" / "lib" / "socd"
    state.mkdir(parents=True)
    (state / "alerts.db").write_text("")
    # An enabled scale-out instance (what `systemctl enable socd@worker` links).
    wants = unit.parent / "multi-user.target.wants"
    wants.mkdir(exist_ok=True)
    (wants / "socd@worker.service").symlink_to(unit.parent / "socd@.service")
    ok(["bash", script, "--uninstall", *args])
    assert not (root / "opt" / "socd").exists()
    assert not os.path.lexists(link)
    assert not man_page.exists()
    assert not unit.exists()
    assert not (unit.parent / "socd-blocker.service").exists()
    assert not (unit.parent / "socd-blocker.socket").exists()
    assert not (unit.parent / "socd@.service").exists()
    assert not os.path.lexists(unit.parent / "multi-user.target.wants" / "socd@worker.service")
    assert (etc / "socd.yaml").exists()
    assert (state / "alerts.db").exists()
    ok(["bash", script, "--uninstall", "--purge", *args])
    assert not etc.exists()
    assert not state.exists()


# -- the real unit under a real systemd ------------------------------------------------

BOOT = r"""
set -eu
work=$1 deb=$2 cgname=$3
root=$work/merged
mkdir -p "$work/upper" "$work/work" "$root"
# A cgroup subtree of our own: the container's systemd manages only what is below.
for h in /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; do
    if [ -d "$h" ]; then mkdir -p "$h/$cgname"; echo $$ > "$h/$cgname/cgroup.procs"; fi
done
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
    mkdir -p "/sys/fs/cgroup/$cgname"; echo $$ > "/sys/fs/cgroup/$cgname/cgroup.procs"
fi
exec unshare --mount --pid --fork --net --cgroup --uts --ipc --propagation private \
    bash -s "$work" "$deb" <<'INNER'
set -eu
work=$1 deb=$2
root=$work/merged
# Writes go to $work/upper: the machine's own files are never changed.
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/work" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
# A private /dev, as systemd-nspawn makes it (the machine's /dev stays untouched).
mount -t tmpfs -o mode=0755 tmpfs "$root/dev"
mknod -m 0666 "$root/dev/null" c 1 3
mknod -m 0666 "$root/dev/zero" c 1 5
mknod -m 0666 "$root/dev/full" c 1 7
mknod -m 0666 "$root/dev/random" c 1 8
mknod -m 0666 "$root/dev/urandom" c 1 9
mknod -m 0666 "$root/dev/tty" c 5 0
mkdir -p "$root/dev/pts" "$root/dev/shm" "$root/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
mount -t mqueue mqueue "$root/dev/mqueue"
ln -s /proc/self/fd "$root/dev/fd"
# systemd's own messages go to /dev/console: a file here.
touch "$work/console.log" "$root/dev/console"
mount --bind "$work/console.log" "$root/dev/console"
mount -t tmpfs tmpfs "$root/run"
mount -t tmpfs tmpfs "$root/tmp"
cp "$deb" "$root/socd.deb"
chroot "$root" dpkg -i /socd.deb
# Nothing that touches the kernel's global settings or devices.
for unit in systemd-sysctl.service systemd-modules-load.service systemd-binfmt.service \
        proc-sys-fs-binfmt_misc.automount modprobe@.service systemd-udevd.service \
        systemd-udev-trigger.service systemd-tmpfiles-setup-dev.service \
        systemd-timesyncd.service systemd-random-seed.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
printf '[Unit]\nDescription=socd test boot\nWants=socd.service systemd-journald.service\n' \
    > "$root/etc/systemd/system/socd-test.target"
cd "$root"
mkdir -p .oldroot
pivot_root . .oldroot
umount -l /.oldroot
exec env -i container=socd-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /lib/systemd/systemd --system --unit=socd-test.target --log-target=console
INNER
"""


class Container:
    """A systemd booted in its own pid, mount, network and cgroup namespaces, on an
    overlay of this machine's root file system, with the .deb installed."""

    def __init__(self, work: Path, deb: Path) -> None:
        self.cgname = f"socd-test-{os.getpid()}"
        self.log = (work / "boot.log").open("w")
        self.proc = subprocess.Popen(["bash", "-c", BOOT, "boot", str(work), str(deb),
                                      self.cgname], stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.work = work
        self.pid = 0

    def find_init(self) -> bool:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            pids = children.read_text().split()
        except OSError:
            return False
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/exe").resolve().name == "systemd":
                    self.pid = int(pid)
                    return True
            except OSError:
                continue
        return False

    def run(self, *argv: str, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["nsenter", "-t", str(self.pid), "-a", *argv], input=input,
                                capture_output=True, text=True, check=False, timeout=180)
        if check:
            assert result.returncode == 0, f"{argv}: {result.stdout}\n{result.stderr}"
        return result

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-c", script, check=check)

    def show(self, prop: str) -> str:
        return self.run("systemctl", "show", "-p", prop, "--value", "socd").stdout.strip()

    def journal_json(self) -> list[dict[str, Any]]:
        out = self.run("journalctl", "-u", "socd", "-o", "cat", "--no-pager").stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def close(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.log.close()
        for hierarchy in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup"):
            top = Path(hierarchy) / self.cgname
            if top.is_dir():
                # Empty once every process is gone (a moment after the kill).
                wait_for(lambda top=top: _rmdir_tree(top), timeout=60,
                         what=f"cgroup {top} to be removable")
        shutil.rmtree(self.work / "upper", ignore_errors=True)
        shutil.rmtree(self.work / "work", ignore_errors=True)


def _rmdir_tree(top: Path) -> bool:
    for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            path.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()
    return not top.exists()


def test_service_runs_under_systemd(deb: Path, tmp_path: Path) -> None:
    """The runbook on a fresh machine: dpkg -i, systemctl start socd. Under a real
    systemd 252 (booted in namespaces on an overlay, since this machine's PID 1 is not
    systemd): READY via sd_notify, no capability, seccomp on, reload checks the config,
    the sensor drop-in gives exactly its capability and capture works, blocking adds no
    capability to socd: nftables is changed by the socket-activated helper
    socd-blocker.service, which holds CAP_NET_ADMIN only; the journal holds JSON, stop
    drains."""
    for name in ("unshare", "nsenter", "pivot_root", "jq", "nft"):
        tool(name)
    assert os.geteuid() == 0, "booting systemd in namespaces needs root"
    box = Container(tmp_path, deb)
    try:
        wait_for(lambda: box.proc.poll() is not None or box.find_init(), timeout=120,
                 what="systemd to start")
        assert box.pid, (tmp_path / "boot.log").read_text()
        wait_for(lambda: box.run("systemctl", "is-active", "socd", check=False).stdout.strip()
                 in ("active", "failed"), timeout=180, what="socd.service to settle")
        assert box.show("ActiveState") == "active", box.sh(
            "systemctl status socd --no-pager; journalctl -u socd --no-pager", check=False).stdout
        assert box.show("StatusText").startswith("running")

        def status_of_main() -> dict[str, str]:
            main = box.show("MainPID")
            text = box.run("cat", f"/proc/{main}/status").stdout
            return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)

        status = status_of_main()
        socd_uid = box.run("id", "-u", "socd").stdout.strip()
        assert status["Uid"].split()[0] == socd_uid
        for mask in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[mask], 16) == 0, (mask, status[mask])
        assert status["NoNewPrivs"] == "1"
        assert status["Seccomp"] == "2"
        security = box.run("systemd-analyze", "security", "--no-pager", "socd").stdout
        exposure = float(security.rsplit("socd.service: ", 1)[1].split()[0])
        assert exposure <= 2.5, security

        # Reload: a valid config is applied, an invalid one refused with the daemon up.
        main = box.show("MainPID")
        box.run("systemctl", "reload", "socd")
        wait_for(lambda: "configuration reloaded" in [r["event"] for r in box.journal_json()],
                 timeout=60, what="'configuration reloaded' in the journal")
        box.sh("cp /etc/socd/socd.yaml /root/socd.yaml && echo 'bogus_key: 1' >> "
               "/etc/socd/socd.yaml")
        assert box.run("systemctl", "reload", "socd", check=False).returncode != 0
        assert box.show("ActiveState") == "active"
        assert box.show("MainPID") == main
        box.sh("cp /root/socd.yaml /etc/socd/socd.yaml")

        # The jq recipes of docs/deployment-systemd.md work on this journal.
        errors = box.sh("journalctl -u socd -o cat | jq -R -c "
                        "'fromjson? | select(.level == \"error\" or .level == \"critical\")'")
        assert errors.stdout == ""
        reloads = box.sh("journalctl -u socd -o cat | jq -R -c "
                         "'fromjson? | select(.event | test(\"reload|SIGHUP\"))'").stdout
        assert "configuration reloaded" in reloads

        # Drop-ins: live capture on lo and nftables blocking (in the box's own netns),
        # the latter through the privileged helper's socket.
        box.sh("mkdir -p /etc/systemd/system/socd.service.d && cp "
               "/opt/socd/share/doc/socd/examples/socd.service.d/*.conf "
               "/etc/systemd/system/socd.service.d/ && systemctl daemon-reload && "
               "systemctl enable --now socd-blocker.socket")
        box.run("/opt/socd/bin/python", "-c", (
            "import yaml\n"
            "p = '/etc/socd/socd.yaml'\n"
            "d = yaml.safe_load(open(p))\n"
            "d['collectors']['lan'] = {'type': 'sensor', 'interface': 'lo', "
            "'bpf_filter': 'udp'}\n"
            "d['sinks']['block'] = {'type': 'blocker', 'backend': 'nftables', "
            "'helper_socket': '/run/socd-blocker.sock'}\n"
            "open(p, 'w').write(yaml.safe_dump(d))\n"))
        box.run("systemctl", "restart", "socd")
        assert box.show("ActiveState") == "active", box.run(
            "journalctl", "-u", "socd", "-n", "30", "--no-pager", check=False).stdout
        status = status_of_main()
        net_raw, net_admin = 1 << 13, 1 << 12
        for mask in ("CapEff", "CapBnd", "CapAmb"):
            assert int(status[mask], 16) == net_raw, (mask, status[mask])  # no NET_ADMIN
        wait_for(lambda: {"capturing", "blocker started"}
                 <= {r["event"] for r in box.journal_json()},
                 timeout=60, what="'capturing' and 'blocker started' in the journal")
        # socd's start-up sync went through the helper, started by its socket.
        assert "table inet socd" in box.run("nft", "list", "tables").stdout
        assert box.sh("stat -c '%a %U %G' /run/socd-blocker.sock").stdout.split() == [
            "660", "root", "socd"]
        helper_pid = box.run("systemctl", "show", "-p", "MainPID", "--value",
                             "socd-blocker").stdout.strip()
        assert helper_pid not in ("", "0"), box.run(
            "journalctl", "-u", "socd-blocker", "--no-pager", check=False).stdout
        helper_text = box.run("cat", f"/proc/{helper_pid}/status").stdout
        helper = dict(line.split(":\t", 1) for line in helper_text.splitlines() if ":\t" in line)
        for mask in ("CapEff", "CapBnd", "CapAmb"):
            assert int(helper[mask], 16) == net_admin, (mask, helper[mask])
        assert helper["Uid"].split()[0] not in ("0", socd_uid)  # a dynamic user
        assert helper["NoNewPrivs"] == "1"
        assert helper["Seccomp"] == "2"
        security = box.run("systemd-analyze", "security", "--no-pager", "socd-blocker").stdout
        assert float(security.rsplit("socd-blocker.service: ", 1)[1].split()[0]) <= 2.5
        # The CLI, as the service user, pushes through the helper too.
        box.sh("set -a; . /etc/socd/socd.env; set +a; runuser -u socd -- /opt/socd/bin/socd "
               "block add 198.51.100.7 --ttl 1h --reason test -c /etc/socd/socd.yaml")
        assert "198.51.100.7" in box.run("nft", "list", "set", "inet", "socd",
                                         "blocked4").stdout
        # Another user cannot even connect.
        denied = box.run("runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c",
                         "import socket; s = socket.socket(socket.AF_UNIX); "
                         "s.connect('/run/socd-blocker.sock')", check=False)
        assert "PermissionError" in denied.stderr, denied

        # Stop drains and ends cleanly.
        box.run("systemctl", "stop", "socd")
        assert box.show("ActiveState") == "inactive"
        assert box.show("Result") == "success"
        assert [r["event"] for r in box.journal_json()][-1] == "socd stopped"
    finally:
        box.close()
