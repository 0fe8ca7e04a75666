"""LBT and spectral-scan cost on the emulator: SPI transactions and host time. Prints numbers
and one JSON line.

Run: python -m bench.bench_lbt

The scan window itself (5 ms in KR920) is a sleep on hardware; here the driver's sleep
is a no-op, so the times are the host's own work per send and per scanned channel.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time

from hal.backends.emulated import open_emulated
from hal.lbt import ChannelBusyError, LbtSettings
from hal.spectral import scan_channel
from hal.sx1261 import Sx1261
from hal.types import Modulation, TxPacket, TxTiming
from packet_forwarder.regions import load_region

KR920 = load_region("KR920")


def _send_us(lbt: bool, busy: bool, runs: int = 300) -> tuple[float, int]:
    conc, emu = open_emulated(record_transcript=True,
                              lbt=LbtSettings(-65, 5000) if lbt else None)
    assert emu.sx1261 is not None and emu.transcript is not None
    if busy:
        emu.sx1261.busy[922_100_000] = -50.0
    conc.start(KR920.default_channel_plan(None))
    packet = TxPacket(payload=bytes(20), frequency_hz=922_100_000, power_dbm=14,
                      modulation=Modulation.LORA, spreading_factor=9, bandwidth_hz=125_000,
                      timing=TxTiming.IMMEDIATE)
    times = []
    frames = 0
    for _ in range(runs):
        emu.transcript.clear()
        start = time.perf_counter()
        with contextlib.suppress(ChannelBusyError):
            conc.send(packet)
        times.append((time.perf_counter() - start) * 1e6)
        frames = len(emu.transcript)
    return statistics.median(times), frames


def _scan_ms(runs: int = 50) -> float:
    _conc, emu = open_emulated()
    assert emu.sx1261 is not None
    radio = Sx1261(emu.sx1261, lambda _s: None)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        scan_channel(radio, 922_100_000, samples=2000)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    plain_us, plain_frames = _send_us(False, False)
    free_us, free_frames = _send_us(True, False)
    busy_us, busy_frames = _send_us(True, True)
    scan_ms = _scan_ms()
    print(f"send without LBT: median {plain_us:.0f} us, {plain_frames} SX1302 SPI transactions")
    print(f"send with LBT, free channel: median {free_us:.0f} us (+ the 5 ms scan on "
          f"hardware)")
    print(f"send with LBT, busy channel: median {busy_us:.0f} us (refused)")
    print(f"spectral scan, one channel, 2000 samples (emulated): median {scan_ms:.2f} ms")
    print(json.dumps({"send_plain_us": round(plain_us), "send_lbt_free_us": round(free_us),
                      "send_lbt_busy_us": round(busy_us), "sx1302_frames_plain": plain_frames,
                      "sx1302_frames_lbt": free_frames, "sx1302_frames_lbt_busy": busy_frames,
                      "scan_channel_ms": round(scan_ms, 2)}))


if __name__ == "__main__":
    main()
