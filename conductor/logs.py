"""structlog configuration, done once at the entry point.

Human-readable lines on a TTY (or ``--log-format console``), one JSON object per line with
``--log-format json``. Modules get a logger with ``get_logger(__name__)`` (or
``structlog.get_logger()``) and bind ``track``, ``task_id`` and ``worker_id`` through
``structlog.contextvars``.

Loading structlog costs more than a quick command's whole run (it loads asyncio), so it is
loaded only when something logs: ``configure_logging`` holds the configuration until then, and
``get_logger`` returns a logger that loads structlog, and applies it, on its first call.

structlog imports ``rich`` when it is installed (for tracebacks conductor does not use), which
costs more than structlog itself; rich is installed for the live view of ``conductor run``.
``load_structlog`` (and ``from conductor.logs import structlog``) imports structlog with rich
hidden, so only a live view pays for rich.

``conductor run`` keeps the person's screen for its progress view: ``log_run_to(path)`` sends
every structured line, as JSON, to the track's ``logs/conductor.log`` (with the records of
libraries that log through the standard ``logging`` module, such as claude-agent-sdk), and
stderr then gets, with the default ``auto`` format, only warnings and errors in one short
line each; with an explicit ``--log-format json`` or ``console`` stderr gets every line in
that format as well.
"""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import logging
    from pathlib import Path
    from types import ModuleType

    import structlog as structlog

LogFormat = Literal["auto", "console", "json"]

_held: list[tuple[LogFormat, bool]] = []
"""The configuration ``configure_logging`` was given while structlog was not loaded yet."""

_given: list[tuple[LogFormat, bool]] = []
"""The configuration ``configure_logging`` was last given (``log_run_to`` keeps it)."""


