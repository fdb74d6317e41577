"""Logging during a run: JSON lines to the track's conductor.log, the screen kept for people."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from conductor.logs import configure_logging, ensure_logging, log_run_to, short_line


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Each test's configuration is undone afterwards."""
    yield
    configure_logging("auto")
    ensure_logging()


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_auto_sends_lines_to_the_file_and_only_warnings_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the default format every line is JSON in the file; stderr gets warnings and
    errors only, one short line each."""
    configure_logging("auto")
    path = log_run_to(tmp_path / "logs" / "conductor.log")
    log = structlog.get_logger("t")
    structlog.contextvars.bind_contextvars(task_id="build")
    try:
        log.info("task complete", duration=1.5)
        log.warning("ended orphaned worker processes", pids=[12, 13])
    finally:
        structlog.contextvars.unbind_contextvars("task_id")
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "warning: task build: ended orphaned worker processes (pids=[12, 13])"
    ]
    logged = lines(path)
    assert [(e["event"], e["level"], e["task_id"]) for e in logged] == [
        ("task complete", "info", "build"),
        ("ended orphaned worker processes", "warning", "build"),
    ]
    assert logged[0]["duration"] == 1.5 and "timestamp" in logged[0]


def test_json_format_also_writes_every_line_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--log-format json`` keeps machine-readable lines on stderr as well as in the file."""
    configure_logging("json")
    path = log_run_to(tmp_path / "conductor.log")
    structlog.get_logger("t").info("task complete", duration=2)
    err = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [e["event"] for e in err] == ["task complete"]
    assert lines(path)[0]["duration"] == 2


def test_standard_logging_goes_to_the_file_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Libraries logging through ``logging`` (the Claude SDK) never reach the screen; their
    warnings land in the file; reconfiguring gives ``logging`` its handlers back."""
    root = logging.getLogger()
    before = list(root.handlers)
    configure_logging("auto")
    path = log_run_to(tmp_path / "conductor.log")
    try:
        raise RuntimeError("reader died")
    except RuntimeError:
        logging.getLogger("claude_agent_sdk._internal").exception("Fatal error in reader")
    logging.getLogger("chatty").info("not kept below warning")
    assert capsys.readouterr().err == ""
    (entry,) = lines(path)
    assert (entry["logger"], entry["level"], entry["event"]) == (
        "claude_agent_sdk._internal", "error", "Fatal error in reader"
    )
    assert "RuntimeError: reader died" in entry["exception"]
    configure_logging("auto")
    assert root.handlers == before


def test_nothing_is_created_until_something_logs(tmp_path: Path) -> None:
    """A run refused before it logs leaves no log file (nor its directory) behind."""
    configure_logging("auto")
    log_run_to(tmp_path / "state" / "logs" / "conductor.log")
    assert not (tmp_path / "state").exists()


def test_short_line_flattens_values_and_names_the_exception() -> None:
    """A short line is one line: values lose their newlines; an exception gives its last line."""
    event = {
        "event": "executor error",
        "level": "error",
        "timestamp": "t",
        "track": "x",
        "error": "two\nlines",
        "exception": "Traceback (most recent call last):\n  ...\nValueError: boom",
    }
    assert short_line(event) == "error: executor error (error=two lines): ValueError: boom"


def test_structlog_loads_without_rich_and_rich_still_imports_later() -> None:
    """Loading structlog through conductor does not load rich (only a live view pays for
    it), and rich can still be imported afterwards."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import conductor.scheduler\n"
        "from conductor.logs import ensure_logging\n"
        "ensure_logging()\n"
        "print(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))\n"
        "import rich.live\n"
        "print(rich.live.Live.__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["[]", "Live"]
