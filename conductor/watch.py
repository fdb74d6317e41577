"""Wake an async waiter when a message appears on the bus.

On Linux ``BusWatcher`` opens an inotify descriptor (libc's ``inotify_init1`` and
``inotify_add_watch``, called through ctypes), watching the bus directory for created and
moved-in entries (a message is published by linking it into place), and reads it from the
event loop itself: no thread, and a burst of events costs one read. (watchdog's own binding,
``watchdog.observers.inotify_c``, loads its observer package with it, which takes longer than a
short run's own work.) Elsewhere it runs a watchdog
``Observer`` (not recursive, created and moved events) whose thread wakes the event loop
through ``anyio.from_thread.run_sync``. The Observer is not the default on Linux because it
handles every event in three Python threads: with the conductor's own posts that cost a
quarter of its scheduling time.

Events are only a hint: ``wait`` re-reads ``Bus.last_seq()`` after every wake-up and at least
every ``rescan_interval`` seconds, because inotify drops events silently when its queue
overflows, and some filesystems (NFS) deliver none at all. Without events (``observe=False``,
or when inotify is unavailable) the watcher simply polls at that interval.

Messages posted by this process do not need the observer: call ``poke()`` after posting.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from conductor.bus import Bus
from conductor.logs import get_logger

log = get_logger(__name__)

_IN_CREATE = 0x100
_IN_MOVED_TO = 0x80
"""inotify events for a new entry in a directory (``<sys/inotify.h>``)."""


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
        self._inotify: int | None = None
        self._reader: anyio.abc.TaskGroup | None = None

    @property
    def observing(self) -> bool:
        """True while file-system events are delivered (inotify or a watchdog observer)."""
        return self._observer is not None or self._inotify is not None

    async def __aenter__(self) -> BusWatcher:
        self._bind()
        self._closing = False
        if self.observe:
            self._inotify = _open_inotify(str(self.bus.directory))
            if self._inotify is not None:
                self._reader = anyio.create_task_group()
                await self._reader.__aenter__()
                self._reader.start_soon(self._read_inotify, self._inotify, name="bus inotify")
            else:
                self._observer = await anyio.to_thread.run_sync(self._start_observer)
        return self

    async def _read_inotify(self, fd: int) -> None:
        """Drain the inotify descriptor whenever it is readable; each batch is one wake-up."""
        while True:
            await anyio.wait_readable(fd)
            with contextlib.suppress(BlockingIOError, InterruptedError):
                while os.read(fd, 65536):
                    pass
            self._from_observer()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        reader, self._reader = self._reader, None
        fd, self._inotify = self._inotify, None
        try:
            if reader is not None:
                reader.cancel_scope.cancel()
                await reader.__aexit__(None, None, None)
        finally:
            # Also when the caller's scope is cancelled (a run ending): the wait above then
            # raises, and the descriptor would otherwise stay open for the process's life.
            if fd is not None:
                os.close(fd)
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
        """Called for created/moved events: in the observer's thread, or the loop's (inotify)."""
        if self._closing or self._signalled:
            return  # a wake-up is already on its way: coalesce bursts
        self._signalled = True
        self.poke()

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


def _open_inotify(directory: str) -> int | None:
    """A non-blocking inotify descriptor watching ``directory`` for new entries, or None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init1, add_watch = libc.inotify_init1, libc.inotify_add_watch
    except (OSError, AttributeError):  # no inotify in this libc
        return None
    add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
    fd: int = init1(os.O_NONBLOCK | os.O_CLOEXEC)  # IN_NONBLOCK and IN_CLOEXEC are these flags
    if fd < 0:
        return None
    if add_watch(fd, os.fsencode(directory), _IN_CREATE | _IN_MOVED_TO) < 0:
        os.close(fd)
        return None
    return fd


def _stop_observer(observer: Any) -> None:
    observer.stop()
    observer.join(timeout=10)
