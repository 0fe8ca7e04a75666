"""What an idle 10 ms poll touches: one register read in the HAL, a counter read only when due.

The idle gateway polls 100 times a second; each SPI read it skips is CPU saved. These
tests pin the savings *and* the guarantees they must keep: the 27-bit counter is still
extended across chip wraps by ``receive()`` alone, and the downlink path still reads the
counter at every poll while a packet is queued, at once in a new session, and at least
every ``COUNTER_REFRESH_S`` otherwise; class B reads the GPS every ``GPS_POLL_S`` (but not for
``GPS_QUIET_AFTER_PAIR_S`` after a new second was paired) and adds a counter read only for a
new GPS second (its beacons).
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.config import load_config
from gateway.downlink_path import (
    COUNTER_REFRESH_S,
    GPS_POLL_S,
    GPS_QUIET_AFTER_PAIR_S,
    DownlinkPath,
    PlanStore,
    StartPlan,
)
from gateway.radio_loop import RadioSession
from hal.backends.emulated import open_emulated
from hal.sx1302 import COUNTER_WRAP_S, IDLE_COUNTER_READ_S
from hal.types import EU868_DEFAULT_PLAN, TxState
from packet_forwarder.regions.loader import load_region
from tests.support.fakes import FakeClock
from tests.support.gateway_proc import write_config


def test_an_empty_receive_is_one_register_read() -> None:
    clock = FakeClock(50.0)
    conc, emu = open_emulated(clock=clock, record_transcript=True)
    conc.start(EU868_DEFAULT_PLAN)
    conc.counter_us()
    assert emu.transcript is not None
    emu.transcript.clear()
    assert conc.receive() == []
    assert len(emu.transcript) == 1
    clock.t += IDLE_COUNTER_READ_S + 0.1  # a sample this old is refreshed: 1 + 2 reads
    emu.transcript.clear()
    assert conc.receive() == []
    assert len(emu.transcript) == 3


def test_receive_alone_still_extends_the_counter_across_chip_wraps() -> None:
    clock = FakeClock(50.0)
    conc, emu = open_emulated(clock=clock)
    conc.start(EU868_DEFAULT_PLAN)
    for _ in range(round(3 * COUNTER_WRAP_S / 0.5)):  # three 134 s wraps, polled every 0.5 s
        clock.t += 0.5
        assert conc.receive() == []
    assert conc.counter_us() == emu.counter_us() > 2 * (1 << 27)
    assert conc.rx_errors.counts == {}


class CountingConcentrator:
    """Just what :meth:`DownlinkPath.service_radio` touches, counting counter reads."""

    def __init__(self) -> None:
        self.reads = 0

    def counter_us(self) -> int:
        self.reads += 1
        return 1_000_000 + self.reads

    def tx_state(self) -> TxState:
        return TxState.FREE


class ClassBStub:
    """Pairs a new GPS second at the next poll when ``synced`` is set (and says beacons are
    due); records when it was polled and the beacon counts."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.polls = 0
        self.polled_at: list[float] = []
        self.synced = False
        self.paired_seconds = 0
        self.counts: list[int] = []

    def poll_receiver(self) -> bool:
        self.polls += 1
        self.polled_at.append(self.clock.t)
        if self.synced:
            self.paired_seconds += 1
        return self.synced

    def queue_beacons(self, count_us: int) -> None:
        self.counts.append(count_us)
        self.synced = False


def _downlink_path(tmp_path: Path, clock: FakeClock, conc: CountingConcentrator,
                   session: RadioSession) -> DownlinkPath:
    config = load_config(write_config(tmp_path, 1883))
    region = load_region("EU868")
    with ThreadPoolExecutor(1) as executor:
        return DownlinkPath(
            config=config, region=region, gateway_id="0102030405060708",
            concentrator=conc, radio_executor=executor, session=session,  # type: ignore[arg-type]
            publish_ack=lambda _t, _p: True, ack_topic="ack",
            plan_store=PlanStore(tmp_path / "plan.json"),
            running_plan=StartPlan(region.default_channel_plan(), "", "region"),
            max_conducted_dbm=None, monotonic=clock)


