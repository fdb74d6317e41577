"""structlog configuration, done once at the entry point.

Human-readable lines on a TTY (or ``--log-format console``), one JSON object per line with
``--log-format json``. Modules get a logger with ``get_logger(__name__)`` (or
``structlog.get_logger()``) and bind ``track``, ``task_id`` and ``worker_id`` through
``structlog.contextvars``.

Loading structlog costs more than a quick command's whole run (it loads asyncio), so it is
loaded only when something logs: ``configure_logging`` holds the configuration until then, and
``get_logger`` returns a logger that loads structlog, and applies it, on its first call.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import structlog

LogFormat = Literal["auto", "console", "json"]

_held: list[tuple[LogFormat, bool]] = []
"""The configuration ``configure_logging`` was given while structlog was not loaded yet."""


def configure_logging(fmt: LogFormat = "auto", *, verbose: bool = False) -> None:
    """Configure structlog for the process; ``auto`` picks console on a TTY, JSON otherwise.

    If structlog is not loaded yet, the configuration is applied when it is first needed
    (``get_logger``'s first call, or ``ensure_logging``).
    """
    _held[:] = [(fmt, verbose)]
    if "structlog" in sys.modules:
        ensure_logging()


def ensure_logging() -> None:
    """Load structlog and apply the configuration ``configure_logging`` holds. A library
    caller that configured nothing gets the default (``auto``, to stderr, never stdout); one
    that configured structlog itself keeps its configuration."""
    import logging

    import structlog

    if not _held:
        if structlog.is_configured():
            return
        _held.append(("auto", False))
    fmt, verbose = _held.pop()
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
