"""DownlinkHandler: every ack status from its cause, fallback order, class A vs class C, wrap."""

from __future__ import annotations

import itertools
import json

import pytest
from chirpstack_api.gw import gw_pb2

from hal.types import COUNTER_MODULO, TxTiming
from packet_forwarder.chirpstack import JSON, PROTOBUF, make_context, marshal, unmarshal
from packet_forwarder.downlink.beacon import BeaconInfo, BeaconScheduler, next_beacon_time_s
from packet_forwarder.downlink.checks import TxLimits
from packet_forwarder.downlink.clock import RadioNow
from packet_forwarder.downlink.duty_cycle import DutyCycle
from packet_forwarder.downlink.gps import GpsReference
from packet_forwarder.downlink.handler import DownlinkHandler
from packet_forwarder.downlink.jit import JitConfig, JitQueue
from packet_forwarder.downlink.status import TxStatus
from packet_forwarder.regions import load_region
from tests.support.fakes import FakeClock

GW = "0016c001ff10a235"
SESSION = 0x5EED
EU = load_region("EU868")
S = TxStatus


def make_handler(*, capacity: int = 32, limits: TxLimits | None = None,
                 region: str = "EU868") -> DownlinkHandler:
    reg = load_region(region)
    return DownlinkHandler(gateway_id=GW, region=reg, queue=JitQueue(JitConfig(capacity=capacity)),
                           duty_cycle=DutyCycle(reg, FakeClock(50_000.0)),
                           limits=limits or TxLimits(antenna_gain_dbi=0.0, max_conducted_dbm=27))


def add_item(frame: gw_pb2.DownlinkFrame, *, freq: int = 868_100_000, power: int = 14,
             sf: int = 7, bw: int = 125_000, payload: bytes = b"\x60" + bytes(16),
             delay_us: int | None = 1_000_000, context: bytes = b"",
             gps_us: int | None = None) -> None:
    item = frame.items.add(phy_payload=payload)
    tx = item.tx_info
    tx.frequency, tx.power, tx.context = freq, power, context
    tx.modulation.lora.spreading_factor = sf
    tx.modulation.lora.bandwidth = bw
    tx.modulation.lora.code_rate = gw_pb2.CodeRate.CR_4_5
    tx.modulation.lora.polarization_inversion = True
    if gps_us is not None:
        tx.timing.gps_epoch.time_since_gps_epoch.FromMicroseconds(gps_us)
    elif delay_us is None:
        tx.timing.immediately.SetInParent()
    else:
        tx.timing.delay.delay.FromMicroseconds(delay_us)


def frame(downlink_id: int = 77) -> gw_pb2.DownlinkFrame:
    return gw_pb2.DownlinkFrame(downlink_id=downlink_id, gateway_id=GW)


def uplink_ctx(count: int, wraps: int = 0, session: int = SESSION) -> bytes:
    return make_context(count, session, wraps)


NOW = RadioNow(count_us=10_000_000, session_id=SESSION, wraps=0)
CTX = uplink_ctx(NOW.count_us - 100_000)      # an uplink that ended 100 ms ago


def statuses(h: DownlinkHandler, f: gw_pb2.DownlinkFrame, now: RadioNow = NOW,
             marshaler: str = PROTOBUF) -> list[TxStatus]:
    result = h.handle(marshal(f, marshaler), now)
    assert result.ack is not None and result.ack.downlink_id == f.downlink_id
    assert result.ack.gateway_id == GW
    return [TxStatus(i.status) for i in result.ack.items]


def test_ok_then_ignored_and_the_packet_is_ready() -> None:
    h = make_handler()
    f = frame()
    add_item(f, context=CTX)
    add_item(f, freq=869_525_000, sf=12, delay_us=2_000_000, context=CTX)
    result = h.handle(marshal(f, PROTOBUF), NOW)
    assert [o.status for o in result.outcomes] == [S.OK, S.IGNORED]
    item = result.scheduled
    assert item is not None
    assert item.packet.count_us == NOW.count_us - 100_000 + 1_000_000
    assert item.packet.timing is TxTiming.TIMESTAMPED
    assert item.packet.power_dbm == 14 and item.toa_us > 0
    assert h.queue.snapshot(NOW.count_us) == [item]
    assert h.counters.per_status == {"OK": 1}   # one final status per downlink


