"""Parse the SX1302 RX buffer: a byte stream of packet records, each framed and checksummed.

Record layout (L = payload length, N = fine-timestamp metric count), 23 + L + 2N bytes:

====== =====================================================================
0-1    sync ``A5 C0``
2      L
3      IF chain (0-7 multi-SF, 8 LoRa service, 9 FSK)
4      bit 0 CRC enabled, bits 3:1 coding rate (1..4 = 4/5..4/8), bits 7:4 SF
5      modem id (0-15 multi-SF, 16 LoRa service, 17 FSK)
6-8    frequency offset, 20-bit signed little-endian
9..    payload (L bytes)
9+L    status: bit 0 CRC error, bit 2 sync error, bit 3 header error, bit 4 timing set
10+L   SNR, int8 in 0.25 dB
11+L   channel RSSI; 12+L signal RSSI; 13+L, 14+L RSSI min/max deltas
15+L   timestamp, 32 MHz ticks, 32-bit little-endian
19+L   payload CRC16 little-endian
21+L   N, then 2N metric bytes
last   8-bit sum of every preceding byte of the record
====== =====================================================================

A framing failure (missing sync, truncated record, bad checksum) means the rest
of the fetched batch cannot be trusted, so the batch is dropped from there on,
as the reference driver does. A record whose framing is sound but whose content
is impossible (modem id, channel, SF out of range, or a payload whose CRC16 does
not match) is dropped alone: its length is known, so the next record is intact.
"""

from __future__ import annotations

from binascii import crc_hqx
from dataclasses import dataclass

import structlog

from hal.errors import RxRecordError
from hal.types import RxErrorCounters

log = structlog.get_logger(__name__)

SYNC = b"\xa5\xc0"
HEAD_LEN = 9
TAIL_LEN = 14
MIN_RECORD = HEAD_LEN + TAIL_LEN
LORA_MODEM_MAX = 15
LORA_SERVICE_MODEM = 16
FSK_MODEM = 17

# Reasons after which the rest of the batch is dropped (framing is lost).
FRAMING_REASONS = frozenset({"short_buffer", "no_sync", "truncated", "bad_checksum"})


# --- LoRa payload CRC16 ------------------------------------------------------------------------
# The reference describes the CRC as byte-parallel equations: output bit i of the new
# register is the XOR of some data bits and some bits of the old register. The taps
# below are those equations as data; the tables fold them into three lookups per byte.
_CRC_TAPS: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (
    ((0,), (12, 8)), ((1,), (13, 9)), ((2,), (14, 10)), ((3,), (15, 11)),
    ((4,), (12,)), ((5,), (13, 12, 8)), ((6,), (14, 13, 9)), ((7,), (15, 14, 10)),
    ((), (0, 15, 11)), ((), (1, 12)), ((), (2, 13)), ((), (3, 14)),
    ((), (4, 15, 12, 8)), ((), (5, 13, 9)), ((), (6, 14, 10)), ((), (7, 15, 11)),
)


def _tap_table(use_data: bool, base: int) -> tuple[int, ...]:
    """16-bit contribution of each byte value sitting at bits ``base..base+7`` of its source."""
    table = []
    for value in range(256):
        out = 0
        for bit, (data_taps, crc_taps) in enumerate(_CRC_TAPS):
            parity = 0
            for tap in data_taps if use_data else crc_taps:
                if base <= tap < base + 8:
                    parity ^= (value >> (tap - base)) & 1
            out |= parity << bit
        table.append(out)
    return tuple(table)


_T_DATA = _tap_table(True, 0)
_T_CRC_LOW = _tap_table(False, 0)
_T_CRC_HIGH = _tap_table(False, 8)


def lora_crc16(data: bytes, crc: int = 0) -> int:
    """The LoRa payload CRC as the SX1302 reports it (initial value 0, no final XOR).

    The equations above are the CRC-16 of polynomial 0x1021 without the 16 zero bits the
    usual (XMODEM) form appends: the register holds data(x) mod P. So for two bytes or
    more it is XMODEM's CRC of all but the last two bytes (data(x)·x^16 mod P), plus
    those two bytes; ``binascii.crc_hqx`` computes the XMODEM CRC in C, where the
    table loop costs a few µs per frame on the radio thread.
    """
    if crc == 0 and len(data) >= 2:
        return crc_hqx(data[:-2], 0) ^ (data[-2] << 8 | data[-1])
    for byte in data:
        crc = _T_DATA[byte] ^ _T_CRC_LOW[crc & 0xFF] ^ _T_CRC_HIGH[crc >> 8]
    return crc


# --- records ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RxRecord:
    """One record of the RX buffer, fields as raw as the chip gives them."""

    payload: bytes
    if_chain: int
    crc_enabled: bool
    coding_rate: int
    spreading_factor: int
    modem_id: int
    freq_offset_raw: int
    crc_error: bool
    sync_error: bool
    header_error: bool
    timing_set: bool
    snr_raw: int
    """Signed, in 0.25 dB steps."""
    rssi_chan_raw: int
    rssi_sig_raw: int
    rssi_deltas: bytes
    timestamp_ticks: int
    payload_crc: int
    ts_metrics: bytes

    @property
    def is_lora(self) -> bool:
        return self.modem_id <= LORA_SERVICE_MODEM


