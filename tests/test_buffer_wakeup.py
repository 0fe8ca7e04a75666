"""The store task's wake-up flag: set/timeout semantics, and a wait that costs one timer."""

from __future__ import annotations

import asyncio

import pytest

from buffer.wakeup import Wakeup


def test_a_set_flag_returns_at_once_and_stays_set_until_cleared() -> None:
    async def main() -> None:
        wake = Wakeup()
        wake.set()
        assert await wake.wait(60.0) is True
        assert wake.is_set()
        wake.clear()
        assert not wake.is_set()
        assert await wake.wait(0.0) is False

    asyncio.run(main())


def test_a_wait_ends_when_set_from_another_task_before_its_timeout() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wake = Wakeup()
        loop.call_soon(wake.set)
        started = loop.time()
        assert await wake.wait(60.0) is True
        assert loop.time() - started < 30.0  # not the timeout (a generous bound)

    asyncio.run(main())


def test_a_timed_out_wait_is_one_timer_and_no_task() -> None:
    """``wait_for`` would add a task (and five loop turns) per wait; this must not."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        wake = Wakeup()
        timers: list[float] = []
        handles: list[asyncio.TimerHandle] = []
        original = loop.call_later

        def counting_call_later(delay: float, *args: object) -> asyncio.TimerHandle:
            timers.append(delay)
            handles.append(original(delay, *args))  # type: ignore[arg-type]
            return handles[-1]

        loop.call_later = counting_call_later  # type: ignore[method-assign]
        tasks_before = len(asyncio.all_tasks())
        waiting = asyncio.ensure_future(wake.wait(0.01))
        await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) == tasks_before + 1  # only the one awaiting
        assert await waiting is False
        assert timers == [0.01]
        # the timer is cancelled once a set ends the wait early
        wake_early = asyncio.ensure_future(wake.wait(60.0))
        await asyncio.sleep(0)
        wake.set()
        assert await wake_early is True
        assert timers == [0.01, 60.0] and handles[-1].cancelled()

    asyncio.run(main())


def test_two_waiters_at_once_are_refused() -> None:
    async def main() -> None:
        wake = Wakeup()
        first = asyncio.ensure_future(wake.wait(60.0))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already waiting"):
            await wake.wait(1.0)
        wake.set()
        assert await first is True

    asyncio.run(main())