def test_falls_back_to_the_next_item_when_the_first_is_refused() -> None:
    h = make_handler()
    f = frame()
    add_item(f, freq=870_500_000, context=CTX)                              # TX_FREQ
    add_item(f, freq=869_525_000, sf=12, delay_us=2_000_000, context=CTX)   # RX2
    add_item(f, context=CTX)
    assert statuses(h, f) == [S.TX_FREQ, S.OK, S.IGNORED]


def test_json_request_gets_a_json_ack() -> None:
    h = make_handler()
    f = frame(9)
    add_item(f, context=CTX)
    result = h.handle(marshal(f, JSON), NOW)
    assert result.encoding == JSON
    payload = result.ack_payload()
    assert payload is not None
    doc = json.loads(payload)
    assert doc["downlinkId"] == 9 and doc["items"][0]["status"] == "OK"
    assert unmarshal(payload, gw_pb2.DownlinkTxAck).items[0].status == S.OK


# -- one test per refusal status, each setting up its cause -----------------------------------

def test_too_late_lead_under_the_margin() -> None:
    f = frame()
    add_item(f, delay_us=100_000 + JitConfig().min_lead_us - 1, context=CTX)
    assert statuses(make_handler(), f) == [S.TOO_LATE]


def test_too_late_context_from_an_earlier_session() -> None:
    f = frame()
    add_item(f, context=uplink_ctx(NOW.count_us - 100_000, session=SESSION - 1))
    assert statuses(make_handler(), f) == [S.TOO_LATE]


def test_too_late_uplink_older_than_the_counter_period() -> None:
    # Same counter value one wrap earlier: the 32-bit counter alone would say "100 ms ago".
    f = frame()
    now = RadioNow(NOW.count_us, SESSION, wraps=1)
    add_item(f, context=uplink_ctx(NOW.count_us - 100_000, wraps=0))
    assert statuses(make_handler(), f, now) == [S.TOO_LATE]


def test_too_late_stale_context_that_would_look_like_the_future() -> None:
    # An uplink from 70 minutes ago plus a 1 s delay lands "in the future" modulo 2^32.
    age = 70 * 60 * 1_000_000
    now = RadioNow((age + 5_000_000) % COUNTER_MODULO, SESSION, wraps=0)
    f = frame()
    add_item(f, context=uplink_ctx(5_000_000))
    assert statuses(make_handler(), f, now) == [S.TOO_LATE]


def test_too_late_context_not_made_by_this_gateway() -> None:
    f = frame()
    add_item(f, context=(NOW.count_us - 100_000).to_bytes(4, "big"))
    assert statuses(make_handler(), f) == [S.TOO_LATE]


def test_too_early() -> None:
    f = frame()
    add_item(f, delay_us=JitConfig().max_advance_us + 200_000, context=CTX)
    assert statuses(make_handler(), f) == [S.TOO_EARLY]


def test_collision_packet() -> None:
    h = make_handler()
    first, second = frame(1), frame(2)
    add_item(first, context=CTX)
    add_item(second, context=CTX, freq=868_300_000)
    assert statuses(h, first) == [S.OK]
    assert statuses(h, second) == [S.COLLISION_PACKET]


def test_collision_beacon() -> None:
    h = make_handler()
    gps = GpsReference(count_us=NOW.count_us, gps_time_us=1_000_000_000 * 1_000_000 + 60_000_000)
    beacons = BeaconScheduler(EU, h.queue, info=BeaconInfo(48.1, 11.5), power_eirp_dbm=27)
    assert beacons.poll(NOW.count_us, gps) == [S.OK, S.OK]
    assert beacons.poll(NOW.count_us, gps) == []            # already queued
    beacon_s = next_beacon_time_s(gps.gps_time_us)
    assert beacon_s % 128 == 0 and 0 < beacon_s * 1_000_000 - gps.gps_time_us <= 128_000_000
    next_beacon = gps.count_at(beacon_s * 1_000_000)
    assert next_beacon is not None
    ctx = uplink_ctx(next_beacon - 1_000_000)
    f = frame()
    add_item(f, context=ctx)                                 # would start exactly at the beacon
    now = RadioNow(next_beacon - 2_000_000, SESSION, 0)
    assert statuses(h, f, now) == [S.COLLISION_BEACON]


def test_tx_freq() -> None:
    f = frame()
    add_item(f, freq=915_000_000, context=CTX)
    assert statuses(make_handler(), f) == [S.TX_FREQ]


