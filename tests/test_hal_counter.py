"""The 27-bit µs counter: torn-read retry, wrap counting, packet expansion, through the driver."""

from __future__ import annotations

from hal.backends.emulated import open_emulated
from hal.counter import US_MODULO, CounterExtender, CounterSample, read_counters
from hal.spi import Sx1302Spi
from hal.types import COUNTER_MODULO, EU868_DEFAULT_PLAN


class BlockTransport:
    """Answers 8-byte timestamp block reads from a list of prepared blocks."""

    def __init__(self, blocks: list[bytes]) -> None:
        self.blocks = blocks
        self.reads = 0

    def transfer(self, data: bytes) -> bytes:
        assert data[:4] == b"\x00\x61\x01\x00" and len(data) == 12
        block = self.blocks[min(self.reads, len(self.blocks) - 1)]
        self.reads += 1
        return bytes(4) + block

    def close(self) -> None:
        pass


def _block(pps: int, inst: int) -> bytes:
    return pps.to_bytes(4, "big") + inst.to_bytes(4, "big")


def test_two_reads_when_the_msb_is_stable() -> None:
    t = BlockTransport([_block(5, 0x01000000), _block(5, 0x01000020)])
    assert read_counters(Sx1302Spi(t)) == CounterSample(5, 0x01000000)
    assert t.reads == 2


def test_third_read_when_the_msb_changed() -> None:
    t = BlockTransport([_block(5, 0x01FFFFFF), _block(5, 0x02000001), _block(5, 0x02000040)])
    assert read_counters(Sx1302Spi(t)) == CounterSample(5, 0x02000040)
    assert t.reads == 3


def _ticks(us: int) -> CounterSample:
    return CounterSample(0, (us * 32) % (1 << 32))


def test_wrap_is_counted_and_extends_to_32_bits() -> None:
    ext = CounterExtender()
    assert ext.update(_ticks(US_MODULO - 10))[0] == US_MODULO - 10
    assert ext.update(_ticks(US_MODULO + 5))[0] == US_MODULO + 5
    assert ext.update(_ticks(3 * US_MODULO + 7))[0] == US_MODULO + 7  # a missed wrap is lost


def test_32_bit_counter_wraps_after_32_chip_wraps() -> None:
    ext = CounterExtender()
    values = [ext.update(_ticks(k * US_MODULO // 2 + 1))[0] for k in range(65)]
    assert values[-1] == 1
    assert values[-2] == COUNTER_MODULO - US_MODULO // 2 + 1


def test_packet_stamped_before_a_wrap_keeps_the_previous_wrap_count() -> None:
    ext = CounterExtender()
    ext.update(_ticks(US_MODULO - 100))
    ext.update(_ticks(US_MODULO + 50))  # counter wrapped; packet was stamped just before
    assert ext.expand_packet((US_MODULO - 20) * 32 % (1 << 32)) == US_MODULO - 20
    assert ext.expand_packet(30 * 32) == US_MODULO + 30


def test_driver_counter_follows_the_emulator_across_the_chip_wrap() -> None:
    now = [0.0]
    conc, emu = open_emulated(clock=lambda: now[0], counter_start_ticks=(1 << 32) - 32 * 500_000)
    conc.start(EU868_DEFAULT_PLAN)
    for _ in range(10):
        now[0] += 0.2  # crosses the 134 s chip wrap 0.5 s in
        assert conc.counter_us() == emu.counter_us()
    assert conc.counter_us() > US_MODULO


def test_packet_across_the_wrap_gets_the_right_count() -> None:
    now = [0.0]
    conc, emu = open_emulated(clock=lambda: now[0], counter_start_ticks=(1 << 32) - 32 * 1_000)
    conc.start(EU868_DEFAULT_PLAN)
    sent = emu.inject(b"\x40" * 12, frequency_hz=868_100_000, sf=7, bw_hz=125_000,
                      rssi_dbm=-70, snr_db=5)
    now[0] += 0.01  # the counter wraps before the driver reads the packet
    got = conc.receive()
    assert [p.count_us for p in got] == [sent]
