"""A model of submit / ack / fail / flush / crash / restart, checked against the real buffer.

What must hold whatever the interleaving: a record is never sent while an older
record of its device is still owed and not in flight (per-device order), and
every record still owed after a crash is delivered in the end (nothing that
was on disk, or kept across a clean restart, is lost).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from buffer.types import AckCallback, Delivery
from buffer.uplink_buffer import UplinkBuffer
from tests.support.buffer import BOOT, FakeClock, FakeSink, Switch, flaky_store, make_config

DEVICES = st.sampled_from(["a", "b", "c"])


class CheckingSink(FakeSink):
    def __init__(self, model: BufferModel) -> None:
        super().__init__(window=4)
        self.model = model

    def send(self, delivery: Delivery, on_result: AckCallback) -> None:
        self.model.check_order(delivery)
        super().send(delivery, on_result)


class BufferModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="buffer-model-"))
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        self.sink = CheckingSink(self)
        self.device_of: dict[int, str] = {}
        self.acked: set[int] = set()
        self.persisted: set[int] = set()
        self.lost: set[int] = set()
        self.violations: list[str] = []
        self.switch = Switch()
        self.buf = self._start()

    # --- plumbing -------------------------------------------------------------------------

    def _start(self) -> UplinkBuffer:
        config = make_config(self.dir / "b.sqlite", read_batch_records=3, retry_after_s=3600)
        buf = UplinkBuffer(config, self.sink,
                           boot_id=BOOT, clock=self.clock, store_factory=flaky_store(self.switch))
        self.loop.run_until_complete(buf.open())
        return buf

    def _do(self, fn: Callable[[], Any]) -> None:
        async def call() -> None:
            fn()
        self.loop.run_until_complete(call())

    def _settle(self) -> None:
        """Pump until the writer thread has nothing more to page in: deterministic steps."""
        for _ in range(1000):
            before = len(self.sink.log)
            self._do(self.buf.sink_ready)
            self.loop.run_until_complete(self.buf.settle())
            if len(self.sink.log) == before:
                return

    def owed(self) -> set[int]:
        return set(self.device_of) - self.acked - self.lost

    def check_order(self, delivery: Delivery) -> None:
        seq, dev = delivery.record.seq, delivery.record.device
        older = {s for s in self.owed() if s < seq and self.device_of[s] == dev}
        not_in_flight = older - set(self.sink.inflight)
        if not_in_flight:  # recorded, not raised: the buffer treats a raising sink as a failure
            self.violations.append(f"{seq} of {dev} overtook {sorted(not_in_flight)}")

    # --- rules ----------------------------------------------------------------------------

    @rule(device=DEVICES, n=st.integers(1, 3))
    def submit(self, device: str, n: int) -> None:
        for _ in range(n):
            seq = self.buf.submit(device, b"p", received_ns=self.clock.wall,
                                  monotonic_ns=self.clock.mono, clock_synced=True)
            assert seq not in self.device_of
            self.device_of[seq] = device

    @precondition(lambda self: bool(self.sink.inflight))
    @rule(pick=st.integers(0, 3), ok=st.booleans())
    def result(self, pick: int, ok: bool) -> None:
        seq = list(self.sink.inflight)[pick % len(self.sink.inflight)]
        if ok:
            self.acked.add(seq)  # before: the ack may send the next record at once
        self._do(lambda: self.sink.ack(seq, ok))

    @rule()
    def disconnect(self) -> None:
        self._do(self.sink.disconnect)

    @rule()
    def reconnect(self) -> None:
        self.sink.up = True
        self._settle()

    @rule(full=st.booleans())
    def disk_full(self, full: bool) -> None:
        self.switch.full = full

    @rule()
    def flush(self) -> None:
        self.loop.run_until_complete(self.buf.flush())
        if not self.switch.full:
            self.persisted |= self.owed()

    @rule()
    def crash(self) -> None:
        self.loop.run_until_complete(self.buf.abort())
        self.lost |= self.owed() - self.persisted
        self.sink.inflight.clear()
        self.buf = self._start()

    @rule()
    def restart(self) -> None:
        self.loop.run_until_complete(self.buf.close())
        if self.switch.full:
            self.lost |= self.owed() - self.persisted
        else:
            self.persisted |= self.owed()
        self.sink.inflight.clear()
        self.buf = self._start()

    @invariant()
    def order_kept(self) -> None:
        assert not self.violations

    @invariant()
    def holds_everything_owed(self) -> None:
        assert self.buf.stats().depth >= len(self.owed())

    def teardown(self) -> None:
        try:
            self.switch.full = False
            self.sink.up = True
            for _ in range(400):
                if not self.owed():
                    break
                self._settle()
                for seq in list(self.sink.inflight):
                    self.acked.add(seq)
                    self._do(lambda s=seq: self.sink.ack(s))  # type: ignore[misc]
            assert not self.owed(), f"never delivered: {sorted(self.owed())}"
            assert not self.violations
            self.loop.run_until_complete(self.buf.close())
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)


BufferModel.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestBufferModel = BufferModel.TestCase


def test_fake_clock_is_shared() -> None:
    assert FakeClock().monotonic_ns() == FakeClock().monotonic_ns()
