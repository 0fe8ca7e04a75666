"""RX buffer parsing: every branch, the batch-drop rule, the LoRa CRC16, and fuzzing."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal.emulator.records import RecordFields, encode_record
from hal.errors import RxRecordError
from hal.rx_record import lora_crc16, parse_record, parse_rx_buffer
from hal.types import RxErrorCounters


def crc_oracle(data: bytes) -> int:
    """The reference's byte-parallel equations, evaluated bit by bit (independent of the tables)."""
    crc = 0
    for d in data:
        c = [(crc >> i) & 1 for i in range(16)]
        x = [(d >> i) & 1 for i in range(8)]
        n = [
            x[0] ^ c[12] ^ c[8], x[1] ^ c[13] ^ c[9], x[2] ^ c[14] ^ c[10], x[3] ^ c[15] ^ c[11],
            x[4] ^ c[12], x[5] ^ c[13] ^ c[12] ^ c[8], x[6] ^ c[14] ^ c[13] ^ c[9],
            x[7] ^ c[15] ^ c[14] ^ c[10], c[0] ^ c[15] ^ c[11], c[1] ^ c[12], c[2] ^ c[13],
            c[3] ^ c[14], c[4] ^ c[15] ^ c[12] ^ c[8], c[5] ^ c[13] ^ c[9], c[6] ^ c[14] ^ c[10],
            c[7] ^ c[15] ^ c[11],
        ]
        crc = sum(bit << i for i, bit in enumerate(n))
    return crc


def test_crc16_values_derived_by_hand() -> None:
    # From the equations: a single 0x01 sets only output bit 0; a following zero byte moves
    # it to bit 8 (c0 feeds bit 8); one more zero byte feeds c8 into bits 0, 5 and 12.
    assert lora_crc16(b"") == 0x0000
    assert lora_crc16(b"\x01") == 0x0001
    assert lora_crc16(b"\x01\x00") == 0x0100
    assert lora_crc16(b"\x01\x00\x00") == 0x1021


@given(st.binary(max_size=64))
def test_crc16_matches_the_bitwise_equations(data: bytes) -> None:
    assert lora_crc16(data) == crc_oracle(data)


@given(st.binary(max_size=40), st.binary(max_size=40))
def test_crc16_continues_from_a_register_value(head: bytes, tail: bytes) -> None:
    # the C fast path (from zero) and the table loop (from any register) agree
    assert lora_crc16(tail, lora_crc16(head)) == lora_crc16(head + tail)


GOOD = RecordFields(payload=b"\x40\x01\x02\x03\x04\x00\x01\x00\x01\xaa\xbb\xcc\xdd", if_chain=3,
                    spreading_factor=9, coding_rate=1, modem_id=5, timestamp_ticks=0x89ABCDEF,
                    rssi_raw=120, snr_raw=-22, freq_offset_raw=-1234)


def test_good_record_round_trips_every_field() -> None:
    raw = encode_record(GOOD)
    assert len(raw) == 23 + len(GOOD.payload)
    rec, end = parse_record(raw)
    assert end == len(raw)
    assert (rec.payload, rec.if_chain, rec.spreading_factor, rec.coding_rate, rec.modem_id) == \
        (GOOD.payload, 3, 9, 1, 5)
    assert (rec.timestamp_ticks, rec.rssi_chan_raw, rec.snr_raw, rec.freq_offset_raw) == \
        (0x89ABCDEF, 120, -22, -1234)
    assert rec.crc_enabled and not rec.crc_error and rec.payload_crc == lora_crc16(GOOD.payload)


def test_metrics_are_part_of_the_record_length() -> None:
    raw = encode_record(dataclasses.replace(GOOD, ts_metrics=bytes(range(8))))
    rec, end = parse_record(raw)
    assert end == len(raw) == 23 + len(GOOD.payload) + 8
    assert rec.ts_metrics == bytes(range(8))


def test_crc_error_frame_is_kept_and_flagged() -> None:
    rec, _ = parse_record(encode_record(dataclasses.replace(GOOD, crc_ok=False)))
    assert rec.crc_error


