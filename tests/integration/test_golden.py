"""socd still prints what tests/golden/ recorded (scripts/golden.py): the full output of
`socd replay` on every decoder fixture and the sample week, `socd test-rules`, the
weekly and monthly reports on the seeded data, and `socd check-config` on every example
and error-case configuration.

It guards changes that must not change behaviour (moving modules, speed work): any
difference fails, with a diff per changed output. No service is needed; it is an
integration test because it runs ~75 socd commands (tens of seconds).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
SHOWN_LINES = 400  # of the check's report, in the failure message


def test_golden_outputs_unchanged() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "golden.py"), "--check",
         "--max-diff-lines", "40"],
        cwd=REPO, capture_output=True, text=True, timeout=850, check=False)
    if proc.returncode == 0:
        return
    lines = proc.stdout.splitlines()
    if len(lines) > SHOWN_LINES:
        lines = [*lines[:SHOWN_LINES - 3], f"... {len(lines) - SHOWN_LINES + 3} lines more: "
                 "run `make golden-check` for the whole report", *lines[-2:]]
    pytest.fail(
        "socd's output differs from the recorded golden outputs (tests/golden/).\n"
        + "\n".join(lines) + "\n" + proc.stderr[-3000:]
        + "\nIntended change (a rule, decoder or message changed on purpose)? Refresh with "
        "`make golden` (or `.venv/bin/python scripts/golden.py --write`), review "
        "`git diff tests/golden/` and commit it with the change. Otherwise the change "
        "altered behaviour it should not have.", pytrace=False)
