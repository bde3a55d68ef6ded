"""Runs the ``socd`` commands of scripts/golden.py with the wall clock frozen.

``python -P scripts/golden_runner.py FROZEN_AT BATCH.json [--inline]`` freezes the clock
(``time-machine``: ``time.time``, ``datetime.now``...; the monotonic clocks still run),
loads the ``socd`` console script's entry point as the installed ``socd`` script does,
then forks one child per command of the batch (at most ``jobs`` at a time). Each child
takes the command's folder, environment, arguments, and files for standard output and
error, and runs the entry point as a fresh ``socd`` process would. Forking after the
import saves each command the start-up of Python and of ``socd.cli`` (a third of the
check's time). With ``--inline`` the batch holds one command, run in this process
without forking; its exit code is the runner's (``golden.py --no-fork`` runs every
command so, as its own process, to show that both ways give the same bytes).

Prints ``{"case id": exit code, ...}`` as JSON when every command has ended.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import time
import traceback
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any

import time_machine


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter makes of ``sys.exit(code)``."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _child(case: dict[str, Any], socd_main: Any) -> None:
    code = 1
    try:
        os.chdir(case["cwd"])
        os.environ.clear()
        os.environ.update(case["env"])
        time.tzset()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, case["stdout"]), (2, case["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        sys.argv = ["socd", *case["args"]]
        try:
            code = socd_main()
            code = 0 if code is None else int(code)
        except SystemExit as exc:
            code = _exit_code(exc)
        atexit._run_exitfuncs()  # what interpreter exit runs
    except BaseException:  # reported as an uncaught exception would be
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed stream: nothing to flush
                stream.flush()
        os._exit(code)


def main() -> int:
    frozen, batch_path = sys.argv[1], sys.argv[2]
    with open(batch_path, encoding="utf-8") as fh:
        batch = json.load(fh)
    time_machine.travel(datetime.fromisoformat(frozen), tick=False).start()
    found = {ep.value: ep for ep in entry_points(group="console_scripts", name="socd")}
    (entry,) = found.values()
    socd_main = entry.load()
    if sys.argv[3:] == ["--inline"]:
        (case,) = batch["cases"]
        _child(case, socd_main)  # exits with the command's code
    pending: list[dict[str, Any]] = list(batch["cases"])
    running: dict[int, str] = {}
    codes: dict[str, int] = {}
    sys.stdout.flush()
    sys.stderr.flush()
    while pending or running:
        while pending and len(running) < batch["jobs"]:
            case = pending.pop(0)
            pid = os.fork()
            if pid == 0:
                _child(case, socd_main)
            running[pid] = case["id"]
        pid, status = os.wait()
        codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    print(json.dumps(codes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