def test_fsk_record_is_not_checked_with_the_lora_crc() -> None:
    raw = bytearray(encode_record(dataclasses.replace(GOOD, modem_id=17, if_chain=9,
                                                      spreading_factor=0)))
    t = 9 + len(GOOD.payload)
    raw[t + 10] ^= 0xFF  # wrong payload CRC field
    raw[-1] = sum(raw[:-1]) & 0xFF
    rec, _ = parse_record(bytes(raw))
    assert rec.modem_id == 17


def _reason(raw: bytes) -> str:
    with pytest.raises(RxRecordError) as info:
        parse_record(raw)
    return info.value.reason


def _patch(index: int, value: int) -> bytes:
    raw = bytearray(encode_record(GOOD))
    raw[index] = value
    raw[-1] = sum(raw[:-1]) & 0xFF
    return bytes(raw)


def test_each_bad_case_has_its_reason() -> None:
    raw = encode_record(GOOD)
    assert _reason(b"\xa5\xc1" + raw[2:]) == "no_sync"
    assert _reason(raw[:-1]) == "truncated"
    assert _reason(raw[:5]) == "truncated"
    assert _reason(raw[:-1] + bytes(((raw[-1] + 1) & 0xFF,))) == "bad_checksum"
    assert _reason(_patch(5, 18)) == "bad_modem_id"
    assert _reason(_patch(3, 10)) == "bad_channel"
    assert _reason(_patch(4, (13 << 4) | 0x03)) == "bad_sf"
    assert _reason(_patch(4, (4 << 4) | 0x03)) == "bad_sf"
    assert _reason(_patch(9, GOOD.payload[0] ^ 1)) == "payload_crc_mismatch"


def _batch(*records: bytes) -> tuple[list[bytes], RxErrorCounters]:
    errors = RxErrorCounters()
    return [r.payload for r in parse_rx_buffer(b"".join(records), errors)], errors


def _rec(tag: bytes) -> bytes:
    return encode_record(dataclasses.replace(GOOD, payload=tag))


def test_framing_error_drops_the_rest_of_the_batch() -> None:
    bad = bytearray(_rec(b"bad"))
    bad[-1] ^= 0xFF
    payloads, errors = _batch(_rec(b"one"), bytes(bad), _rec(b"three"))
    assert payloads == [b"one"]
    assert errors.counts == {"bad_checksum": 1}


def test_truncated_last_record_is_counted() -> None:
    payloads, errors = _batch(_rec(b"one"), _rec(b"two")[:-4])
    assert payloads == [b"one"]
    assert errors.counts == {"truncated": 1}


def test_content_error_drops_only_that_record() -> None:
    payloads, errors = _batch(_rec(b"one"), _patch(5, 18), _rec(b"three"))
    assert payloads == [b"one", b"three"]
    assert errors.counts == {"bad_modem_id": 1}


def test_leading_garbage_is_skipped_and_counted() -> None:
    payloads, errors = _batch(b"\x00\x13\x37", _rec(b"one"))
    assert payloads == [b"one"]
    assert errors.counts == {"resync": 1}


def test_short_or_syncless_batches_are_dropped() -> None:
    assert _batch(b"\xa5\xc0\x00")[1].counts == {"short_buffer": 1}
    assert _batch(bytes(40))[1].counts == {"no_sync": 1}
    assert _batch(b"") == ([], RxErrorCounters())


@given(st.binary(max_size=600), st.integers(0, 600))
def test_random_bytes_only_raise_rx_record_error(data: bytes, start: int) -> None:
    with contextlib.suppress(RxRecordError):
        parse_record(data, min(start, len(data)))


@given(st.lists(st.one_of(st.binary(max_size=40), st.builds(_rec, st.binary(max_size=30))),
                max_size=6))
def test_parse_rx_buffer_never_raises_and_counts_every_drop(parts: list[bytes]) -> None:
    errors = RxErrorCounters()
    records = parse_rx_buffer(b"".join(parts), errors)
    assert all(isinstance(r.payload, bytes) for r in records)
    assert all(n > 0 for n in errors.counts.values())
