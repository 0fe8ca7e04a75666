"""Semtech UDP v2 datagrams, rxpk and txpk, against the tables of PROTOCOL.TXT."""

from __future__ import annotations

import base64
import contextlib
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal.types import CrcStatus, Modulation, RxPacket
from packet_forwarder.chirpstack import build_uplink_frame, make_context, marshal
from packet_forwarder.downlink.checks import TxLimits
from packet_forwarder.downlink.clock import RadioNow
from packet_forwarder.downlink.duty_cycle import DutyCycle
from packet_forwarder.downlink.handler import DownlinkHandler
from packet_forwarder.downlink.jit import JitConfig, JitQueue
from packet_forwarder.downlink.status import TxStatus
from packet_forwarder.regions import load_region
from packet_forwarder.semtech_udp.codec import Datagram, DatagramError, Kind, decode, encode
from packet_forwarder.semtech_udp.rxpk import compact_time, rxpk_from_uplink
from packet_forwarder.semtech_udp.txpk import TxpkError, downlink_from_txpk, txpk_ack

EUI = bytes.fromhex("0016c001ff10a235")
GW = EUI.hex()


def test_push_data_layout_is_the_protocol_table() -> None:
    raw = encode(Datagram(Kind.PUSH_DATA, 0xBEEF, EUI, {"rxpk": []}))
    assert raw[:4] == bytes((2, 0xBE, 0xEF, 0x00)) and raw[4:12] == EUI
    assert json.loads(raw[12:]) == {"rxpk": []}
    assert decode(raw) == Datagram(Kind.PUSH_DATA, 0xBEEF, EUI, {"rxpk": []})


def test_acks_are_four_bytes_and_tx_ack_json_is_optional() -> None:
    assert decode(struct.pack(">BHB", 2, 7, 1)) == Datagram(Kind.PUSH_ACK, 7)
    assert decode(struct.pack(">BHB", 2, 9, 4)) == Datagram(Kind.PULL_ACK, 9)
    bare = struct.pack(">BHB", 2, 5, 5) + EUI
    assert decode(bare) == Datagram(Kind.TX_ACK, 5, EUI)
    assert encode(Datagram(Kind.PULL_DATA, 3, EUI)) == struct.pack(">BHB", 2, 3, 2) + EUI


@pytest.mark.parametrize("raw, words", [
    (b"\x02\x00", "shorter"),
    (b"\x01\x00\x01\x01", "version 1"),
    (b"\x02\x00\x01\x09", "0x09"),
    (b"\x02\x00\x01\x03{not json", "does not parse"),
    (b"\x02\x00\x01\x03[1,2]", "not an object"),
    (b"\x02\x00\x01\x01junk", "trailing"),
    (b"\x02\x00\x01\x00\x01\x02", "EUI"),
])
def test_bad_datagrams_name_what_is_wrong(raw: bytes, words: str) -> None:
    with pytest.raises(DatagramError, match=words):
        decode(raw)


@given(st.binary(max_size=64))
def test_garbage_only_ever_raises_datagram_error(raw: bytes) -> None:
    with contextlib.suppress(DatagramError):
        decode(raw)


def _rx(**kw: object) -> RxPacket:
    base: dict[str, object] = dict(
        payload=b"\x40\x04\x10\x01\x26\x00\x01\x00\x01\xaa\xbb\xcc\xdd", frequency_hz=868_300_000,
        if_chain=1, rf_chain=0, modulation=Modulation.LORA, spreading_factor=9,
        bandwidth_hz=125_000, code_rate="4/5", crc_status=CrcStatus.CRC_OK, rssi_dbm=-87.4,
        snr_db=7.25, count_us=3_512_348_611)
    base.update(kw)
    return RxPacket(**base)  # type: ignore[arg-type]


def test_rxpk_fields_follow_section_4() -> None:
    rx = _rx()
    frame = build_uplink_frame(rx, gateway_id=GW, uplink_id=1, gw_time_ns=None,
                               context=make_context(rx.count_us, 1, 0))
    ns = 1_364_746_877_528_002_000
    out = rxpk_from_uplink(frame, ns)
    assert out == {
        "time": "2013-03-31T16:21:17.528002Z", "tmst": 3_512_348_611, "chan": 1, "rfch": 0,
        "freq": 868.3, "stat": 1, "modu": "LORA", "datr": "SF9BW125", "codr": "4/5",
        "rssi": -87, "lsnr": 7.2, "size": len(rx.payload),
        "data": base64.b64encode(rx.payload).decode()}
    assert compact_time(ns) == "2013-03-31T16:21:17.528002Z"


def test_rxpk_fsk_bad_crc_no_time_and_gps_time() -> None:
    rx = _rx(modulation=Modulation.FSK, spreading_factor=0, bandwidth_hz=0, code_rate="",
             datarate_bps=50_000, crc_status=CrcStatus.BAD_CRC)
    frame = build_uplink_frame(rx, gateway_id=GW, uplink_id=1, gw_time_ns=None,
                               context=make_context(rx.count_us, 1, 0))
    frame.rx_info.time_since_gps_epoch.FromMilliseconds(1_300_000_000_123)
    out = rxpk_from_uplink(frame, None)
    assert "time" not in out and "lsnr" not in out and "codr" not in out
    assert out["modu"] == "FSK" and out["datr"] == 50_000 and out["stat"] == -1
    assert out["tmms"] == 1_300_000_000_123


