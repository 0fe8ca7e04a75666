"""Malformed command/down and command/config: never a crash; an ack when an id is readable."""

from __future__ import annotations

import json
import logging

from chirpstack_api.gw import gw_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from packet_forwarder.chirpstack import JSON, PROTOBUF, make_context, marshal
from packet_forwarder.downlink.checks import TxLimits
from packet_forwarder.downlink.clock import RadioNow
from packet_forwarder.downlink.config_cmd import parse_gateway_configuration
from packet_forwarder.downlink.handler import DownlinkHandler
from packet_forwarder.downlink.jit import JitQueue
from packet_forwarder.downlink.request import salvage
from packet_forwarder.downlink.status import TxStatus
from packet_forwarder.regions import load_region
from tests.support.radio import radio_fits

GW = "0016c001ff10a235"
EU = load_region("EU868")
NOW = RadioNow(10_000_000, 1, 0)
QUIET = logging.getLogger("test.quiet")
QUIET.disabled = True


def handler() -> DownlinkHandler:
    return DownlinkHandler(gateway_id=GW, region=EU, queue=JitQueue(), duty_cycle=None,
                           limits=TxLimits(), log=QUIET)


def valid_frame(downlink_id: int) -> gw_pb2.DownlinkFrame:
    f = gw_pb2.DownlinkFrame(downlink_id=downlink_id, gateway_id=GW)
    item = f.items.add(phy_payload=b"\x60" + bytes(12))
    tx = item.tx_info
    tx.frequency, tx.power, tx.context = 868_100_000, 14, make_context(9_900_000, 1, 0)
    tx.modulation.lora.spreading_factor, tx.modulation.lora.bandwidth = 7, 125_000
    tx.timing.delay.delay.FromMicroseconds(1_000_000)
    return f


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(payload: bytes) -> None:
    result = handler().handle(payload, NOW)
    if result.ack is not None:
        assert len(result.ack.items) >= 1
        assert result.ack_payload() is not None


@settings(max_examples=300)
@given(st.integers(0, 2**32 - 1), st.data())
def test_truncated_or_corrupted_protobuf_is_acked_when_the_id_survives(
        downlink_id: int, data: st.DataObject) -> None:
    # downlink_id (field 3) is serialised before items (field 5), so it survives a cut tail.
    raw = valid_frame(downlink_id).SerializeToString()
    id_end = len(gw_pb2.DownlinkFrame(downlink_id=downlink_id).SerializeToString())
    cut = data.draw(st.integers(min_value=id_end, max_value=len(raw)))
    # junk holding a downlink_id tag (0x18) would be a new id, not damage to the old one
    junk = data.draw(st.binary(max_size=20).filter(lambda b: 0x18 not in b))
    payload = raw[:cut] + junk
    result = handler().handle(payload, NOW)
    if result.error is None:      # the cut fell on a field boundary: a valid (smaller) frame
        assert result.ack is not None and result.ack.downlink_id == downlink_id
    elif "not ours" in result.error or result.error == "no items":
        assert result.ack is None     # a damaged gateway_id or no alternatives: nothing to answer
    elif downlink_id:
        assert result.ack is not None and result.ack.downlink_id == downlink_id
        assert all(i.status == TxStatus.INTERNAL_ERROR for i in result.ack.items)


@settings(max_examples=300)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                        max_size=4),
                    max_leaves=20),
       st.integers(0, 2**32 - 1))
def test_json_garbage_with_an_id_is_acked_in_json(junk: object, downlink_id: int) -> None:
    doc = {"gatewayId": GW, "downlinkId": downlink_id, "items": [{"txInfo": junk}]}
    result = handler().handle(json.dumps(doc).encode(), NOW)
    assert result.encoding == JSON
    assert result.ack is not None and result.ack.downlink_id == downlink_id
    payload = result.ack_payload()
    assert payload is not None and b"gatewayId" in payload


def test_valid_frame_still_works_in_both_encodings() -> None:
    for marshaler in (PROTOBUF, JSON):
        result = handler().handle(marshal(valid_frame(3), marshaler), NOW)
        assert [o.status for o in result.outcomes] == [TxStatus.OK]


def test_salvage_reads_id_and_item_count() -> None:
    raw = valid_frame(1234).SerializeToString()
    found = salvage(raw + b"\xff\xff")
    assert found.downlink_id == 1234 and found.item_count == 1
    assert salvage(b'{"gatewayId": "x", "downlinkId": "17", "items": [1, 2]').downlink_id is None
    assert salvage(b'{"gatewayId": "x", "downlinkId": "17", "items": [1, 2]}').item_count == 2


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_config_garbage_never_crashes(payload: bytes) -> None:
    result = parse_gateway_configuration(payload, EU, GW, fits=radio_fits)
    assert (result.plan is None) == (result.error is not None)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 600_000),
                          st.lists(st.integers(0, 15), max_size=8)), max_size=12))
def test_arbitrary_channel_lists_are_decided_without_crashing(
        channels: list[tuple[int, int, list[int]]]) -> None:
    cfg = gw_pb2.GatewayConfiguration(gateway_id=GW, version="v")
    for freq, bw, sfs in channels:
        ch = cfg.channels.add(frequency=freq)
        ch.lora_modulation_config.bandwidth = bw
        ch.lora_modulation_config.spreading_factors.extend(sfs)
    result = parse_gateway_configuration(cfg.SerializeToString(), EU, GW, fits=radio_fits)
    assert (result.plan is None) == (result.error is not None)
