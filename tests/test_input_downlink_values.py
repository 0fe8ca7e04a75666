"""Issue 16 points 4 and 5: downlink values the chip cannot honour are refused with the
protocol's status in one line, and a downlink of thousands of items is one line, bounded."""

from __future__ import annotations

import logging

import pytest
from chirpstack_api.gw import gw_pb2

from packet_forwarder.chirpstack import PROTOBUF, marshal
from packet_forwarder.downlink.handler import MAX_ITEMS
from packet_forwarder.downlink.status import TxStatus
from tests.test_downlink_handler import CTX, NOW, add_item, frame, make_handler, statuses


def fsk_item(datarate: int = 50_000, fdev: int = 25_000) -> gw_pb2.DownlinkFrame:
    f = frame()
    add_item(f, freq=869_525_000, context=CTX)
    fsk = f.items[0].tx_info.modulation.fsk
    fsk.datarate, fsk.frequency_deviation = datarate, fdev
    return f


@pytest.mark.parametrize(("preamble", "expected"), [
    (70_000, TxStatus.INTERNAL_ERROR),   # the 16-bit register would get 4,464
    (65_536, TxStatus.INTERNAL_ERROR),
    (5, TxStatus.INTERNAL_ERROR),
    (0, TxStatus.OK),                    # unset: the standard 8
    (8, TxStatus.OK),
])
def test_lora_preamble_beyond_the_register_is_refused(preamble: int, expected: TxStatus) -> None:
    f = frame()
    add_item(f, context=CTX)
    f.items[0].tx_info.modulation.lora.preamble = preamble
    assert statuses(make_handler(), f) == [expected]


@pytest.mark.parametrize(("datarate", "fdev", "expected"), [
    (50_000, 4_000_000_000, TxStatus.INTERNAL_ERROR),   # 4 GHz deviation
    (50_000, 0, TxStatus.INTERNAL_ERROR),
    (1, 25_000, TxStatus.INTERNAL_ERROR),               # 1 bit/s
    (300_000, 25_000, TxStatus.INTERNAL_ERROR),
    (50_000, 25_000, TxStatus.OK),                      # EU868 DR7
])
def test_fsk_values_outside_the_chip_range_are_refused(datarate: int, fdev: int,
                                                        expected: TxStatus) -> None:
    f = fsk_item(datarate, fdev)
    assert statuses(make_handler(), f) == [expected]


def test_a_refusal_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    handler = make_handler()
    handler._log = logging.getLogger("test.downlink")
    f = frame()
    for _ in range(3):
        add_item(f, context=CTX)
        f.items[-1].tx_info.modulation.lora.preamble = 70_000
    with caplog.at_level(logging.INFO, logger="test.downlink"):
        assert statuses(handler, f) == [TxStatus.INTERNAL_ERROR] * 3
    assert len(caplog.records) == 1 and "\n" not in caplog.records[0].getMessage()


def test_thousands_of_items_are_refused_whole_in_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    handler = make_handler()
    handler._log = logging.getLogger("test.downlink")
    f = frame(5000)
    for _ in range(5000):
        add_item(f, context=CTX)
    with caplog.at_level(logging.INFO, logger="test.downlink"):
        result = handler.handle(marshal(f, PROTOBUF), NOW)
    assert result.ack is not None and len(result.ack.items) == 5000
    assert {i.status for i in result.ack.items} == {TxStatus.INTERNAL_ERROR}
    assert result.scheduled is None and len(handler.queue) == 0
    assert len(caplog.records) == 1 and "and 4997 more" in caplog.records[0].getMessage()
    ok = frame(5001)
    for _ in range(MAX_ITEMS):
        add_item(ok, context=CTX)
    assert statuses(handler, ok) == [TxStatus.OK] + [TxStatus.IGNORED] * (MAX_ITEMS - 1)
