"""socd's SSH brute-force rule against fail2ban's sshd filter, on the same auth.log.

A realistic sshd auth.log is generated in a temporary directory (default 200,000
lines over about two days of event time): accepted logins from the admin subnets,
fast and slow brute-forcers from ~50 attacking addresses, invalid users, sshd's
pam_unix / preauth-disconnect / "maximum authentication attempts" lines, and cron
and systemd noise. Then:

* **socd**: ``python -m socd replay --format syslog --alerts-only -c CFG LOG`` with a
  config whose only rule file holds the shipped ``ssh-bruteforce`` rule (5 failures
  within 10 minutes per source.ip, the fail2ban defaults). Offenders = the
  ``source.ip`` of its alerts. If ``replay`` does not run the rules engine (older
  builds), the decoded events of ``replay`` are fed to the engine in-process and the
  mode is reported as ``replay+engine``.
* **fail2ban**: ``fail2ban-regex -o row LOG /etc/fail2ban/filter.d/sshd.conf`` prints
  one ``[ip, time, info]`` row per failure the filter matched. Offenders = addresses
  with ``maxretry`` (5) failures within ``findtime`` (600 s), the jail.conf defaults,
  computed from those rows.

Both read timestamps from the RFC 3164 lines (year assumed), so windows are event
time. Lines/s is lines of the log divided by the wall time of each command (process
start-up included).

Run: ``.venv/bin/python scripts/bench_fail2ban.py [--lines N] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable
SSHD_FILTER = "/etc/fail2ban/filter.d/sshd.conf"
MAXRETRY, FINDTIME = 5, 600
RULE_ID = "ssh-bruteforce"
USERS = ["root", "admin", "oracle", "test", "ubuntu", "postgres", "git", "user", "ftpuser",
         "guest", "support", "deploy", "ketoan", "vanthu", "quantri", "pi", "hadoop"]
ADMINS = ["quantri", "hungpv", "trungnt", "deploy", "backup"]
HOSTS = ["srv-dvc-01", "srv-mail-01", "srv-web-tinh", "srv-gis-01"]


def _public_ip(rng: random.Random, i: int) -> str:
    nets = ["203.0.113", "198.51.100", "192.0.2"]
    return f"{nets[i % 3]}.{10 + i}"


class _Log:
    def __init__(self, start: float, rng: random.Random) -> None:
        self.rng = rng
        self.start = start
        self.items: list[tuple[float, str]] = []

    def add(self, ts: float, host: str, prog: str, msg: str) -> None:
        self.items.append((ts, f"{host} {prog}: {msg}"))

    def sshd(self, ts: float, msg: str, host: str | None = None, pid: int | None = None) -> None:
        host = host or self.rng.choice(HOSTS)
        self.add(ts, host, f"sshd[{pid or self.rng.randint(1000, 65000)}]", msg)

    def failure(self, ts: float, ip: str, host: str) -> None:
        """One failed attempt as sshd logs it (1-2 counted lines, plus NOFAIL lines)."""
        rng, port, pid = self.rng, self.rng.randint(30000, 65000), self.rng.randint(1000, 65000)
        user = rng.choice(USERS)
        if rng.random() < 0.35:  # unknown account: two counted lines
            self.sshd(ts, f"Invalid user {user} from {ip} port {port}", host, pid)
            self.sshd(ts, f"Failed password for invalid user {user} from {ip} port {port} ssh2",
                      host, pid)
        else:
            if rng.random() < 0.3:  # NOFAIL in fail2ban; ssh_pam_failure in socd
                self.sshd(ts, "pam_unix(sshd:auth): authentication failure; logname= uid=0 "
                          f"euid=0 tty=ssh ruser= rhost={ip}  user={user}", host, pid)
            self.sshd(ts, f"Failed password for {user} from {ip} port {port} ssh2", host, pid)
        if rng.random() < 0.2:
            self.sshd(ts + 0.4, f"Received disconnect from {ip} port {port}:11: Bye Bye [preauth]",
                      host, pid)

    def render(self) -> list[str]:
        self.items.sort(key=lambda x: x[0])
        out = []
        for ts, text in self.items:
            stamp = dt.datetime.fromtimestamp(ts, dt.UTC)
            out.append(f"{stamp:%b} {stamp.day:>2} {stamp:%H:%M:%S} {text}")
        return out


def generate(lines: int, seed: int = 20261116) -> tuple[list[str], dict[str, str]]:
    """The log lines and, per attacking address, the kind of attacker it is."""
    rng = random.Random(seed)
    start = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC).timestamp()
    span = 2 * 86400
    log = _Log(start, rng)
    kinds: dict[str, str] = {}
    # 20 fast brute-forcers: bursts of 20-300 attempts, 1-8 s apart.
    for i in range(20):
        ip, host = _public_ip(rng, i), rng.choice(HOSTS)
        kinds[ip] = "fast"
        for _burst in range(rng.randint(1, 4)):
            t = start + rng.uniform(0, span - 4000)
            n = rng.randint(20, 300)
            for k in range(n):
                t += rng.uniform(1, 8)
                log.failure(t, ip, host)
                if k % 6 == 5:
                    log.sshd(t + 0.5, f"maximum authentication attempts exceeded for root "
                             f"from {ip} port {rng.randint(30000, 65000)} ssh2 [preauth]", host)
    # 10 short bursts: 5-8 attempts within 4 minutes, then silence.
    for i in range(20, 30):
        ip, host = _public_ip(rng, i), rng.choice(HOSTS)
        kinds[ip] = "short-burst"
        t = start + rng.uniform(0, span - 4000)
        for _ in range(rng.randint(5, 8)):
            t += rng.uniform(10, 30)
            log.sshd(t, f"Failed password for root from {ip} port {rng.randint(30000, 65000)} "
                     "ssh2", host)
    # 10 slow guessers: one attempt every 170-400 s (never 5 within 10 minutes).
    for i in range(30, 40):
        ip, host = _public_ip(rng, i), rng.choice(HOSTS)
        kinds[ip] = "slow"
        t = start + rng.uniform(0, 3600)
        while t < start + span:
            t += rng.uniform(170, 400)
            log.sshd(t, f"Failed password for {rng.choice(USERS)} from {ip} port "
                     f"{rng.randint(30000, 65000)} ssh2", host)
    # 10 borderline: 4 attempts within 5 minutes, every hour (below maxretry).
    for i in range(40, 50):
        ip, host = _public_ip(rng, i), rng.choice(HOSTS)
        kinds[ip] = "borderline"
        t0 = start + rng.uniform(0, 3600)
        while t0 < start + span - 3600:
            for k in range(4):
                log.sshd(t0 + k * 60, f"Failed password for admin from {ip} port "
                         f"{rng.randint(30000, 65000)} ssh2", host)
            t0 += 3600
    # Fill up with legitimate activity and noise.
    while len(log.items) < lines:
        t = start + rng.uniform(0, span)
        host = rng.choice(HOSTS)
        r = rng.random()
        pid = rng.randint(1000, 65000)
        if r < 0.30:
            user, ip = rng.choice(ADMINS), f"10.10.{rng.choice([0, 20])}.{rng.randint(2, 250)}"
            method = rng.choice(["publickey", "password"])
            suffix = ": ED25519 SHA256:Qm9vZm9vZm9vZm9vZm9v" if method == "publickey" else ""
            log.sshd(t, f"Accepted {method} for {user} from {ip} port {rng.randint(30000, 65000)}"
                     f" ssh2{suffix}", host, pid)
            log.sshd(t, f"pam_unix(sshd:session): session opened for user {user}(uid=1000) "
                     "by (uid=0)", host, pid)
        elif r < 0.45:
            ip = f"10.10.0.{rng.randint(2, 250)}"
            log.sshd(t, f"Disconnected from user {rng.choice(ADMINS)} {ip} port "
                     f"{rng.randint(30000, 65000)}", host, pid)
        elif r < 0.50:  # a typo now and then from the admin subnet: single failure
            ip = f"10.10.0.{rng.randint(2, 250)}"
            log.sshd(t, f"Failed password for {rng.choice(ADMINS)} from {ip} port "
                     f"{rng.randint(30000, 65000)} ssh2", host, pid)
        elif r < 0.75:
            log.add(t, host, f"CRON[{pid}]", "pam_unix(cron:session): session opened for user "
                    "root(uid=0) by (uid=0)")
        elif r < 0.90:
            log.add(t, host, "systemd[1]", rng.choice([
                "Started Daily apt download activities.", "Starting Cleanup of Temporary "
                "Directories...", "logrotate.service: Deactivated successfully."]))
        else:
            log.add(t, host, "kernel", f"[{rng.randint(1000, 99999)}.{rng.randint(0, 999999):06d}]"
                    f" [UFW BLOCK] IN=ens160 OUT= SRC={_public_ip(rng, rng.randint(60, 200))} "
                    f"DST=10.10.20.11 PROTO=TCP DPT={rng.choice([23, 445, 3389, 8080])}")
    return log.render()[:lines] if len(log.items) > lines else log.render(), kinds


def _offenders_from_times(times: dict[str, list[float]]) -> set[str]:
    out = set()
    for ip, ts in times.items():
        ts.sort()
        if any(ts[i + MAXRETRY - 1] - ts[i] < FINDTIME for i in range(len(ts) - MAXRETRY + 1)):
            out.add(ip)
    return out


def run_fail2ban(log: Path) -> tuple[float, set[str], int]:
    exe = shutil.which("fail2ban-regex")
    if exe is None:
        raise RuntimeError("fail2ban-regex not found: apt-get install fail2ban")
    t0 = time.perf_counter()
    proc = subprocess.run([exe, "-o", "row", str(log), SSHD_FILTER], capture_output=True,
                          text=True, check=True)
    elapsed = time.perf_counter() - t0
    times: dict[str, list[float]] = defaultdict(list)
    rows = 0
    for line in proc.stdout.splitlines():
        line = line.strip().rstrip(",")
        if not line.startswith("["):
            continue
        ip, ts = line[1:].split(",", 2)[:2]
        times[ast.literal_eval(ip.strip())].append(float(ts))
        rows += 1
    return elapsed, _offenders_from_times(times), rows


def _rule_file(tmp: Path) -> Path:
    import yaml

    pack = yaml.safe_load((REPO / "rules" / "auth.yaml").read_text(encoding="utf-8"))
    rule = next(r for r in pack["rules"] if r["id"] == RULE_ID)
    out = tmp / "ssh.yaml"
    out.write_text(yaml.safe_dump({"rules": [rule]}, allow_unicode=True), encoding="utf-8")
    return out


def run_socd(log: Path, tmp: Path) -> tuple[float, set[str], str]:
    cfg = tmp / "socd.yaml"
    cfg.write_text(f"rules:\n  paths: [{_rule_file(tmp)}]\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.run([PYTHON, "-m", "socd", "replay", "--format", "syslog", "--alerts-only",
                           "-c", str(cfg), str(log)], capture_output=True, text=True, env=env,
                          check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"socd replay failed ({proc.returncode}): {proc.stderr[-2000:]}")
    alerts = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    ours = [a for a in alerts if a.get("rule", {}).get("id") == RULE_ID]
    if ours or any(a.get("event", {}).get("dataset") == "socd.rules" for a in alerts):
        return elapsed, {a["source"]["ip"] for a in ours}, "replay"
    # This replay does not run the rules engine: decode with replay, match in-process.
    from socd.engine.engine import RuleEngine
    from socd.engine.loader import load_paths

    t0 = time.perf_counter()
    proc = subprocess.run([PYTHON, "-m", "socd", "replay", "--format", "syslog", "-c", str(cfg),
                           str(log)], capture_output=True, text=True, env=env, check=False)
    events = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    engine = RuleEngine(load_paths([str(_rule_file(tmp))]))
    out = []
    for i in range(0, len(events), 1000):
        batch = events[i:i + 1000]
        out.extend(engine.process(batch)[len(batch):])
    elapsed = time.perf_counter() - t0
    return elapsed, {a["source"]["ip"] for a in out if a["rule"]["id"] == RULE_ID}, \
        "replay+engine"


def _explain(ip: str, kinds: dict[str, str], socd_has: bool) -> str:
    who = "socd only" if socd_has else "fail2ban only"
    kind = kinds.get(ip, "not a generated attacker")
    return f"{ip} ({kind}): {who}"


def ssh_bruteforce_vs_fail2ban(lines: int = 200_000, keep: str | None = None) -> dict[str, Any]:
    tmp = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="socd-f2b-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        text, kinds = generate(lines)
        log = tmp / "auth.log"
        log.write_text("\n".join(text) + "\n", encoding="utf-8")
        f2b_secs, f2b, f2b_rows = run_fail2ban(log)
        socd_secs, ours, mode = run_socd(log, tmp)
        diff = sorted(ours ^ f2b)
        expected = {ip for ip, k in kinds.items() if k in {"fast", "short-burst"}}
        return {
            "benchmark": "ssh_bruteforce_vs_fail2ban",
            "lines": len(text),
            "socd_lines_per_sec": round(len(text) / socd_secs),
            "fail2ban_lines_per_sec": round(len(text) / f2b_secs),
            "socd_seconds": round(socd_secs, 2),
            "fail2ban_seconds": round(f2b_secs, 2),
            "socd_mode": mode,
            "fail2ban_failures_matched": f2b_rows,
            "socd_offenders": sorted(ours),
            "fail2ban_offenders": sorted(f2b),
            "expected_offenders": len(expected),
            "same_offenders": ours == f2b,
            "differences": [_explain(ip, kinds, ip in ours) for ip in diff],
        }
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


BENCHMARKS = {"ssh_bruteforce_vs_fail2ban": ssh_bruteforce_vs_fail2ban}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--keep", metavar="DIR", help="keep the generated files in DIR")
    args = ap.parse_args()
    print(json.dumps(ssh_bruteforce_vs_fail2ban(args.lines, args.keep), indent=2))


if __name__ == "__main__":
    main()
