"""GPS: NMEA/UBX parsing from a messy stream, the crystal-error filter, time ↔ counter, pairing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal.backends.emulated import open_emulated
from hal.emulator.gps import GpsEmulator
from hal.gps import (
    UBX_NAV,
    UBX_NAV_TIMEGPS,
    Gga,
    GpsStreamParser,
    NavTimeGps,
    Rmc,
    enable_nav_timegps,
    nmea_checksum,
    parse_nmea,
    ubx_frame,
)
from hal.gps_time import (
    GPS_EPOCH_UNIX_S,
    GpsClock,
    GpsReader,
    TimeReferenceError,
    signed_count_delta,
)
from hal.types import COUNTER_MODULO, EU868_DEFAULT_PLAN


def sentence(body: str) -> bytes:
    return f"${body}*{nmea_checksum(body)}\r\n".encode()


RMC = sentence("GPRMC,123519.50,A,4807.038,N,01131.000,W,022.4,084.4,230324,003.1,W")
GGA = sentence("GNGGA,123519,4807.038,S,01131.000,E,1,08,0.9,545.4,M,46.9,M,,")


def nav(week: int = 2300, tow_ms: int = 1000, valid: int = 0x07) -> bytes:
    payload = (tow_ms.to_bytes(4, "little") + (250).to_bytes(4, "little", signed=True)
               + week.to_bytes(2, "little") + bytes((18, valid)) + bytes(4))
    return ubx_frame(UBX_NAV, UBX_NAV_TIMEGPS, payload)


def test_rmc_and_gga_are_parsed_with_signed_coordinates() -> None:
    rmc = parse_nmea(RMC.decode().strip())
    assert isinstance(rmc, Rmc) and rmc.valid
    assert rmc.utc == datetime(2024, 3, 23, 12, 35, 19, 500_000, tzinfo=UTC)
    assert rmc.latitude == pytest.approx(48 + 7.038 / 60)
    assert rmc.longitude == pytest.approx(-(11 + 31 / 60))
    gga = parse_nmea(GGA.decode().strip())
    assert isinstance(gga, Gga) and (gga.fix_quality, gga.satellites) == (1, 8)
    assert gga.latitude is not None and gga.latitude < 0 and gga.altitude_m == 545.4


def test_a_bad_nmea_checksum_raises() -> None:
    with pytest.raises(ValueError, match="checksum"):
        parse_nmea(RMC.decode().strip()[:-2] + "00")


def test_nav_timegps_gives_nanoseconds_since_the_gps_epoch() -> None:
    [msg] = GpsStreamParser().feed(nav(week=2300, tow_ms=1000))
    assert isinstance(msg, NavTimeGps) and msg.valid
    assert msg.gps_ns == (2300 * 604_800 + 1) * 1_000_000_000 + 250


def test_the_stream_parser_survives_garbage_splits_and_bad_checksums() -> None:
    corrupt = bytearray(nav())
    corrupt[-1] ^= 0xFF
    stream = b"\x00\xffjunk" + RMC + bytes(corrupt) + b"$GPXXX,1*00\r\n" + GGA + nav(tow_ms=2000)
    parser = GpsStreamParser()
    out = []
    for i in range(0, len(stream), 7):  # bytes arrive in dribbles
        out += parser.feed(stream[i:i + 7])
    assert [type(m).__name__ for m in out] == ["Rmc", "Gga", "NavTimeGps"]
    assert parser.errors == {"ubx_checksum": 1, "nmea_invalid": 1}


@given(st.binary(max_size=600))
def test_random_bytes_never_crash_the_parser(data: bytes) -> None:
    parser = GpsStreamParser()
    parser.feed(data)
    assert parser.feed(RMC) != [] or parser.errors


def test_cfg_msg_enables_nav_timegps() -> None:
    assert enable_nav_timegps() == bytes.fromhex("b562060103000120012c83")


class HostClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


SECOND_NS = 1_000_000_000


def test_sync_measures_the_crystal_error_and_converts_both_ways() -> None:
    host = HostClock()
    clock = GpsClock(host)
    gps0 = 1_400_000_000 * SECOND_NS
    clock.sync(4_000_000_000, gps0)
    host.t += 1
    assert clock.sync((4_000_000_000 + 1_000_005) % COUNTER_MODULO, gps0 + SECOND_NS)  # +5 ppm
    ref = clock.reference
    assert ref is not None and ref.xtal_err == pytest.approx(1.000005)
    later = clock.gps_ns_to_count(gps0 + 3 * SECOND_NS)
    assert later == (4_000_000_000 + 3_000_015) % COUNTER_MODULO  # across the 32-bit wrap
    assert clock.count_to_gps_ns(later) == pytest.approx(gps0 + 3 * SECOND_NS, abs=1000)
    before = (ref.count_us - 500_000) % COUNTER_MODULO  # a frame just before the reference
    assert clock.time_since_gps_epoch_s(before) == pytest.approx(1_400_000_000.5, abs=1e-5)


def test_aberrant_points_are_ignored_until_three_in_a_row_reset_the_reference() -> None:
    host = HostClock()
    clock = GpsClock(host)
    clock.sync(0, 0)
    results = [clock.sync(2_000_000 * (i + 1), (i + 1) * SECOND_NS) for i in range(3)]  # 2x fast
    assert results == [False, False, True]
    assert clock.reference is not None and clock.reference.count_us == 6_000_000
    assert clock.reference.xtal_err == 1.0


def test_an_old_reference_is_not_used() -> None:
    host = HostClock()
    clock = GpsClock(host)
    with pytest.raises(TimeReferenceError):
        clock.count_to_gps_ns(0)
    clock.sync(0, 0)
    assert clock.valid
    host.t += 31
    assert not clock.valid
    with pytest.raises(TimeReferenceError, match="older than 30 s"):
        clock.gps_ns_to_count(0)


@given(st.integers(0, COUNTER_MODULO - 1), st.integers(-(1 << 31), (1 << 31) - 1))
def test_signed_delta_inverts_modular_addition(ref: int, delta: int) -> None:
    assert signed_count_delta((ref + delta) % COUNTER_MODULO, ref) == delta


def test_reader_pairs_each_nav_timegps_with_the_pps_latched_counter() -> None:
    t = [500.0]
    conc, emu = open_emulated(clock=lambda: t[0])
    conc.start(EU868_DEFAULT_PLAN)
    receiver = GpsEmulator(emu, gps_seconds=1_400_000_000)
    reader = GpsReader(receiver, conc.pps_counter_us, GpsClock(lambda: t[0]))
    assert bytes(receiver.written) == enable_nav_timegps()
    for _ in range(3):
        t[0] += 1.0
        receiver.second()
        reader.poll()
    assert reader.status.has_fix and reader.status.syncs == 3
    pps = conc.pps_counter_us()
    assert reader.clock.count_to_gps_ns(pps) == 1_400_000_003 * SECOND_NS
    frame_count = (pps + 250_000) % COUNTER_MODULO
    assert reader.clock.time_since_gps_epoch_s(frame_count) == pytest.approx(1_400_000_003.25)
    utc = reader.clock.reference.utc_unix_ns if reader.clock.reference else None
    assert utc == (GPS_EPOCH_UNIX_S + 1_400_000_003 - 18) * SECOND_NS


def test_no_fix_means_no_sync() -> None:
    t = [10.0]
    conc, emu = open_emulated(clock=lambda: t[0])
    conc.start(EU868_DEFAULT_PLAN)
    receiver = GpsEmulator(emu)
    receiver.fix = False
    reader = GpsReader(receiver, conc.pps_counter_us, GpsClock(lambda: t[0]))
    for _ in range(3):
        t[0] += 1
        receiver.second()
        reader.poll()
    assert not reader.status.has_fix and reader.status.syncs == 0 and not reader.clock.valid
