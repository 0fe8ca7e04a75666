"""Build RX buffer records exactly as the SX1302 lays them out (the inverse of the parser)."""

from __future__ import annotations

from dataclasses import dataclass

from hal.rx_record import SYNC, lora_crc16

CRC_ERROR_BIT = 0x01
TIMING_SET_BIT = 0x10
FREQ_OFFSET_BITS = 20


@dataclass(frozen=True, slots=True)
class RecordFields:
    """What the chip writes for one received frame (raw units, as in the record)."""

    payload: bytes
    if_chain: int
    spreading_factor: int
    coding_rate: int
    modem_id: int
    timestamp_ticks: int
    rssi_raw: int
    snr_raw: int
    freq_offset_raw: int = 0
    rssi_sig_raw: int | None = None
    """Signal RSSI byte; None repeats the channel RSSI."""
    timing_set: bool = False
    """Status bit 4: the stamp comes from the timing-optimised demodulator (SX1303)."""
    crc_enabled: bool = True
    crc_ok: bool = True
    ts_metrics: bytes = b""


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def encode_record(f: RecordFields) -> bytes:
    """The record bytes for ``f``, with its payload CRC16 and trailing 8-bit checksum.

    A frame received with a CRC error carries a CRC field that does not match the
    payload (the chip reports what it computed over corrupted bits).
    """
    if len(f.payload) > 255 or len(f.ts_metrics) % 2 or len(f.ts_metrics) > 510:
        raise ValueError("payload up to 255 bytes, metrics an even count up to 510")
    offset = _clamp(f.freq_offset_raw, -(1 << 19), (1 << 19) - 1) & ((1 << FREQ_OFFSET_BITS) - 1)
    crc = lora_crc16(f.payload) if f.crc_ok else lora_crc16(f.payload) ^ 0xA5A5
    head = bytes((
        len(f.payload), f.if_chain,
        (f.spreading_factor << 4) | ((f.coding_rate & 0x07) << 1) | int(f.crc_enabled),
        f.modem_id, offset & 0xFF, (offset >> 8) & 0xFF, offset >> 16,
    ))
    tail = bytes((
        (0 if f.crc_ok else CRC_ERROR_BIT) | (TIMING_SET_BIT if f.timing_set else 0),
        _clamp(f.snr_raw, -128, 127) & 0xFF,
        _clamp(f.rssi_raw, 0, 255),
        _clamp(f.rssi_raw if f.rssi_sig_raw is None else f.rssi_sig_raw, 0, 255),
        0, 0,
    )) + (f.timestamp_ticks % (1 << 32)).to_bytes(4, "little") + crc.to_bytes(2, "little")
    body = SYNC + head + f.payload + tail + bytes((len(f.ts_metrics) // 2,)) + f.ts_metrics
    return body + bytes((sum(body) & 0xFF,))
