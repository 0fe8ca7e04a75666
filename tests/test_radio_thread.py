"""The radio thread: one thread for jobs and polls, and a loop woken only by packets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from gateway.counters import UplinkCounters
from gateway.radio_loop import REPOLL_BATCH, RadioLoop, RadioSession
from gateway.radio_thread import RadioThread
from hal.errors import HalError
from hal.types import CrcStatus, Modulation, RxPacket


def wait_until(cond: Callable[[], bool], what: str) -> None:
    done = threading.Event()
    for _ in range(1000):
        if cond():
            return
        done.wait(0.01)
    raise AssertionError(f"never happened: {what}")


def test_jobs_run_in_order_on_one_thread_and_report_results() -> None:
    radio = RadioThread()
    try:
        threads: list[str] = []
        order: list[int] = []

        def job(n: int) -> int:
            threads.append(threading.current_thread().name)
            order.append(n)
            return n * 2

        futures = [radio.submit(job, n) for n in range(20)]
        assert [f.result(5) for f in futures] == [n * 2 for n in range(20)]
        assert order == list(range(20))
        assert set(threads) == {"radio"}

        def boom() -> None:
            raise HalError("spi gone")

        with pytest.raises(HalError, match="spi gone"):
            radio.submit(boom).result(5)
        assert radio.submit(job, 7).result(5) == 14  # an exception does not end the thread
    finally:
        radio.shutdown()


def test_polls_and_jobs_share_the_thread_and_never_overlap() -> None:
    radio = RadioThread()
    busy = threading.Lock()
    overlaps: list[str] = []
    polls: list[str] = []

    def exclusive(what: str) -> None:
        if not busy.acquire(blocking=False):
            overlaps.append(what)
            return
        try:
            if what == "poll":
                polls.append(threading.current_thread().name)
        finally:
            busy.release()

    try:
        radio.start_polling(lambda: exclusive("poll"), 0.001, lambda exc: None)
        for _ in range(200):
            radio.submit(exclusive, "job").result(5)
        wait_until(lambda: len(polls) >= 20, "20 polls")
        radio.stop_polling()
        assert not radio.polling
        assert overlaps == []
        assert set(polls) == {"radio"}
    finally:
        radio.shutdown()


def test_a_crashing_poll_stops_polling_reports_and_jobs_go_on() -> None:
    radio = RadioThread()
    errors: list[BaseException] = []
    calls = {"n": 0}

    def poll() -> None:
        calls["n"] += 1
        raise RuntimeError("bug")

    try:
        radio.start_polling(poll, 0.001, errors.append)
        wait_until(lambda: bool(errors), "the poll error")
        assert isinstance(errors[0], RuntimeError)
        assert radio.submit(lambda: "still here").result(5) == "still here"
        assert calls["n"] == 1
        assert not radio.polling
    finally:
        radio.shutdown()


def test_shutdown_runs_queued_jobs_then_refuses_new_ones() -> None:
    radio = RadioThread()
    gate = threading.Event()
    ran: list[int] = []
    radio.submit(gate.wait, 5)
    futures = [radio.submit(ran.append, n) for n in range(5)]
    gate.set()
    radio.shutdown(wait=True)
    assert ran == list(range(5))
    assert all(f.done() for f in futures)
    with pytest.raises(RuntimeError):
        radio.submit(ran.append, 99)


def test_jobs_from_many_threads_while_polling_all_run_once_in_each_ones_order() -> None:
    """The wake-up signal is released once per wait, whoever submits and however often."""
    radio = RadioThread()
    ran: list[tuple[int, int]] = []
    polls = {"n": 0}

    def poll() -> None:
        polls["n"] += 1

    def submitter(who: int) -> None:
        for n in range(300):
            radio.submit(ran.append, (who, n))

    try:
        radio.start_polling(poll, 0.001, lambda exc: None)
        workers = [threading.Thread(target=submitter, args=(who,)) for who in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert radio.submit(lambda: "last").result(5) == "last"
        for who in range(4):
            assert [n for w, n in ran if w == who] == list(range(300))
        assert len(ran) == 1200
        wait_until(lambda: polls["n"] >= 5, "polls going on beside the jobs")
    finally:
        radio.shutdown()


def test_shutdown_can_cancel_the_jobs_not_started() -> None:
    radio = RadioThread()
    gate = threading.Event()
    first = radio.submit(gate.wait, 5)
    waiting = [radio.submit(lambda: None) for _ in range(3)]
    wait_until(first.running, "the first job to start")
    stopper = threading.Thread(target=radio.shutdown, kwargs={"cancel_futures": True})
    stopper.start()
    wait_until(lambda: all(f.cancelled() for f in waiting), "the queued jobs cancelled")
    gate.set()
    stopper.join(5)
    assert first.result(5) is True and not stopper.is_alive()


def packet(n: int) -> RxPacket:
    return RxPacket(payload=bytes([0x40, n, 0, 0x02, 0x26]) + bytes(8), frequency_hz=868_100_000,
                    if_chain=0, rf_chain=0, modulation=Modulation.LORA, spreading_factor=7,
                    bandwidth_hz=125_000, code_rate="4/5", crc_status=CrcStatus.CRC_OK,
                    rssi_dbm=-60.0, snr_db=8.0, count_us=1000 + n)


class FakeChip:
    """Returns queued batches from ``receive`` (empty when none); counts the polls."""

    def __init__(self) -> None:
        self.batches: list[list[RxPacket]] = []
        self.polls = 0
        self.lock = threading.Lock()

    def receive(self) -> list[RxPacket]:
        with self.lock:
            self.polls += 1
            return self.batches.pop(0) if self.batches else []


def test_the_loop_hears_from_the_radio_only_when_packets_came() -> None:
    asyncio.run(_loop_hears_only_packets())


async def _loop_hears_only_packets() -> None:
    chip = FakeChip()
    radio = RadioThread()
    submitted: list[tuple[str, bytes]] = []
    alive = {"n": 0}

    def submit(device: str, body: bytes, **_: Any) -> int:
        submitted.append((device, body))
        return len(submitted)

    rl = RadioLoop(chip, radio, submit, gateway_id="0016c001ff10a235",  # type: ignore[arg-type]
                   session=RadioSession(), poll_interval_s=0.001, forward_crc_error=False,
                   counters=UplinkCounters(),
                   on_alive=lambda: alive.__setitem__("n", alive["n"] + 1))
    deliveries: list[int] = []
    original = rl._deliver

    def counting(received: Any) -> None:
        deliveries.append(len(received))
        original(received)

    rl._deliver = counting  # type: ignore[method-assign]
    task = asyncio.create_task(rl.run())
    try:
        for _ in range(500):
            if chip.polls >= 30:
                break
            await asyncio.sleep(0.005)
        assert chip.polls >= 30
        assert deliveries == []  # thirty empty polls, not one wake-up of the loop
        assert alive["n"] >= 30
        with chip.lock:
            chip.batches.append([packet(1), packet(2), packet(3)])
        for _ in range(500):
            if submitted:
                break
            await asyncio.sleep(0.005)
        assert deliveries == [3]
        assert [body for _, body in submitted] != []
        assert rl.counters.forwarded == 3
        assert rl.counters.last_uplink is not None
        assert rl.counters.last_uplink["device"] == "26020003"
    finally:
        rl.stop()
        await task
        radio.shutdown()


def test_a_bug_in_the_poll_ends_run_with_the_error() -> None:
    asyncio.run(_bug_ends_run())


async def _bug_ends_run() -> None:
    class Broken(FakeChip):
        def receive(self) -> list[RxPacket]:
            raise ValueError("not a HalError")

    radio = RadioThread()
    rl = RadioLoop(Broken(), radio, lambda *a, **k: 0,  # type: ignore[arg-type]
                   gateway_id="0016c001ff10a235", session=RadioSession(),
                   poll_interval_s=0.001, forward_crc_error=False, counters=UplinkCounters())
    try:
        with pytest.raises(ValueError, match="not a HalError"):
            await asyncio.wait_for(rl.run(), 10)
    finally:
        radio.shutdown()


class RecordingLink:
    """Stands in for an MQTT link: records the hold/release calls around a batch."""

    def __init__(self) -> None:
        self.held = 0
        self.calls: list[str] = []

    def hold_writes(self) -> None:
        self.held += 1
        self.calls.append("hold")

    def release_writes(self) -> None:
        self.held -= 1
        self.calls.append("release")


def deliver_with_links(submit: Callable[..., int], links: list[RecordingLink]) -> None:
    radio = RadioThread()
    try:
        rl = RadioLoop(FakeChip(), radio, submit,  # type: ignore[arg-type]
                       gateway_id="0016c001ff10a235", session=RadioSession(),
                       poll_interval_s=0.001, forward_crc_error=False,
                       counters=UplinkCounters(), links=links)
        session = RadioSession()
        rl._deliver([(p, session.context_for(p.count_us)) for p in (packet(1), packet(2))])
    finally:
        radio.shutdown()


def test_a_batch_is_submitted_with_every_links_writes_held_then_released() -> None:
    links = [RecordingLink(), RecordingLink()]
    held_at_submit: list[list[int]] = []

    def submit(device: str, body: bytes, **_: Any) -> int:
        held_at_submit.append([link.held for link in links])
        return 1

    deliver_with_links(submit, links)
    assert held_at_submit == [[1, 1], [1, 1]]  # both frames inside one hold
    assert [link.calls for link in links] == [["hold", "release"]] * 2


def test_the_links_writes_are_released_even_when_a_submit_fails() -> None:
    links = [RecordingLink()]

    def submit(device: str, body: bytes, **_: Any) -> int:
        raise RuntimeError("a bug downstream")

    with pytest.raises(RuntimeError):
        deliver_with_links(submit, links)
    assert links[0].calls == ["hold", "release"] and links[0].held == 0


class RecordingLoop:
    """Stands in for the event loop: keeps what the radio thread hands over, runs it on demand."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., None], tuple[Any, ...]]] = []

    def call_soon_threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        self.calls.append((fn, args))

    def run_all(self) -> None:
        calls, self.calls = self.calls, []
        for fn, args in calls:
            fn(*args)