NOW = RadioNow(count_us=4_294_000_000, session_id=0x5EED, wraps=3)


def _handler() -> DownlinkHandler:
    eu = load_region("EU868")
    return DownlinkHandler(gateway_id=GW, region=eu, queue=JitQueue(JitConfig(capacity=8)),
                           duty_cycle=DutyCycle(eu, lambda: 1000.0),
                           limits=TxLimits(antenna_gain_dbi=0.0, max_conducted_dbm=27))


def _txpk(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "tmst": (NOW.count_us + 1_000_000) & 0xFFFFFFFF, "freq": 868.1, "rfch": 0, "powe": 14,
        "modu": "LORA", "datr": "SF7BW125", "codr": "4/5", "ipol": True, "size": 12,
        "data": base64.b64encode(b"\x60" + bytes(11)).decode().rstrip("=")}
    base.update(kw)
    return base


def _decide(txpk: dict[str, object], handler: DownlinkHandler | None = None) -> tuple[
        TxStatus, DownlinkHandler]:
    handler = handler or _handler()
    frame = downlink_from_txpk({"txpk": txpk}, now=NOW, gateway_id=GW, downlink_id=1,
                               default_power_dbm=14)
    result = handler.handle(marshal(frame, "protobuf"), NOW)
    return result.outcomes[0].status, handler


def test_tmst_across_the_counter_wrap_starts_exactly_there() -> None:
    handler = _handler()
    frame = downlink_from_txpk({"txpk": _txpk()}, now=NOW, gateway_id=GW, downlink_id=1,
                               default_power_dbm=14)
    result = handler.handle(marshal(frame, "protobuf"), NOW)
    assert result.outcomes[0].status is TxStatus.OK and result.scheduled is not None
    assert result.scheduled.start == (NOW.count_us + 1_000_000) & 0xFFFFFFFF
    pkt = result.scheduled.packet
    assert (pkt.frequency_hz, pkt.spreading_factor, pkt.invert_polarity) == (868_100_000, 7, True)


@pytest.mark.parametrize("change, error", [
    ({}, "NONE"),
    ({"tmst": NOW.count_us - 10}, "TOO_LATE"),
    ({"tmst": (NOW.count_us + 600_000_000) & 0xFFFFFFFF}, "TOO_EARLY"),
    ({"freq": 915.0}, "TX_FREQ"),
    ({"powe": 40}, "TX_POWER"),
    ({"tmst": None, "tmms": 1_300_000_000_000}, "GPS_UNLOCKED"),
])
def test_out_of_range_values_get_the_matching_error(change: dict[str, object],
                                                    error: str) -> None:
    txpk = {k: v for k, v in _txpk(**change).items() if v is not None}
    status, _ = _decide(txpk)
    assert txpk_ack(status) == {"txpk_ack": {"error": error}}


def test_same_instant_twice_is_a_packet_collision() -> None:
    first, handler = _decide(_txpk())
    second, _ = _decide(_txpk(), handler)
    assert (txpk_ack(first), txpk_ack(second)) == (
        {"txpk_ack": {"error": "NONE"}}, {"txpk_ack": {"error": "COLLISION_PACKET"}})


@pytest.mark.parametrize("change, words", [
    ({"modu": "CHIRP"}, "modu"),
    ({"datr": "SF7"}, "datr"),
    ({"codr": "5/4"}, "codr"),
    ({"size": 13}, "size"),
    ({"data": "***"}, "base64"),
    ({"freq": "868.1"}, "freq"),
    ({"ipol": "yes"}, "ipol"),
    ({"tmst": None}, "imme, tmst, tmms"),
])
def test_malformed_txpk_is_refused_with_the_field_named(change: dict[str, object],
                                                        words: str) -> None:
    txpk = {k: v for k, v in _txpk(**change).items() if v is not None}
    with pytest.raises(TxpkError, match=words):
        downlink_from_txpk({"txpk": txpk}, now=NOW, gateway_id=GW, downlink_id=1,
                           default_power_dbm=14)


def test_immediate_fsk_is_queued() -> None:
    status, _ = _decide(_txpk(imme=True, tmst=None, modu="FSK", datr=50_000, fdev=25_000,
                                    freq=869.525, codr=None))
    assert status is TxStatus.OK


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=8)


@given(st.dictionaries(
    st.sampled_from(["imme", "tmst", "tmms", "freq", "rfch", "powe", "modu", "datr", "codr",
                     "fdev", "ipol", "prea", "size", "data", "ncrc"]),
    _json_values, max_size=15))
def test_any_txpk_a_server_can_write_is_a_frame_or_a_txpk_error(txpk: dict[str, object]) -> None:
    for base in ({}, _txpk()):
        with contextlib.suppress(TxpkError):
            downlink_from_txpk({"txpk": {**base, **txpk}}, now=NOW, gateway_id=GW,
                               downlink_id=1, default_power_dbm=14)
