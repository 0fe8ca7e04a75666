"""The one thread that owns the concentrator: runs jobs handed to it and polls on its own.

SPI I/O blocks, so every concentrator call runs on this thread. A thread pool
would do for the jobs (start, stop, a downlink's reload), but the receive poll
comes every 10 ms whether or not the chip holds anything: as an executor job it
cost the event loop a timer, a future and two thread hand-offs each time, and
that was most of the gateway's idle CPU. Here the thread runs the poll itself
between jobs, and the event loop hears from it only when the poll found packets
(see :mod:`gateway.radio_loop`). It is an :class:`concurrent.futures.Executor`,
so ``loop.run_in_executor(radio_thread, fn)`` still reaches the chip.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

import structlog

__all__ = ["RadioThread"]

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_Job = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]
_STOP: Any = object()  # after the jobs queued before it


class RadioThread(Executor):
    """A single worker thread that also calls ``poll`` every ``interval_s`` once polling.

    Jobs run in submission order and ahead of a due poll; the poll keeps its
    cadence (a late poll is not followed by a burst of catch-up polls). ``poll``
    returns the seconds to wait before the next one, or None for the interval
    (a failing chip backs off that way). An exception escaping ``poll`` stops
    polling and is passed to ``on_poll_error``; jobs keep running.

    The thread waits on a plain lock used as a signal (``Lock.acquire(timeout=...)``):
    one timed wait in C per idle poll that returns False when the poll is due. A
    ``SimpleQueue.get(timeout=...)`` wait costs the same wait plus raising and catching
    ``queue.Empty`` at every idle poll: measured here 5–10 µs more per wake-up (about
    0.07 % of a core at 100 polls a second), as much as a bare ``time.sleep`` loop
    differs from it. Jobs wait in a deque; submitting one releases the signal once.
    """

    def __init__(self, name: str = "radio") -> None:
        self._jobs: deque[Any] = deque()
        self._signal = threading.Lock()
        """Held while nothing is signalled; released (once) to wake the thread."""
        self._signal.acquire()
        self._signalled = False
        self._lock = threading.Lock()
        """Guards the jobs, the signal state and the polling settings."""
        self._poll: Callable[[], float | None] | None = None
        self._on_poll_error: Callable[[BaseException], None] | None = None
        self._interval_s = 0.01
        self._next_poll = 0.0
        self._shutdown = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- Executor -------------------------------------------------------------------------

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new jobs after shutdown")
            self._jobs.append((future, fn, args, kwargs))
            self._wake_locked()
        return future

    def _wake_locked(self) -> None:
        """Wake the thread (``self._lock`` held): release the signal unless it already is."""
        if not self._signalled:
            self._signalled = True
            self._signal.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop polling; run (or cancel) the jobs already queued, then end the thread."""
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                self._poll = None
                if cancel_futures:
                    self._cancel_queued()
                self._jobs.append(_STOP)
                self._wake_locked()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    def _cancel_queued(self) -> None:
        """Cancel the jobs not started yet (``self._lock`` held)."""
        for item in self._jobs:
            if isinstance(item, tuple):
                item[0].cancel()
        self._jobs = deque(item for item in self._jobs if not isinstance(item, tuple))

    # --- polling --------------------------------------------------------------------------

    def start_polling(self, poll: Callable[[], float | None], interval_s: float,
                      on_poll_error: Callable[[BaseException], None]) -> None:
        with self._lock:
            self._poll, self._interval_s = poll, interval_s
            self._on_poll_error = on_poll_error
            self._next_poll = time.monotonic()
            self._wake_locked()

    def stop_polling(self) -> None:
        """No poll starts after this returns (one already running finishes)."""
        with self._lock:
            self._poll = None

    @property
    def polling(self) -> bool:
        return self._poll is not None

    # --- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        acquire, monotonic = self._signal.acquire, time.monotonic
        while True:
            timeout = None if self._poll is None else self._next_poll - monotonic()
            if timeout is None:
                woken = acquire()
            else:
                woken = acquire(True, timeout) if timeout > 0 else acquire(False)
            if woken:  # jobs, a stop or new polling settings: run the jobs, then look again
                with self._lock:  # the release was consumed: the next submit releases again
                    self._signalled = False
                if self._run_jobs():
                    return
                continue
            with self._lock:  # the wait ran out: a poll is due
                poll = self._poll
            if poll is not None:
                self._run_poll(poll)

    def _run_jobs(self) -> bool:
        """Run the queued jobs in order (ahead of a due poll); True at the stop marker."""
        while True:
            with self._lock:
                if not self._jobs:
                    return False
                item = self._jobs.popleft()
            if item is _STOP:
                return True
            self._run_job(item)

    @staticmethod
    def _run_job(job: _Job) -> None:
        future, fn, args, kwargs = job
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)

    def _run_poll(self, poll: Callable[[], float | None]) -> None:
        try:
            delay = poll()
        except Exception as exc:
            with self._lock:
                if self._poll is poll:
                    self._poll = None
                on_error = self._on_poll_error
            log.exception("radio_poll_crashed")
            if on_error is not None:
                on_error(exc)
            return
        now = time.monotonic()
        with self._lock:
            if delay is not None:
                self._next_poll = now + delay
            else:
                self._next_poll += self._interval_s
                if self._next_poll <= now:  # late (a long job or poll): keep cadence, no burst
                    self._next_poll = now + self._interval_s