def test_a_full_batch_is_fetched_again_at_once_while_the_loop_keeps_up() -> None:
    chip = FakeChip()
    radio = RadioThread()
    submitted: list[bytes] = []

    def submit(_device: str, body: bytes, **_: Any) -> int:
        submitted.append(body)
        return len(submitted)

    rl = RadioLoop(chip, radio, submit, gateway_id="0016c001ff10a235",  # type: ignore[arg-type]
                   session=RadioSession(),
                   poll_interval_s=0.01, forward_crc_error=False, counters=UplinkCounters())
    loop = RecordingLoop()
    rl._loop = loop  # type: ignore[assignment]
    try:
        full = [packet(n) for n in range(REPOLL_BATCH)]
        chip.batches = [full, list(full), list(full), [packet(9)]]
        assert rl._poll_thread() == 0.0  # a full batch: poll again at once
        assert rl._poll_thread() is None  # ... but not while the loop has not taken the last
        loop.run_all()
        assert len(submitted) == 2 * REPOLL_BATCH
        assert rl._poll_thread() == 0.0  # the loop kept up: at once again
        loop.run_all()
        assert rl._poll_thread() is None  # one packet: the ordinary cadence
        assert rl._poll_thread() is None  # nothing
        loop.run_all()
        assert len(submitted) == 3 * REPOLL_BATCH + 1
    finally:
        radio.shutdown()
