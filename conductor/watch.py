"""Wake an async waiter when a message appears on the bus.

``BusWatcher`` runs a watchdog observer on the bus directory (not recursive, created and
moved events only: a message is published by linking it into place). The observer's thread
wakes the event loop through ``anyio.from_thread.run_sync`` with the loop's token. Events are
only a hint: ``wait`` re-reads ``Bus.last_seq()`` after every wake-up and at least every
``rescan_interval`` seconds, because inotify drops events silently when its queue overflows,
and some filesystems (NFS) deliver none at all. Without an observer (``observe=False``, or
when inotify is unavailable) the watcher simply polls at that interval.

Messages posted by this process do not need the observer: call ``poke()`` after posting.
"""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import structlog

from conductor.bus import Bus

log = structlog.get_logger(__name__)


class BusWatcher:
    """Wakes ``wait`` when another process (or ``poke``) adds a message to ``bus``."""

    def __init__(self, bus: Bus, *, rescan_interval: float = 0.5, observe: bool = True) -> None:
        if rescan_interval <= 0:
            raise ValueError("rescan_interval must be positive")
        self.bus = bus
        self.rescan_interval = rescan_interval
        self.observe = observe
        """False: no watchdog observer, only the rescan timer."""
        self._event: anyio.Event | None = None
        self._token: Any = None
        self._loop_thread: int | None = None
        self._signalled = False
        self._closing = False
        self._observer: Any = None

    @property
    def observing(self) -> bool:
        """True while a watchdog observer is delivering events."""
        return self._observer is not None

    async def __aenter__(self) -> BusWatcher:
        self._bind()
        self._closing = False
        if self.observe:
            self._observer = await anyio.to_thread.run_sync(self._start_observer)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        observer, self._observer = self._observer, None
        if observer is not None:
            # Join in a worker thread: the observer may be waiting for this loop to run a
            # wake-up, so blocking the loop here could deadlock.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_stop_observer, observer)
        self._token = None
        self._loop_thread = None

    def _bind(self) -> None:
        """Remember the running event loop so other threads can wake it."""
        if self._token is None:
            self._token = anyio.lowlevel.current_token()
            self._loop_thread = threading.get_ident()
        if self._event is None:
            self._event = anyio.Event()

    def _start_observer(self) -> Any:
        from watchdog.events import FileCreatedEvent, FileMovedEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class _Handler(FileSystemEventHandler):
            def on_created(self, event: Any) -> None:
                watcher._from_observer()

            def on_moved(self, event: Any) -> None:
                watcher._from_observer()

        observer = Observer()
        try:
            observer.schedule(
                _Handler(),
                str(self.bus.directory),
                recursive=False,
                event_filter=[FileCreatedEvent, FileMovedEvent],
            )
            observer.start()
        except OSError as exc:
            log.warning(
                "bus watch unavailable; polling instead",
                bus=str(self.bus.directory), error=str(exc), interval=self.rescan_interval,
            )
            return None
        return observer

    def _from_observer(self) -> None:
        """Called in the observer's thread for every created/moved event."""
        if self._closing or self._signalled:
            return  # a wake-up is already on its way: coalesce bursts
        self._signalled = True
        self._wake_from_thread()

    def _wake_from_thread(self) -> None:
        token = self._token
        if token is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has ended: nobody is waiting
            anyio.from_thread.run_sync(self._wake, token=token)

    def _wake(self) -> None:
        """Runs in the event loop's thread."""
        if self._event is not None:
            self._event.set()

    def poke(self) -> None:
        """Wake waiters now (after this process posted a message). Thread-safe."""
        if self._loop_thread is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._wake()
        else:
            self._wake_from_thread()

    async def wait(self, after: int, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (False on timeout is the API)
        """Return True as soon as ``bus.last_seq() > after``; False after ``timeout`` seconds.

        Checks first, then sleeps until a wake-up or ``rescan_interval``, re-checking each time.
        """
        self._bind()
        with anyio.move_on_after(timeout):
            while True:
                event = self._event
                if event is None or event.is_set():
                    event = self._event = anyio.Event()
                self._signalled = False
                if self.bus.last_seq() > after:
                    return True
                with anyio.move_on_after(self.rescan_interval):
                    await event.wait()
        return self.bus.last_seq() > after


def _stop_observer(observer: Any) -> None:
    observer.stop()
    observer.join(timeout=10)
