"""EU868 duty cycle: per ETSI sub-band, sliding hour, stepped with a fake clock."""

from __future__ import annotations

import pytest

from packet_forwarder.downlink.duty_cycle import DutyCycle
from packet_forwarder.regions import load_region
from tests.support.fakes import FakeClock

RX2 = 869_525_000        # 10 % sub-band: 360 s per hour
RX1 = 868_100_000        # 1 % sub-band: 36 s per hour
G2 = 868_900_000         # 0.1 % sub-band: 3.6 s per hour


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def dc(clock: FakeClock) -> DutyCycle:
    return DutyCycle(load_region("EU868"), clock)


def fill(dc: DutyCycle, freq: int, total_us: int, step_us: int = 1_000_000) -> None:
    while total_us > 0:
        dc.record(freq, min(step_us, total_us))
        total_us -= step_us


@pytest.mark.parametrize(("freq", "budget_us"), [(RX2, 360_000_000), (RX1, 36_000_000),
                                                 (G2, 3_600_000)])
def test_budget_per_sub_band(dc: DutyCycle, freq: int, budget_us: int) -> None:
    fill(dc, freq, budget_us - 500_000)
    assert not dc.would_exceed(freq, 500_000)
    assert dc.would_exceed(freq, 500_001)


def test_sub_bands_are_independent(dc: DutyCycle) -> None:
    fill(dc, RX1, 36_000_000)
    assert dc.would_exceed(RX1, 1)
    assert not dc.would_exceed(867_100_000, 1_000_000)   # 865-868 MHz has its own budget
    assert not dc.would_exceed(RX2, 1_000_000)


def test_window_slides(dc: DutyCycle, clock: FakeClock) -> None:
    dc.record(RX1, 20_000_000)
    clock.t += 1800
    dc.record(RX1, 16_000_000)
    assert dc.would_exceed(RX1, 1)
    clock.t += 1800 + 20          # the first booking has left the hour
    assert not dc.would_exceed(RX1, 19_000_000)
    assert dc.would_exceed(RX1, 21_000_000)
    clock.t += 1800               # now both have
    assert not dc.would_exceed(RX1, 36_000_000)


def test_future_bookings_count(dc: DutyCycle) -> None:
    dc.record(RX1, 36_000_000, lead_s=100)
    assert dc.would_exceed(RX1, 1)


def test_release_gives_back_the_time(dc: DutyCycle) -> None:
    booking = dc.record(RX1, 36_000_000)
    assert dc.would_exceed(RX1, 1)
    dc.release(booking)
    assert not dc.would_exceed(RX1, 36_000_000)
    dc.release(booking)   # twice is harmless
    dc.release(None)


def test_usage_reports_every_limited_sub_band(dc: DutyCycle, clock: FakeClock) -> None:
    dc.record(RX2, 2_000_000)
    dc.record(RX2, 3_000_000)
    usage = {u.name: u for u in dc.usage()}
    assert len(usage) == 9   # six ETSI sub-bands and the three gaps between them
    p = usage["869.4-869.65"]
    assert (p.load_max_us, p.load_tracked_us) == (360_000_000, 5_000_000)
    assert usage["868.0-868.6"].load_tracked_us == 0
    clock.t += 3601               # the 3 s transmission still ends inside the hour
    assert {u.name: u for u in dc.usage()}["869.4-869.65"].load_tracked_us == 5_000_000
    clock.t += 3
    assert {u.name: u for u in dc.usage()}["869.4-869.65"].load_tracked_us == 0


def test_regions_without_duty_cycle_never_refuse(clock: FakeClock) -> None:
    dc = DutyCycle(load_region("US915"), clock)
    assert dc.record(923_300_000, 10**9) is None
    assert not dc.would_exceed(923_300_000, 10**10)
    assert dc.usage() == []


def test_frequency_outside_every_sub_band_is_not_booked(dc: DutyCycle) -> None:
    assert dc.record(870_500_000, 1000) is None
