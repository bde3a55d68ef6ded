"""The intake journal on a really full disk: a 4 MiB tmpfs in a private mount namespace.

Appends that the kernel refuses (ENOSPC) must neither crash nor be acknowledged:
``append`` waits (back-pressure), the journal reports itself unhealthy, and once
space is freed it resumes by itself. Everything acknowledged before, during and
after is read back at the next open.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CHILD = textwrap.dedent("""
    import asyncio, json, os, sys, time
    from socd.app.journal import Journal
    from socd.plugins import RawRecord

    root = sys.argv[1]
    filler = os.path.join(root, "filler")

    def batch(i):
        return [RawRecord(b'{"n": %d, "pad": "' % (i * 8 + k) + b"x" * 8000 + b'"}',
                          "json", "t", "s") for k in range(8)]

    async def main():
        out = {}
        journal = Journal(os.path.join(root, "journal"), max_bytes=1 << 30,
                          segment_bytes=256 * 1024, fsync_interval_ms=0)
        await journal.open()
        acked = [await journal.append(batch(i)) for i in range(10)]
        # Fill the file system, leaving less than one more batch of room.
        with open(filler, "wb") as fh:
            try:
                while True:
                    fh.write(b"\\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        i = 10
        blocked = None
        while blocked is None and i < 200:
            task = asyncio.create_task(journal.append(batch(i)))
            done, _ = await asyncio.wait({task}, timeout=2.0)
            if done:
                acked.append(task.result())
                i += 1
            else:
                blocked = task
        out["blocked"] = blocked is not None
        out["healthy_while_full"] = journal.healthy
        out["status_while_full"] = journal.status()
        await asyncio.sleep(1.0)
        out["still_blocked_after_1s"] = blocked is not None and not blocked.done()
        os.unlink(filler)
        t0 = time.monotonic()
        if blocked is not None:
            acked.append(await asyncio.wait_for(blocked, 30))
        out["resumed_secs"] = round(time.monotonic() - t0, 2)
        acked.append(await journal.append(batch(i + 1)))
        out["healthy_after"] = journal.healthy
        journal.freeze()
        await journal.close()
        again = Journal(os.path.join(root, "journal"))
        await again.open()
        out["replayed"] = [seq async for seq, _ in again.replay()]
        out["torn"] = again.scan.torn
        await again.close()
        out["acked"] = acked
        print(json.dumps(out), flush=True)

    asyncio.run(main())
""")


def test_full_disk_blocks_intake_and_loses_nothing(tmp_path: Path) -> None:
    for tool in ("unshare", "mount"):
        assert shutil.which(tool), f"{tool} is not installed (util-linux)"
    root = tmp_path / "fs"
    root.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    shell = (f"mount -t tmpfs -o size=4m socd-test {root} && "
             f"exec {sys.executable} {script} {root}")
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             shell], cwd=REPO, capture_output=True, text=True, timeout=100,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["blocked"], "the journal never ran out of space"
    assert not out["healthy_while_full"]
    assert out["status_while_full"]["failing"] == "ENOSPC"
    assert out["still_blocked_after_1s"]  # nothing acknowledged while the disk is full
    assert out["healthy_after"]
    assert out["resumed_secs"] < 10
    assert sorted(out["acked"]) == out["acked"]
    assert set(out["acked"]) <= set(out["replayed"]), "an acknowledged batch was lost"
    assert "journal write failed" in result.stdout + result.stderr