def test_tx_power_above_the_regional_eirp() -> None:
    f = frame()
    add_item(f, power=20, context=CTX)            # 868.1 MHz allows 16 dBm EIRP
    assert statuses(make_handler(), f) == [S.TX_POWER]


def test_power_above_the_board_is_clamped_after_antenna_gain() -> None:
    f = frame()
    add_item(f, freq=869_525_000, sf=12, power=27, context=CTX)
    low_gain = make_handler(limits=TxLimits(antenna_gain_dbi=2.0, max_conducted_dbm=20))
    result = low_gain.handle(marshal(f, PROTOBUF), NOW)   # 25 dBm conducted asked
    assert [o.status for o in result.outcomes] == [S.OK]
    assert result.scheduled is not None and result.scheduled.packet.power_dbm == 20
    assert low_gain.counters.power_clamped == 1
    high_gain = make_handler(limits=TxLimits(antenna_gain_dbi=8.0, max_conducted_dbm=20))
    result = high_gain.handle(marshal(f, PROTOBUF), NOW)
    assert result.scheduled is not None and result.scheduled.packet.power_dbm == 19
    assert high_gain.counters.power_clamped == 0


TABLE = (12, 13, 14, 16, 20, 27)


@pytest.mark.parametrize(("asked", "sent"), [(29, 27), (27, 27), (26, 20), (15, 14), (12, 12)])
def test_power_takes_the_strongest_table_step_at_or_below_the_request(asked: int,
                                                                     sent: int) -> None:
    h = make_handler(limits=TxLimits(power_steps_dbm=TABLE))
    f = frame()
    add_item(f, freq=869_525_000, sf=12, power=asked, context=CTX)   # 29 dBm EIRP allowed here
    result = h.handle(marshal(f, PROTOBUF), NOW)
    assert result.scheduled is not None and result.scheduled.packet.power_dbm == sent
    assert h.counters.power_clamped == (asked != sent)


def test_power_below_the_weakest_step_goes_out_at_it_unless_the_region_forbids() -> None:
    h = make_handler(limits=TxLimits(power_steps_dbm=TABLE))
    f = frame(1)
    add_item(f, power=10, context=CTX)                  # 12 dBm ≤ 16 dBm EIRP at 868.1 MHz
    result = h.handle(marshal(f, PROTOBUF), NOW)
    assert result.scheduled is not None and result.scheduled.packet.power_dbm == 12
    assert h.counters.power_clamped == 0                # raised, not clamped
    strong = make_handler(limits=TxLimits(power_steps_dbm=(20, 27)))
    f = frame(2)
    add_item(f, power=10, context=CTX)                  # 20 dBm > 16 dBm EIRP
    assert statuses(strong, f) == [S.TX_POWER]
    assert strong.counters.per_status == {"TX_POWER": 1}


def test_one_final_status_per_downlink_is_counted() -> None:
    h = make_handler()
    refused_twice = frame(1)
    add_item(refused_twice, power=20, context=CTX)                   # TX_POWER (regional)
    add_item(refused_twice, freq=915_000_000, context=CTX)           # TX_FREQ
    sent_second = frame(2)
    add_item(sent_second, power=20, context=CTX)                     # TX_POWER
    add_item(sent_second, freq=869_525_000, sf=12, delay_us=2_000_000, context=CTX)  # OK
    add_item(sent_second, freq=869_525_000, sf=12, delay_us=2_000_000, context=CTX)  # IGNORED
    assert statuses(h, refused_twice) == [S.TX_POWER, S.TX_FREQ]
    assert statuses(h, sent_second) == [S.TX_POWER, S.OK, S.IGNORED]
    assert h.counters.per_status == {"TX_FREQ": 1, "OK": 1}
    assert sum(h.counters.per_status.values()) == h.counters.received == 2


def test_gps_unlocked() -> None:
    f = frame()
    add_item(f, gps_us=1_300_000_000_000_000)
    h = make_handler()
    assert statuses(h, f) == [S.GPS_UNLOCKED]
    gps_now = 1_300_000_000_000_000 - 3_000_000
    h.gps = GpsReference(count_us=NOW.count_us, gps_time_us=gps_now)
    result = h.handle(marshal(f, PROTOBUF), NOW)
    assert result.scheduled is not None
    assert result.scheduled.packet.count_us == NOW.count_us + 3_000_000


def test_queue_full() -> None:
    h = make_handler(capacity=1)
    first, second = frame(1), frame(2)
    add_item(first, context=CTX)
    add_item(second, context=CTX, delay_us=3_000_000)
    assert statuses(h, first) == [S.OK]
    assert statuses(h, second) == [S.QUEUE_FULL]


