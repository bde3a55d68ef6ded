"""`socd replay` and `socd check-config` start without importing structlog (issue 17:
~45 ms of a ~0.3 s start), and the loggers of the modules they use still log through
structlog, configured as before, once they are used."""

from __future__ import annotations

import logging
import subprocess
import sys

import structlog
from structlog.testing import capture_logs

from socd import log as socd_log


def test_the_replay_path_imports_no_structlog() -> None:
    code = ("import sys\n"
            "import socd.cli.run, socd.app.components, socd.app.replay, socd.engine\n"
            "from socd import log\n"
            "assert not log.configured()\n"
            "print('structlog' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_a_module_logger_logs_through_structlog_when_used() -> None:
    logger = socd_log.get_logger("socd.test-lazy")
    with capture_logs() as logs:
        logger.warning("lazy", n=1)
    assert logs == [{"event": "lazy", "n": 1, "log_level": "warning"}]
    # bind() and the other attributes are the structlog logger's
    with capture_logs() as logs:
        logger.bind(a=2).info("bound")
    assert logs == [{"event": "bound", "a": 2, "log_level": "info"}]


def test_configured_is_false_until_setup_and_true_after() -> None:
    saved = socd_log._factory
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        socd_log._factory = None
        assert not socd_log.configured()
        socd_log.setup("info", "json")
        assert socd_log.configured()
    finally:
        socd_log._factory = saved
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
