"""ChirpStack message building and encoding: exact field sets, round trips, bad input."""

from __future__ import annotations

import contextlib
import json
import struct

import pytest
from chirpstack_api.gw import gw_pb2
from hypothesis import given
from hypothesis import strategies as st

from hal.types import CrcStatus, Modulation, RxPacket
from packet_forwarder.chirpstack import (
    Context,
    MessageDecodeError,
    TxInfoCache,
    UnknownMarshalerError,
    build_uplink_frame,
    conn_state,
    make_context,
    marshal,
    parse_context,
    set_modulation,
    unmarshal,
    with_replay_metadata,
)

GW = "0016c001ff10a235"
U32 = st.integers(0, 0xFFFFFFFF)


def lora(**kw: object) -> RxPacket:
    base: dict[str, object] = dict(
        payload=bytes.fromhex("40f17dbe4900020001954378762b11ff0d"), frequency_hz=868_100_000,
        if_chain=3, rf_chain=1, modulation=Modulation.LORA, spreading_factor=9,
        bandwidth_hz=125_000, code_rate="4/5", crc_status=CrcStatus.CRC_OK, rssi_dbm=-57.6,
        snr_db=9.25, count_us=123_456_789, freq_offset_hz=-812.0)
    return RxPacket(**(base | kw))  # type: ignore[arg-type]


def fsk() -> RxPacket:
    return lora(frequency_hz=868_800_000, if_chain=9, modulation=Modulation.FSK,
                spreading_factor=0, code_rate="", datarate_bps=50_000)


def frame(rx: RxPacket, gw_time_ns: int | None = 1_700_000_000_123_456_789) -> gw_pb2.UplinkFrame:
    return build_uplink_frame(rx, gateway_id=GW, uplink_id=0xDEADBEEF, gw_time_ns=gw_time_ns,
                              context=make_context(rx.count_us, 0x01020304, 2))


def field_names(msg: object) -> set[str]:
    return {f.name for f, _ in msg.ListFields()}  # type: ignore[attr-defined]


def test_lora_tx_info_has_only_frequency_and_modulation_parameters() -> None:
    tx = frame(lora()).tx_info
    assert field_names(tx) == {"frequency", "modulation"}
    assert field_names(tx.modulation) == {"lora"}
    assert field_names(tx.modulation.lora) == {"bandwidth", "spreading_factor", "code_rate"}
    # The bytes another ChirpStack gateway would send for the same frame.
    other = gw_pb2.UplinkTxInfo(frequency=868_100_000, modulation=gw_pb2.Modulation(
        lora=gw_pb2.LoraModulationInfo(bandwidth=125_000, spreading_factor=9,
                                       code_rate=gw_pb2.CodeRate.CR_4_5)))
    assert tx.SerializeToString() == other.SerializeToString()


@pytest.mark.parametrize(("cr", "enum"), [("4/5", gw_pb2.CR_4_5), ("4/6", gw_pb2.CR_4_6),
                                          ("4/7", gw_pb2.CR_4_7), ("4/8", gw_pb2.CR_4_8)])
def test_code_rates_map_to_the_enum(cr: str, enum: int) -> None:
    assert frame(lora(code_rate=cr)).tx_info.modulation.lora.code_rate == enum


def test_fsk_tx_info_has_only_datarate() -> None:
    tx = frame(fsk()).tx_info
    assert field_names(tx) == {"frequency", "modulation"}
    assert field_names(tx.modulation) == {"fsk"}
    assert field_names(tx.modulation.fsk) == {"datarate"}
    assert (tx.frequency, tx.modulation.fsk.datarate) == (868_800_000, 50_000)


