"""Start-up runs without garbage collection (issue 17: the collections only walked the
long-lived objects the imports, the configuration and the rule pack make) and leaves
collection as it found it."""

from __future__ import annotations

import gc
import subprocess
import sys

import pytest

from socd import cli
from socd.cli.common import no_collection


def test_no_collection_disables_inside_and_restores() -> None:
    assert gc.isenabled()
    with no_collection():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with no_collection():
            assert not gc.isenabled()
        assert not gc.isenabled()  # it was off: stays off
    finally:
        gc.enable()


def test_no_collection_restores_after_an_error() -> None:
    with pytest.raises(RuntimeError), no_collection():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_main_leaves_collection_on(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert gc.isenabled()
    capsys.readouterr()


def test_python_m_socd_collects_again_after_the_imports() -> None:
    code = ("import gc, runpy, sys\n"
            "import socd.cli\n"
            "seen = []\n"
            "socd.cli.main = lambda: seen.append(gc.isenabled()) or 0\n"
            "try:\n"
            "    runpy.run_module('socd', run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(seen)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[True]"
