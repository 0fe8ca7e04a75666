"""HAL throughput: emulated receive path, record parsing and the LoRa CRC16. Prints numbers only.

Run: python -m bench.bench_hal
"""

from __future__ import annotations

import time

from hal.backends.emulated import open_emulated
from hal.emulator.records import RecordFields, encode_record
from hal.rx_record import lora_crc16, parse_rx_buffer
from hal.types import EU868_DEFAULT_PLAN, RxErrorCounters

PAYLOAD = bytes(range(23))


def bench_receive(batches: int = 200, per_batch: int = 30) -> None:
    conc, emu = open_emulated(record_transcript=True)
    conc.start(EU868_DEFAULT_PLAN)
    assert emu.transcript is not None
    emu.transcript.clear()
    got = 0
    start = time.perf_counter()
    for _ in range(batches):
        for _ in range(per_batch):
            emu.inject(PAYLOAD, frequency_hz=868_100_000, sf=7, bw_hz=125_000,
                       rssi_dbm=-80, snr_db=5)
        got += len(conc.receive())
    elapsed = time.perf_counter() - start
    print(f"emulated inject+receive: {got / elapsed:,.0f} packets/s "
          f"({batches} batches of {per_batch}, 23-byte payloads)")
    print(f"SPI transactions per receive() with data: {len(emu.transcript) / batches:.1f}")
    emu.transcript.clear()
    conc.receive()
    print(f"SPI transactions per idle receive(): {len(emu.transcript)}")


def bench_parse(n: int = 20_000) -> None:
    record = encode_record(RecordFields(payload=PAYLOAD, if_chain=0, spreading_factor=7,
                                        coding_rate=1, modem_id=0, timestamp_ticks=123,
                                        rssi_raw=130, snr_raw=20))
    buf = record * 100
    start = time.perf_counter()
    for _ in range(n // 100):
        parse_rx_buffer(buf, RxErrorCounters())
    elapsed = time.perf_counter() - start
    print(f"parse_rx_buffer: {n / elapsed:,.0f} records/s")


def bench_crc(size: int = 1 << 20) -> None:
    data = bytes(i & 0xFF for i in range(size))
    start = time.perf_counter()
    lora_crc16(data)
    print(f"lora_crc16: {size / (time.perf_counter() - start) / 1e6:.1f} MB/s")


if __name__ == "__main__":
    bench_receive()
    bench_parse()
    bench_crc()
