"""Time on air against the Semtech modem formula, written here in the datasheet's own form.

The production code (hal.timing, via packet_forwarder.downlink.airtime) uses the
reference driver's arrangement of the formula; this test recomputes it from the
SX127x/SX126x datasheet arrangement with exact fractions, over SF7..SF12,
125/250/500 kHz, all coding rates and a range of payload sizes, and pins a few
values published in LoRaWAN documents.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from hal.types import Modulation, TxPacket
from packet_forwarder.downlink.airtime import (
    fsk_time_on_air_us,
    lora_time_on_air_us,
    packet_time_on_air_us,
)

SIZES = (0, 1, 12, 13, 23, 51, 59, 64, 115, 222, 242, 255)


def datasheet_toa_us(sf: int, bw: int, cr: int, size: int, preamble: int, crc: bool,
                     implicit: bool) -> int:
    """Datasheet form of the LoRa frame duration.

    T = (Npreamble + 4.25) Tsym
      + (8 + max(ceil((8PL-4SF+28+16CRC-20IH) / (4(SF-2DE))) (CR+4), 0)) Tsym.

    DE (low data rate optimisation) is on when a symbol lasts 16 ms or more.
    """
    tsym = Fraction(2**sf, bw)
    de = 1 if tsym >= Fraction(16, 1000) else 0
    num = 8 * size - 4 * sf + 28 + 16 * int(crc) - 20 * int(implicit)
    payload = 8 + max(math.ceil(Fraction(num, 4 * (sf - 2 * de))) * (cr + 4), 0)
    return math.floor((preamble + Fraction(17, 4) + payload) * tsym * 1_000_000)


@pytest.mark.parametrize("sf", range(7, 13))
@pytest.mark.parametrize("bw", (125_000, 250_000, 500_000))
def test_lora_matches_the_datasheet_formula(sf: int, bw: int) -> None:
    for cr_index, cr in enumerate(("4/5", "4/6", "4/7", "4/8"), start=1):
        for size in SIZES:
            for crc in (True, False):
                expected = datasheet_toa_us(sf, bw, cr_index, size, 8, crc, False)
                got = lora_time_on_air_us(sf, bw, cr, size, crc=crc)
                assert got == expected, (sf, bw, cr, size)


@pytest.mark.parametrize(("sf", "bw", "size", "crc", "implicit", "preamble", "expected_us"), [
    (7, 125_000, 23, True, False, 8, 61_696),        # the classic SF7 example
    (12, 125_000, 13, True, False, 8, 1_155_072),    # an empty uplink at SF12
    (12, 125_000, 51, True, False, 8, 2_465_792),    # EU868 DR0 maximum uplink
    (9, 125_000, 17, False, True, 10, 152_576),      # EU868 class B beacon
    (12, 500_000, 23, False, True, 10, 305_152),     # US915 class B beacon (37.25 symbols)
])
def test_published_values(sf: int, bw: int, size: int, crc: bool, implicit: bool,
                          preamble: int, expected_us: int) -> None:
    got = lora_time_on_air_us(sf, bw, "4/5", size, preamble=preamble, crc=crc,
                              implicit_header=implicit)
    assert got == expected_us
    assert got == datasheet_toa_us(sf, bw, 1, size, preamble, crc, implicit)


def test_time_on_air_grows_with_payload_and_spreading_factor() -> None:
    assert lora_time_on_air_us(7, 125_000, "4/5", 50) < lora_time_on_air_us(7, 125_000, "4/5", 100)
    assert lora_time_on_air_us(7, 125_000, "4/5", 50) < lora_time_on_air_us(8, 125_000, "4/5", 50)
    assert lora_time_on_air_us(7, 500_000, "4/5", 50) < lora_time_on_air_us(7, 125_000, "4/5", 50)


@pytest.mark.parametrize(("rate", "size", "crc", "expected_us"), [
    (50_000, 23, True, 5_440),     # (5 + 3 + 1 + 23 + 2) bytes × 8 / 50 kbit/s
    (50_000, 0, False, 1_440),
    (4_800, 10, True, 35_000),
    (3, 0, False, math.ceil(9 * 8 * 1_000_000 / 3)),
])
def test_fsk(rate: int, size: int, crc: bool, expected_us: int) -> None:
    assert fsk_time_on_air_us(rate, size, crc=crc) == expected_us


def test_packet_dispatch_uses_packet_fields() -> None:
    lora = TxPacket(b"x" * 23, 868_100_000, 14, Modulation.LORA, 7, 125_000, no_crc=False)
    assert packet_time_on_air_us(lora) == 61_696
    fsk = TxPacket(b"x" * 23, 868_800_000, 14, Modulation.FSK, 0, 0, code_rate="",
                   preamble=5, no_crc=False, datarate_bps=50_000, fdev_hz=25_000)
    assert packet_time_on_air_us(fsk) == 5_440


def test_bad_parameters_raise() -> None:
    with pytest.raises(ValueError):
        lora_time_on_air_us(7, 125_000, "4/9", 10)
    with pytest.raises(ValueError):
        lora_time_on_air_us(7, 200_000, "4/5", 10)
    with pytest.raises(ValueError):
        fsk_time_on_air_us(0, 10)
