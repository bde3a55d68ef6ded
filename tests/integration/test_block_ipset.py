"""ipset mode for real, in a network namespace: ``ipset restore`` batches.

FAILS (never skips) when ipset is missing or the kernel cannot create a
``hash:net`` set (no ip_set module).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent("""
    import asyncio, sys, time
    from socd.block.decisions import Change, Decision
    from socd.block.ipset import IpsetBackend

    async def main():
        now = time.time()
        b = IpsetBackend(set_name="socdt")
        ds = [Decision(v, k, "r", "o", "", now, now, now + 600, 1) for v, k in [
            ("198.51.100.7", "ipv4"), ("198.51.100.0/24", "ipv4"), ("2001:db8::/32", "ipv6"),
            ("evil.example", "domain")]]
        await b.run(b.full_script(ds, now))
        await b.run(b.full_script(ds[:1], now))  # swap in a smaller set
        await b.run(b.incremental_script([Change("add", ds[2]), Change("remove", ds[0])], now))
        print(await b.list_sets())
    asyncio.run(main())
""")


def test_ipset_restore_batches_in_netns() -> None:
    for cmd, pkg in (("ip", "iproute2"), ("ipset", "ipset")):
        if shutil.which(cmd) is None:
            pytest.fail(f"`{cmd}` not found: install the Debian package `{pkg}`", pytrace=False)
    ns = f"socdb{secrets.token_hex(2)}a"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        probe = subprocess.run(["ip", "netns", "exec", ns, "ipset", "create", "socdprobe",
                                "hash:net", "family", "inet", "timeout", "60"],
                               capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            pytest.fail(f"`ipset create` does not work in this kernel ({probe.stderr.strip()});"
                        " load the ip_set and ip_set_hash_net modules", pytrace=False)
        run = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SCRIPT],
                             capture_output=True, text=True, check=False, timeout=60)
        assert run.returncode == 0, run.stderr
        assert "socdt4" in run.stdout
        assert "socdt6" in run.stdout
        assert "socdt4-new" not in run.stdout
        listing = subprocess.run(["ip", "netns", "exec", ns, "ipset", "list", "socdt6"],
                                 capture_output=True, text=True, check=True).stdout
        assert "2001:db8::/32 timeout" in listing
        listing = subprocess.run(["ip", "netns", "exec", ns, "ipset", "list", "socdt4"],
                                 capture_output=True, text=True, check=True).stdout
        assert "198.51.100.7" not in listing
        assert "198.51.100.0/24" not in listing
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
