"""A wake-up flag for one asyncio task, with a timed wait that costs one timer.

The buffer's store task sleeps until its next commit unless something wakes it
early. ``asyncio.wait_for(event.wait(), timeout)`` would do, but each wait builds a
task, two futures and a timer, and its timeout takes five turns of the event loop
(release the waiter, cancel the inner task, wait for that cancellation): on an idle
gateway that was the loop's biggest cost, once per commit interval. Here a wait is
one future and one timer handle, and a timeout is one loop turn.
"""

from __future__ import annotations

import asyncio

__all__ = ["Wakeup"]


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Wakeup:
    """Set from the event loop's thread; awaited by one task at a time."""

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        if self._waiter is not None:
            _release(self._waiter)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self, timeout: float) -> bool:
        """Until set or ``timeout`` seconds have passed; True if it was set."""
        if self._set:
            return True
        if self._waiter is not None:
            raise RuntimeError("Wakeup.wait: another task is already waiting")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(max(timeout, 0.0), _release, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return self._set
