"""Time on air of a packet the gateway will emit, LoRa or FSK, in microseconds.

LoRa reuses :func:`hal.timing.time_on_air_us` (the Semtech modem formula, with the
low-data-rate optimisation the SX1302 enables when it transmits: SF11/12 at 125 kHz
and SF12 at 250 kHz), so the emulator, the scheduler and duty-cycle accounting all
agree on one number. FSK follows the SX1302 FSK framing: preamble, a 3-byte sync
word, a length byte, the payload and a 2-byte CRC, at the bit rate.
"""

from __future__ import annotations

from hal.timing import CR_CODES, time_on_air_us
from hal.types import Modulation, TxPacket

FSK_SYNC_WORD_BYTES = 3
FSK_LENGTH_BYTES = 1
FSK_CRC_BYTES = 2
FSK_DEFAULT_PREAMBLE_BYTES = 5


def lora_time_on_air_us(sf: int, bandwidth_hz: int, code_rate: str, size: int, *,
                        preamble: int = 8, crc: bool = True,
                        implicit_header: bool = False) -> int:
    """LoRa frame duration; ``code_rate`` as ``"4/5"``..``"4/8"``."""
    if code_rate not in CR_CODES:
        raise ValueError(f"unsupported coding rate {code_rate!r}")
    return time_on_air_us(sf, bandwidth_hz, CR_CODES[code_rate], size, preamble=preamble,
                          crc=crc, implicit_header=implicit_header)


def fsk_time_on_air_us(bitrate_bps: int, size: int, *,
                       preamble_bytes: int = FSK_DEFAULT_PREAMBLE_BYTES, crc: bool = True) -> int:
    """FSK frame duration, rounded up to the microsecond so accounting never undercounts."""
    if bitrate_bps <= 0:
        raise ValueError(f"FSK bit rate {bitrate_bps} must be positive")
    octets = (preamble_bytes + FSK_SYNC_WORD_BYTES + FSK_LENGTH_BYTES + size
              + (FSK_CRC_BYTES if crc else 0))
    return -(-octets * 8 * 1_000_000 // bitrate_bps)


def packet_time_on_air_us(packet: TxPacket, *, implicit_header: bool = False) -> int:
    """Duration of ``packet`` on air as the chip will send it."""
    if packet.modulation is Modulation.FSK:
        return fsk_time_on_air_us(packet.datarate_bps, len(packet.payload),
                                  preamble_bytes=packet.preamble, crc=not packet.no_crc)
    return lora_time_on_air_us(packet.spreading_factor, packet.bandwidth_hz, packet.code_rate,
                               len(packet.payload), preamble=packet.preamble,
                               crc=not packet.no_crc, implicit_header=implicit_header)
