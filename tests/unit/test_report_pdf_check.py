"""check-config refuses PDF reports that cannot be produced (issue 14, point 9): the
defaults of `reports:` ask for html and pdf, and the .deb once shipped no WeasyPrint, so
the first scheduled report failed although `check-config` said OK."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from socd import cli


def _config(tmp_path: Path, reports: str) -> Path:
    path = tmp_path / "socd.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\n{reports}", encoding="utf-8")
    return path


def test_pdf_configured_without_weasyprint_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "weasyprint", None)  # import raises ImportError
    config = _config(tmp_path, "reports:\n  enabled: true\n")  # formats: [html, pdf]
    assert cli.main(["check-config", "-c", str(config)]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "reports.formats" in err
    assert "pdf" in err
    assert "WeasyPrint" in err
    assert "libpango-1.0-0" in err  # the hint: what to install
    assert "formats: [html]" in err  # or what to configure instead

    # Without pdf, or with reports off, nothing needs WeasyPrint.
    for reports in ("reports:\n  enabled: true\n  formats: [html, xlsx]\n",
                    "reports:\n  enabled: false\n", ""):
        assert cli.main(["check-config", "-c", str(_config(tmp_path, reports))]) == cli.EXIT_OK


def test_pdf_configured_with_weasyprint_passes(tmp_path: Path) -> None:
    config = _config(tmp_path, "reports:\n  enabled: true\n  formats: [pdf]\n")
    assert cli.main(["check-config", "-c", str(config)]) == cli.EXIT_OK


def test_missing_pango_library_fails_in_a_real_process(tmp_path: Path) -> None:
    """As on a machine without libpango: importing WeasyPrint raises OSError (cffi cannot
    dlopen the library). A stand-in module first on the path does exactly that."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "weasyprint.py").write_text(
        "raise OSError(\"cannot load library 'libpango-1.0-0': libpango-1.0-0: cannot open "
        "shared object file: No such file or directory\")\n", encoding="utf-8")
    config = _config(tmp_path, "reports:\n  enabled: true\n")
    env = {**os.environ, "PYTHONPATH": str(fake)}
    env.pop("SOCD_CONFIG", None)
    result = subprocess.run([sys.executable, "-m", "socd", "check-config", "-c", str(config)],
                            capture_output=True, text=True, env=env, check=False, timeout=120)
    assert result.returncode == cli.EXIT_CONFIG, result.stdout + result.stderr
    assert "cannot load library 'libpango-1.0-0'" in result.stderr
    assert "OK" not in result.stdout