def test_duty_cycle_overflow() -> None:
    h = make_handler()
    assert h.duty_cycle is not None
    h.duty_cycle.record(868_100_000, 36_000_000 - 10_000)   # 1 % band almost used up
    f = frame()
    add_item(f, context=CTX)
    add_item(f, freq=869_525_000, sf=12, delay_us=2_000_000, context=CTX)
    assert statuses(h, f) == [S.DUTY_CYCLE_OVERFLOW, S.OK]


@pytest.mark.parametrize("case", ["bad_dr", "oversized", "no_tx_info", "fsk_rate", "empty"])
def test_internal_error(case: str) -> None:
    f = frame()
    if case == "bad_dr":
        add_item(f, sf=7, bw=500_000, context=CTX)               # not an EU868 data rate
    elif case == "oversized":
        add_item(f, sf=12, payload=bytes(65), context=CTX)       # DR0 carries 64 bytes at most
    elif case == "no_tx_info":
        f.items.add(phy_payload=b"\x60")
    elif case == "fsk_rate":
        add_item(f, context=CTX)
        f.items[0].tx_info.modulation.fsk.datarate = 9_600
        f.items[0].tx_info.modulation.fsk.frequency_deviation = 5_000
    else:
        add_item(f, payload=b"", context=CTX)
    assert statuses(make_handler(), f) == [S.INTERNAL_ERROR]


def test_us915_rx1_on_the_500khz_grid() -> None:
    h = make_handler(region="US915")
    f = frame()
    add_item(f, freq=923_900_000, sf=10, bw=500_000, power=20, context=CTX)
    add_item(f, freq=923_900_000, sf=10, bw=125_000, power=20, context=CTX)
    assert statuses(h, f) == [S.OK, S.IGNORED]
    g = frame(2)
    add_item(g, freq=923_900_000, sf=10, bw=125_000, power=20, context=CTX)   # uplink-only DR
    assert statuses(h, g) == [S.INTERNAL_ERROR]


def test_concentrator_down_answers_internal_error() -> None:
    f = frame()
    add_item(f, context=CTX)
    result = make_handler().handle(marshal(f, PROTOBUF), None)
    assert [o.status for o in result.outcomes] == [S.INTERNAL_ERROR]


def test_other_gateways_frame_is_not_acked() -> None:
    f = gw_pb2.DownlinkFrame(downlink_id=5, gateway_id="0000000000000001")
    add_item(f, context=CTX)
    h = make_handler()
    result = h.handle(marshal(f, PROTOBUF), NOW)
    assert result.ack is None and result.error and len(h.queue) == 0


# -- class A vs class C, wrap, radio side ------------------------------------------------------

def no_overlap(h: DownlinkHandler, now: int) -> bool:
    items = h.queue.snapshot(now)
    for a, b in itertools.pairwise(items):
        if (b.start - a.start) % COUNTER_MODULO < a.toa_us + h.queue.config.guard_us:
            return False
    return True


def test_class_c_burst_flows_around_a_class_a_downlink() -> None:
    h = make_handler()
    class_a = frame(1)
    add_item(class_a, delay_us=100_000 + 180_000, context=CTX)   # 180 ms from now
    assert statuses(h, class_a) == [S.OK]
    for i in range(6):
        burst = frame(10 + i)
        add_item(burst, delay_us=None, freq=869_525_000, sf=9, power=14)
        assert statuses(h, burst) == [S.OK]
    assert len(h.queue) == 7
    assert no_overlap(h, NOW.count_us)
    assert any(i.downlink_id == 1 and i.start == NOW.count_us + 180_000
               for i in h.queue.snapshot(NOW.count_us))


def test_class_a_arriving_after_a_class_c_burst_falls_back_to_rx2() -> None:
    h = make_handler()
    for i in range(3):
        burst = frame(10 + i)
        add_item(burst, delay_us=None, freq=869_525_000, sf=9, power=14)
        assert statuses(h, burst) == [S.OK]
    class_a = frame(1)
    add_item(class_a, delay_us=100_000 + 100_000, context=CTX)            # RX1 inside the burst
    add_item(class_a, freq=869_525_000, sf=12, delay_us=1_100_000, context=CTX)  # RX2 free
    assert statuses(h, class_a) == [S.COLLISION_PACKET, S.OK]
    assert no_overlap(h, NOW.count_us)