def test_rx_info_fields() -> None:
    rx = lora(crc_status=CrcStatus.BAD_CRC)
    info = frame(rx).rx_info
    assert field_names(info) == {"gateway_id", "uplink_id", "gw_time", "rssi", "snr", "channel",
                                 "rf_chain", "crc_status", "context"}
    assert info.gateway_id == GW and info.uplink_id == 0xDEADBEEF
    assert info.gw_time.ToNanoseconds() == 1_700_000_000_123_456_789
    assert (info.rssi, info.snr) == (-58, 9.25)
    assert (info.channel, info.rf_chain) == (3, 1)
    assert info.crc_status == gw_pb2.CRCStatus.BAD_CRC
    assert parse_context(info.context) == Context(123_456_789, 0x01020304, 2)
    assert frame(rx).phy_payload == rx.payload


def test_gw_time_left_out_when_clock_is_not_trusted() -> None:
    assert not frame(lora(), gw_time_ns=None).rx_info.HasField("gw_time")


def test_json_marshal_is_protobufs_camel_case_mapping_and_round_trips() -> None:
    f = frame(lora())
    text = marshal(f, "json")
    doc = json.loads(text)
    assert set(doc) == {"phyPayload", "txInfo", "rxInfo"}
    assert doc["rxInfo"]["gatewayId"] == GW and doc["rxInfo"]["crcStatus"] == "CRC_OK"
    assert doc["txInfo"]["modulation"]["lora"]["codeRate"] == "CR_4_5"
    assert unmarshal(text, gw_pb2.UplinkFrame) == f
    assert unmarshal(marshal(f, "protobuf"), gw_pb2.UplinkFrame) == f


def test_unknown_marshaler_is_a_typed_error() -> None:
    with pytest.raises(UnknownMarshalerError):
        marshal(conn_state(GW, True), "xml")


def test_conn_state() -> None:
    assert conn_state(GW, False) == gw_pb2.ConnState(gateway_id=GW, state=gw_pb2.ConnState.OFFLINE)
    assert conn_state(GW, True).state == gw_pb2.ConnState.ONLINE


@given(U32, U32, U32)
def test_context_round_trip_with_counter_first(count: int, session: int, wraps: int) -> None:
    ctx = make_context(count, session, wraps)
    assert parse_context(ctx) == (count, session, wraps)
    assert struct.unpack(">I", ctx[:4])[0] == count


@pytest.mark.parametrize("bad", [b"", b"\x00" * 4, b"\x00" * 11, b"\x00" * 13])
def test_foreign_context_is_not_ours(bad: bytes) -> None:
    assert parse_context(bad) is None


@pytest.mark.parametrize("args", [(-1, 0, 0), (0, 1 << 32, 0), (0, 0, 1 << 32)])
def test_context_out_of_range_is_refused(args: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError):
        make_context(*args)


@pytest.mark.parametrize("garbage", [
    b"\xff\xff\xff\xff", b"\x0a\x05ab", b'{"gatewayId": ', b'{"gatewayId": 5, "bogus": 1}',
    b'\xff"gatewayId"', b'{"gatewayId": "x", "items": "not a list"}',
])
def test_unmarshal_garbage_raises_one_typed_error(garbage: bytes) -> None:
    with pytest.raises(MessageDecodeError):
        unmarshal(garbage, gw_pb2.DownlinkFrame)


@given(st.binary(max_size=300))
def test_unmarshal_arbitrary_bytes_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(MessageDecodeError):
        unmarshal(data, gw_pb2.DownlinkFrame)


@given(st.text(max_size=200), st.text(max_size=200))
def test_unmarshal_arbitrary_json_like_text(prefix: str, suffix: str) -> None:
    data = f'{prefix}"gatewayId"{suffix}'.encode()
    with contextlib.suppress(MessageDecodeError):
        unmarshal(data, gw_pb2.DownlinkFrame)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c,
                                                                       max_size=3),
                    max_leaves=20))
def test_unmarshal_arbitrary_json_values(value: object) -> None:
    data = json.dumps({"gatewayId": "00", "downlinkId": 1, "items": value}).encode()
    with contextlib.suppress(MessageDecodeError):
        unmarshal(data, gw_pb2.DownlinkFrame)