def record_length(buf: bytes, start: int) -> int:
    """Total length of the record at ``start``; needs the length byte and the metrics count."""
    if start + 3 > len(buf):
        raise RxRecordError("truncated", f"no length byte at {start}")
    size = buf[start + 2]
    n_index = start + HEAD_LEN + size + 12
    if n_index >= len(buf):
        raise RxRecordError("truncated", f"record at {start} needs {n_index + 1 - start} bytes")
    return MIN_RECORD + size + 2 * buf[n_index]


def _int20(raw: int) -> int:
    return raw - (1 << 20) if raw & (1 << 19) else raw


def parse_record(buf: bytes, start: int = 0) -> tuple[RxRecord, int]:
    """The record at ``start`` and the index of the next one; raises :class:`RxRecordError`."""
    if buf[start:start + 2] != SYNC:
        raise RxRecordError("no_sync", f"no sync word at {start}")
    length = record_length(buf, start)
    end = start + length
    if end > len(buf):
        raise RxRecordError("truncated", f"record at {start} needs {length} bytes")
    rec = buf[start:end]
    if sum(rec[:-1]) & 0xFF != rec[-1]:
        raise RxRecordError("bad_checksum", f"record at {start}: sum 0x{sum(rec[:-1]) & 0xFF:02X}"
                                             f" != 0x{rec[-1]:02X}")
    size = rec[2]
    t = HEAD_LEN + size  # start of the tail
    record = RxRecord(
        payload=bytes(rec[HEAD_LEN:t]),
        if_chain=rec[3],
        crc_enabled=bool(rec[4] & 0x01),
        coding_rate=(rec[4] >> 1) & 0x07,
        spreading_factor=rec[4] >> 4,
        modem_id=rec[5],
        freq_offset_raw=_int20(rec[6] | rec[7] << 8 | (rec[8] & 0x0F) << 16),
        crc_error=bool(rec[t] & 0x01),
        sync_error=bool(rec[t] & 0x04),
        header_error=bool(rec[t] & 0x08),
        timing_set=bool(rec[t] & 0x10),
        snr_raw=rec[t + 1] - 256 if rec[t + 1] >= 128 else rec[t + 1],
        rssi_chan_raw=rec[t + 2],
        rssi_sig_raw=rec[t + 3],
        rssi_deltas=bytes(rec[t + 4:t + 6]),
        timestamp_ticks=int.from_bytes(rec[t + 6:t + 10], "little"),
        payload_crc=int.from_bytes(rec[t + 10:t + 12], "little"),
        ts_metrics=bytes(rec[t + 13:-1]),
    )
    _check_content(record)
    return record, end


def _check_content(r: RxRecord) -> None:
    """Range checks of the reference driver, plus the payload CRC recomputation."""
    if r.modem_id > FSK_MODEM:
        raise RxRecordError("bad_modem_id", f"modem id {r.modem_id}")
    if r.is_lora:
        if r.if_chain > 9:
            raise RxRecordError("bad_channel", f"IF chain {r.if_chain}")
        if not 5 <= r.spreading_factor <= 12:
            raise RxRecordError("bad_sf", f"SF {r.spreading_factor}")
        if r.crc_enabled and not r.crc_error and r.payload:
            calc = lora_crc16(r.payload)
            if calc != r.payload_crc:
                raise RxRecordError("payload_crc_mismatch",
                                    f"chip 0x{r.payload_crc:04X}, host 0x{calc:04X}")
    elif r.if_chain > 9:
        raise RxRecordError("bad_channel", f"IF chain {r.if_chain}")


def parse_rx_buffer(buf: bytes, errors: RxErrorCounters) -> list[RxRecord]:
    """Every good record in a fetched batch; each dropped one is counted in ``errors``."""
    if not buf:
        return []
    if len(buf) < MIN_RECORD:
        _drop(errors, "short_buffer", f"{len(buf)} bytes", len(buf))
        return []
    first = buf.find(SYNC)
    if first < 0:
        _drop(errors, "no_sync", "no sync word in batch", len(buf))
        return []
    if first > 0:
        _drop(errors, "resync", f"skipped {first} bytes before the first sync word", first)
    records: list[RxRecord] = []
    index = first
    while index < len(buf):
        try:
            record, index = parse_record(buf, index)
        except RxRecordError as exc:
            if exc.reason in FRAMING_REASONS:
                _drop(errors, exc.reason, str(exc), len(buf) - index)
                break
            _drop(errors, exc.reason, str(exc), 0)
            index += record_length(buf, index)  # framing was checked: skip just this one
            continue
        records.append(record)
    return records


def _drop(errors: RxErrorCounters, reason: str, detail: str, dropped_bytes: int) -> None:
    errors.add(reason)
    log.warning("rx_record_dropped", reason=reason, detail=detail, dropped_bytes=dropped_bytes)
