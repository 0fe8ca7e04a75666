"""What an idle 10 ms poll touches: one register read in the HAL, a counter read only when due.

The idle gateway polls 100 times a second; each SPI read it skips is CPU saved. These
tests pin the savings *and* the guarantees they must keep: the 27-bit counter is still
extended across chip wraps by ``receive()`` alone, and the downlink path still reads the
counter at every poll while a packet is queued, at once in a new session, and at least
every ``COUNTER_REFRESH_S`` otherwise; class B reads the GPS every ``GPS_POLL_S`` and adds a
counter read only for a new GPS second (its beacons).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gateway.config import load_config
from gateway.downlink_path import (
    COUNTER_REFRESH_S,
    GPS_POLL_S,
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
    """Says a new GPS second was paired when ``synced`` is set; records the beacon counts."""

    def __init__(self) -> None:
        self.polls = 0
        self.synced = False
        self.counts: list[int] = []

    def poll_receiver(self) -> bool:
        self.polls += 1
        return self.synced

    def queue_beacons(self, count_us: int) -> None:
        self.counts.append(count_us)
        self.synced = False


def test_service_radio_reads_the_counter_only_when_needed(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, 1883))
    region = load_region("EU868")
    clock = FakeClock(10.0)
    conc = CountingConcentrator()
    session = RadioSession()
    with ThreadPoolExecutor(1) as executor:
        path = DownlinkPath(
            config=config, region=region, gateway_id="0102030405060708",
            concentrator=conc, radio_executor=executor, session=session,  # type: ignore[arg-type]
            publish_ack=lambda _t, _p: True, ack_topic="ack",
            plan_store=PlanStore(tmp_path / "plan.json"),
            running_plan=StartPlan(region.default_channel_plan(), "", "region"),
            max_conducted_dbm=None, monotonic=clock)
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
    class_b = ClassBStub()
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