def test_service_radio_reads_the_counter_only_when_needed(tmp_path: Path) -> None:
    clock = FakeClock(10.0)
    conc = CountingConcentrator()
    session = RadioSession()
    path = _downlink_path(tmp_path, clock, conc, session)
    path.service_radio()
    assert conc.reads == 1  # the first poll of a session reads
    assert path.clock.now() is not None
    for _ in range(9):  # idle, within COUNTER_REFRESH_S of that read: nothing read
        clock.t += COUNTER_REFRESH_S / 10
        path.service_radio()
    assert conc.reads == 1
    clock.t += COUNTER_REFRESH_S / 10 + 1e-6
    path.service_radio()
    assert conc.reads == 2  # at least every COUNTER_REFRESH_S
    session.renew()  # a restarted concentrator: read at once
    path.service_radio()
    assert conc.reads == 3
    class_b = ClassBStub(clock)
    path.class_b = class_b  # type: ignore[assignment]
    reads = conc.reads
    for _ in range(20):  # 10 ms polls over 200 ms, no new GPS second
        clock.t += 0.01
        path.service_radio()
    # the receiver every GPS_POLL_S only, and class B alone adds no counter reads: what is
    # read is the COUNTER_REFRESH_S refresh (it was 20 and 20 when both came every poll)
    assert 0.2 / GPS_POLL_S - 1 <= class_b.polls <= 0.2 / GPS_POLL_S + 1
    assert conc.reads - reads <= 0.2 / COUNTER_REFRESH_S + 1
    assert class_b.counts == []
    reads = conc.reads
    class_b.synced = True  # a new GPS second: beacons are queued against a fresh reading
    clock.t += GPS_POLL_S
    path.service_radio()
    assert conc.reads - reads == 1
    assert class_b.counts == [1_000_000 + conc.reads]


def test_class_b_rests_after_a_paired_second_and_keeps_reading_until_the_next(
        tmp_path: Path) -> None:
    clock = FakeClock(10.0)
    conc = CountingConcentrator()
    path = _downlink_path(tmp_path, clock, conc, RadioSession())
    class_b = ClassBStub(clock)
    path.class_b = class_b  # type: ignore[assignment]

    def poll_for(seconds: float) -> None:
        for _ in range(round(seconds / 0.01)):
            path.service_radio()
            clock.t += 0.01

    def gaps(times: list[float]) -> list[float]:
        return [b - a for a, b in itertools.pairwise(times)]

    poll_for(0.3)  # nothing paired (unlocked): every GPS_POLL_S
    assert len(class_b.polled_at) >= 0.3 / GPS_POLL_S - 1
    assert max(gaps(class_b.polled_at)) <= GPS_POLL_S + 0.01 + 1e-9
    polls = class_b.polls
    class_b.synced = True  # the next read pairs a second (and queues its beacons)
    while class_b.polls == polls:
        poll_for(0.01)
    assert class_b.paired_seconds == 1 and not class_b.synced
    paired_at = class_b.polled_at[-1]
    poll_for(2.0)  # the next message does not come
    after = [t for t in class_b.polled_at if t > paired_at]
    # nothing read in the quiet part of the second, then at once again ...
    assert after[0] - paired_at >= GPS_QUIET_AFTER_PAIR_S - 1e-9
    assert after[0] - paired_at <= GPS_QUIET_AFTER_PAIR_S + 0.01 + 1e-9
    # ... and every GPS_POLL_S until a message comes, so a late one is read within that
    assert len(after) >= (2.0 - GPS_QUIET_AFTER_PAIR_S) / GPS_POLL_S - 1
    assert max(gaps(after)) <= GPS_POLL_S + 0.01 + 1e-9