def load_structlog() -> ModuleType:
    """Import structlog (once) without letting it import rich."""
    loaded = sys.modules.get("structlog")
    if loaded is not None:
        return loaded
    hide = "rich" not in sys.modules
    if hide:
        sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` fails meanwhile
    try:
        import structlog
    finally:
        if hide and "rich" in sys.modules and sys.modules["rich"] is None:
            del sys.modules["rich"]
    return structlog


def __getattr__(name: str) -> Any:
    """``from conductor.logs import structlog``: structlog, loaded by ``load_structlog``."""
    if name == "structlog":
        return load_structlog()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def configure_logging(fmt: LogFormat = "auto", *, verbose: bool = False) -> None:
    """Configure structlog for the process; ``auto`` picks console on a TTY, JSON otherwise.

    If structlog is not loaded yet, the configuration is applied when it is first needed
    (``get_logger``'s first call, or ``ensure_logging``).
    """
    _held[:] = [(fmt, verbose)]
    _given[:] = [(fmt, verbose)]
    if "structlog" in sys.modules:
        ensure_logging()


def ensure_logging() -> None:
    """Load structlog and apply the configuration ``configure_logging`` holds. A library
    caller that configured nothing gets the default (``auto``, to stderr, never stdout); one
    that configured structlog itself keeps its configuration."""
    import logging

    load_structlog()
    import structlog

    if not _held:
        if structlog.is_configured():
            return
        _held.append(("auto", False))
    fmt, verbose = _held.pop()
    _close_run_log()
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.INFO
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def log_run_to(path: Path) -> Path:
    """Send this process's log lines to ``path`` for a run (see the module docstring).

    Every structlog line is appended to ``path`` as one JSON object, and so are warnings of
    libraries that use the standard ``logging`` module (never shown on the screen). Stderr
    keeps, with the ``auto`` format, warnings and errors as one short line each, or every
    line in the format that ``--log-format`` named. The file (and its directory) is created
    with the first line, so a run refused before it logs anything leaves nothing behind.
    Returns ``path``.
    """
    import logging

    load_structlog()
    import structlog

    fmt, verbose = (_given or [("auto", False)])[-1]
    _held.clear()
    _close_run_log()
    sink = _RunLog(path, fmt)
    _run_logs.append(sink)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            sink.processor,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.INFO
        ),
        logger_factory=lambda *args: sink,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    sink.handler = _stdlib_handler(sink)
    sink.replaced = (list(root.handlers), root.level)
    root.handlers = [sink.handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    return path


class _RunLog:
    """The end of structlog's chain during a run: JSON lines to the run's log file, and to
    stderr what the format asks for. Thread-safe (attempts log from worker threads)."""

    def __init__(self, path: Path, fmt: LogFormat) -> None:
        import threading

        self.path = path
        self.file: IO[str] | None = None
        self.fmt = fmt
        self.handler: logging.Handler | None = None
        self.replaced: tuple[list[logging.Handler], int] | None = None
        self._lock = threading.Lock()

    @staticmethod
    def processor(_logger: Any, _method: str, event: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Hand the event dict itself to ``msg`` (the rendering happens there)."""
        return (event,), {}

    def write(self, event: dict[str, Any]) -> None:
        """Append ``event`` to the log file as one JSON line."""
        import contextlib
        import json
        import os

        from conductor.errors import ConductorError

        line = json.dumps(event, default=str, ensure_ascii=False)
        # A full disk, a closed file or a refused path must never fail the run.
        with self._lock, contextlib.suppress(OSError, ValueError, ConductorError):
            if self.file is None:
                from conductor.paths import ensure_dir, open_state_file

                ensure_dir(self.path.parent)
                fd = open_state_file(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                self.file = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
            self.file.write(line + "\n")

    def msg(self, event: dict[str, Any]) -> None:
        """Log ``event``: to the file, and to stderr as ``fmt`` says."""
        self.write(event)
        text = self.for_stderr(event)
        if text is not None:
            stream = sys.stderr  # looked up now: a live view may have redirected it
            try:
                stream.write(text + "\n")
                stream.flush()
            except (OSError, ValueError):  # a closed stderr must not fail the run
                return

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg

    def for_stderr(self, event: dict[str, Any]) -> str | None:
        """What stderr shows of ``event``: None for nothing."""
        if self.fmt == "json":
            import json

            return json.dumps(event, default=str, ensure_ascii=False)
        if self.fmt == "console":
            import structlog

            renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
            return str(renderer(None, str(event.get("level", "info")), dict(event)))
        if event.get("level") not in ("warning", "error", "critical", "exception"):
            return None
        return short_line(event)

    def close(self) -> None:
        """Close the file; give the standard ``logging`` module its handlers back."""
        import logging

        if self.replaced is not None:
            root = logging.getLogger()
            if self.handler in root.handlers:
                root.handlers, level = self.replaced
                root.setLevel(level)
        with self._lock:
            if self.file is not None:
                self.file.close()
                self.file = None


_run_logs: list[_RunLog] = []
"""The sink ``log_run_to`` opened, while it is in use."""


def _close_run_log() -> None:
    while _run_logs:
        _run_logs.pop().close()


_QUIET_KEYS = frozenset({"event", "level", "timestamp", "track", "task_id", "worker_id"})
"""Fields a short line leaves out (the event is its text; the task leads it)."""


def short_line(event: dict[str, Any]) -> str:
    """``warning: task t1: event (key=value, ...)``: one readable line for the screen."""
    head = str(event.get("level", "info"))
    task = event.get("task_id")
    text = str(event.get("event", ""))
    if task:
        text = f"task {task}: {text}"
    extra = [
        f"{key}={_flat(value)}"
        for key, value in event.items()
        if key not in _QUIET_KEYS and key != "exception" and value is not None
    ]
    line = f"{head}: {text}" + (f" ({', '.join(extra)})" if extra else "")
    exc = event.get("exception")
    if isinstance(exc, str) and exc.strip():
        line += f": {exc.strip().splitlines()[-1]}"
    return line


def _flat(value: Any, width: int = 160) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _stdlib_handler(sink: _RunLog) -> logging.Handler:
    """A ``logging`` handler that appends records to the run's log file as JSON."""
    import logging
    from datetime import UTC, datetime

    class _ToRunLog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                event: dict[str, Any] = {
                    "event": record.getMessage(),
                    "logger": record.name,
                    "level": record.levelname.lower(),
                    "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
                }
                if record.exc_info:
                    event["exception"] = logging.Formatter().formatException(record.exc_info)
            except Exception:  # a record that cannot be formatted must not end the run
                self.handleError(record)
                return
            sink.write(event)

    return _ToRunLog()


class Logger:
    """``structlog.get_logger(name)``, loaded on the first call of one of its methods."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, method: str) -> Any:
        ensure_logging()
        import structlog

        return getattr(structlog.get_logger(self._name), method)


def get_logger(name: str) -> Logger:
    """A logger for module ``name`` that loads structlog only when it first logs."""
    return Logger(name)