def test_class_a_across_the_counter_wrap() -> None:
    h = make_handler()
    uplink = COUNTER_MODULO - 400_000
    now = RadioNow(COUNTER_MODULO - 300_000, SESSION, wraps=3)
    f = frame()
    add_item(f, context=uplink_ctx(uplink, wraps=3))
    result = h.handle(marshal(f, PROTOBUF), now)
    assert [o.status for o in result.outcomes] == [S.OK]
    assert result.scheduled is not None and result.scheduled.packet.count_us == 600_000
    after_wrap = RadioNow(10_000, SESSION, wraps=4)
    assert h.due(after_wrap.count_us) == []
    loaded = h.due(600_000 - 20_000)
    assert loaded == [result.scheduled]
    h.tx_result(loaded[0], ok=True)
    assert h.counters.emitted == 1 and h.counters.per_frequency[868_100_000] == 1


def test_missed_and_failed_packets_give_back_duty_cycle() -> None:
    h = make_handler()
    assert h.duty_cycle is not None
    f = frame()
    add_item(f, context=CTX)
    result = h.handle(marshal(f, PROTOBUF), NOW)
    assert result.scheduled is not None
    start = result.scheduled.packet.count_us
    booked = {u.name: u.load_tracked_us for u in h.duty_cycle.usage()}["868.0-868.6"]
    assert booked == result.scheduled.toa_us
    assert h.due(start - 20_000, tx_free=False) == []
    assert h.due(start) == []                                # slot passed while busy
    assert h.counters.dropped["missed_slot"] == 1
    assert {u.name: u.load_tracked_us for u in h.duty_cycle.usage()}["868.0-868.6"] == 0


def test_reset_session_drops_the_queue() -> None:
    h = make_handler()
    f = frame()
    add_item(f, context=CTX)
    h.handle(marshal(f, PROTOBUF), NOW)
    h.reset_session()
    assert len(h.queue) == 0 and h.counters.dropped["session_reset"] == 1


def test_lbt_region_sends_without_lbt_unless_the_config_opts_in_to_refusing() -> None:
    h = make_handler(region="KR920")  # no SX1261 / LBT disabled: sent without it (issue 12)
    f = frame(90)
    add_item(f, freq=921_900_000, sf=12, context=CTX)  # KR920's RX2
    assert statuses(h, f) == [TxStatus.OK]
    strict = make_handler(region="KR920", limits=TxLimits(max_conducted_dbm=27,
                                                          refuse_without_lbt=True))
    f = frame(91)
    add_item(f, freq=921_900_000, sf=12, context=CTX)
    assert statuses(strict, f) == [TxStatus.TX_FREQ]
    able = make_handler(region="KR920", limits=TxLimits(max_conducted_dbm=27,
                                                         listen_before_talk=True,
                                                         refuse_without_lbt=True))
    f = frame(92)
    add_item(f, freq=921_900_000, sf=12, context=CTX)
    assert statuses(able, f) == [TxStatus.OK]


def _with_unknown_fields(payload: bytes) -> bytes:
    """A JSON command as a newer ChirpStack might send it: fields this gateway does not know,
    at the top level, inside an item and inside tx_info."""
    doc = json.loads(payload)
    doc["someFutureField"] = {"nested": [1, 2, 3]}
    doc["items"][0]["futureItemField"] = "x"
    doc["items"][0]["txInfo"]["futureTxField"] = 7
    return json.dumps(doc).encode()


def test_unknown_json_fields_in_command_down_are_ignored() -> None:
    h = make_handler()
    f = frame()
    add_item(f, context=CTX)
    result = h.handle(_with_unknown_fields(marshal(f, JSON)), NOW)
    assert [o.status for o in result.outcomes] == [S.OK]
    assert result.encoding == JSON and result.scheduled is not None


def test_a_clamped_item_that_is_not_sent_is_not_counted_as_clamped() -> None:
    h = make_handler(limits=TxLimits(power_steps_dbm=TABLE))
    f = frame()
    add_item(f, freq=869_525_000, sf=12, power=29, delay_us=1_000,
             context=uplink_ctx(NOW.count_us - 500_000))                 # too late
    add_item(f, freq=869_525_000, sf=12, power=29, delay_us=2_000_000, context=CTX)
    assert statuses(h, f) == [S.TOO_LATE, S.OK]
    assert h.counters.power_clamped == 1
