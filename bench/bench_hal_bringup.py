"""Bring-up cost against the emulator, with synthetic firmware: time and SPI transactions.

Prints numbers only. The emulator answers at once, so this is the host-side
cost; on a Pi add the 2 MHz SPI transfers (2 × 16 KiB of firmware written and read
back: ~0.13 s) and the reset and radio settling waits (~2.5 s with the default
timings). Run: python -m bench.bench_hal_bringup
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

from hal.backends.emulated import open_emulated
from hal.firmware import AGC_SX1250_FILE, ARB_FILE, sha256_hex
from hal.types import EU868_DEFAULT_PLAN


def _image(seed: bytes) -> bytes:
    return b"".join(hashlib.sha256(seed + bytes([i])).digest() for i in range(256))


def bench_bring_up(runs: int = 20) -> None:
    agc, arb = _image(b"agc"), _image(b"arb")
    with tempfile.TemporaryDirectory() as folder:
        fw = Path(folder)
        (fw / AGC_SX1250_FILE).write_bytes(agc)
        (fw / ARB_FILE).write_bytes(arb)
        allowed = {AGC_SX1250_FILE: frozenset({sha256_hex(agc)}),
                   ARB_FILE: frozenset({sha256_hex(arb)})}
        conc, emu = open_emulated(firmware_dir=fw, require_firmware=True,
                                  firmware_sha256=allowed, record_transcript=True)
        start = time.perf_counter()
        for _ in range(runs):
            conc.start(EU868_DEFAULT_PLAN)
        elapsed = (time.perf_counter() - start) / runs
        assert emu.transcript is not None
        print(f"bring-up with firmware: {elapsed * 1e3:.1f} ms host time, "
              f"{len(emu.transcript) // runs} SPI transactions per start")


if __name__ == "__main__":
    bench_bring_up()