def test_replay_metadata_is_added_and_tx_info_is_untouched() -> None:
    f = frame(lora())
    out = gw_pb2.UplinkFrame.FromString(with_replay_metadata(f.SerializeToString(), 1234, False))
    assert dict(out.rx_info.metadata) == {"buffered": "true", "hold_ms": "1234",
                                          "clock_synced": "false"}
    assert out.tx_info.SerializeToString() == f.tx_info.SerializeToString()
    out.rx_info.ClearField("metadata")
    assert out == f


def test_replay_metadata_omits_clock_flag_when_synced() -> None:
    body = with_replay_metadata(frame(lora()).SerializeToString(), 7, True)
    assert dict(gw_pb2.UplinkFrame.FromString(body).rx_info.metadata) == {
        "buffered": "true", "hold_ms": "7"}


def test_replay_metadata_on_garbage_is_a_typed_error() -> None:
    with pytest.raises(MessageDecodeError):
        with_replay_metadata(b"\xff\xff\xff", 1, True)


def test_uplink_modulation_keeps_the_code_rate_for_stats() -> None:
    stats = gw_pb2.GatewayStats()
    entry = stats.rx_packets_per_modulation.add(count=1)
    set_modulation(entry.modulation, "LORA", 9, 125_000, 0, "4/5")
    assert entry.modulation.lora.code_rate == gw_pb2.CodeRate.CR_4_5
    fsk = stats.rx_packets_per_modulation.add(count=1)
    set_modulation(fsk.modulation, "FSK", 0, 0, 50_000, "")
    assert fsk.modulation.fsk.datarate == 50_000


def test_unknown_json_fields_are_ignored_known_ones_of_the_wrong_type_are_not() -> None:
    doc = {"gatewayId": GW, "version": "v1", "futureField": {"a": [1]},
           "channels": [{"frequency": 868100000, "futureChannelField": True,
                         "loraModulationConfig": {"bandwidth": 125000,
                                                  "spreadingFactors": [7, 8], "x": 1}}]}
    cfg = unmarshal(json.dumps(doc).encode(), gw_pb2.GatewayConfiguration)
    assert cfg.version == "v1" and cfg.channels[0].frequency == 868_100_000
    doc["version"] = {"not": "a string"}
    with pytest.raises(MessageDecodeError):
        unmarshal(json.dumps(doc).encode(), gw_pb2.GatewayConfiguration)


def test_prepared_tx_info_encodes_exactly_like_one_built_field_by_field() -> None:
    cache = TxInfoCache()
    packets = [lora(), lora(spreading_factor=12, code_rate="4/8"), fsk(),
               lora(frequency_hz=867_500_000, bandwidth_hz=250_000), lora(code_rate="4/9")]
    for rx in packets * 3:  # the second and third time from the prepared messages
        ctx = make_context(rx.count_us, 7, 0)
        plain = build_uplink_frame(rx, gateway_id=GW, uplink_id=5, gw_time_ns=None, context=ctx)
        cached = build_uplink_frame(rx, gateway_id=GW, uplink_id=5, gw_time_ns=None,
                                    context=ctx, tx_infos=cache)
        assert cached.SerializeToString() == plain.SerializeToString()
    assert len(cache) == len(packets)


def test_prepared_tx_info_is_copied_not_shared() -> None:
    cache = TxInfoCache()
    first = build_uplink_frame(lora(), gateway_id=GW, uplink_id=1, gw_time_ns=None,
                               context=b"", tx_infos=cache)
    first.tx_info.frequency = 1  # a caller changing its frame changes nothing prepared
    second = build_uplink_frame(lora(), gateway_id=GW, uplink_id=1, gw_time_ns=None,
                                context=b"", tx_infos=cache)
    assert second.tx_info.frequency == 868_100_000


def test_prepared_tx_info_cache_is_bounded() -> None:
    cache = TxInfoCache(max_entries=4)
    for n in range(10):
        build_uplink_frame(lora(frequency_hz=868_100_000 + n), gateway_id=GW, uplink_id=1,
                           gw_time_ns=None, context=b"", tx_infos=cache)
        assert len(cache) <= 4
