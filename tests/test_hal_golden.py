"""Golden transcript: the ordered SPI transactions of bring-up (with firmware) and one RX fetch.

The file ``tests/golden/sx1302_bringup_rx.txt`` was recorded from the driver
against the emulator and reviewed line by line against Semtech's reference
driver (sx1302_hal 2.1.0: ``lgw_start`` in loragw_hal.c, loragw_sx1302.c,
loragw_sx1250.c, ``rx_buffer_fetch`` in loragw_sx1302_rx.c). Any change to the
driver's SPI traffic shows up here as a diff to review. To re-record after a
deliberate change: ``LORA_GATEWAY_REGEN_GOLDEN=1 pytest tests/test_hal_golden.py``.

Where this sequence knowingly differs from the reference, and why:

1. The SX1302 reset pulse is driven by the driver (board profile GPIO) instead of
   an external shell script, so the transcript starts with the version read.
2. The OTP model byte (0xD0) is read right after the version check, every time:
   the gateway reports SX1302 vs SX1303. The reference reads it only when fine
   timestamps are enabled.
3. Only the radios the plan uses, plus the clock-source and TX radios, are reset
   and tuned; the reference starts every radio enabled in its JSON config.
4. Receive tuning (front end, PA/LNA tables, channel gain, correlators, multi-SF,
   service and FSK modems, sync words, GPIO routing) follows the reference order and
   values (``hal/modem_config.py``), with these knowing differences: IF frequencies
   and the radio select are written only for the chains the plan uses (the
   reference writes all ten); the service/FSK steps are skipped when the plan has
   no such channel (as the reference does); the fine-timestamp settings (SX1303
   only) are not written, the gateway runs the legacy timestamp mode.
5. Modem enables: only the modem families the plan uses are enabled; the
   reference enables all three unconditionally.
6. Handshakes: each status poll is followed by a 1 ms sleep and gives up after
   1 s with a FirmwareError; the reference polls forever with no sleep. After the
   AGC radio-gain steps the reference also reads back mailbox 2 (FDD mode); only
   the mailboxes written are read back here.
7. The counter is sampled once at the end of start() so wrap tracking begins at
   once; the reference's first sample is in the first lgw_receive.
8. Partial-byte fields are written by read-modify-write (a read then a write),
   as the reference's lgw_reg_w does; whole-byte fields are written directly.
"""

from __future__ import annotations

import os
from pathlib import Path

from hal.backends.emulated import open_emulated
from hal.emulator.transcript import render
from hal.firmware import AGC_SX1250_FILE, ARB_FILE, sha256_hex
from hal.types import EU868_DEFAULT_PLAN
from tests.support.firmware import AGC, ARB

GOLDEN = Path(__file__).parent / "golden" / "sx1302_bringup_rx.txt"


class FixedClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _record(tmp_path: Path) -> list[str]:
    (tmp_path / AGC_SX1250_FILE).write_bytes(AGC)
    (tmp_path / ARB_FILE).write_bytes(ARB)
    allowed = {AGC_SX1250_FILE: frozenset({sha256_hex(AGC)}),
               ARB_FILE: frozenset({sha256_hex(ARB)})}
    clock = FixedClock()
    conc, emu = open_emulated(clock=clock, record_transcript=True, firmware_dir=tmp_path,
                              require_firmware=True, firmware_sha256=allowed)
    conc.start(EU868_DEFAULT_PLAN)
    assert emu.transcript is not None
    lines = ["# bring-up", *render(emu.transcript)]
    emu.transcript.clear()
    clock.t += 2.0
    emu.inject(b"golden", frequency_hz=868_100_000, sf=7, bw_hz=125_000, rssi_dbm=-70, snr_db=5)
    [packet] = conc.receive()
    assert packet.payload == b"golden"
    return [*lines, "# one RX fetch", *render(emu.transcript)]


def test_bring_up_and_rx_transcript_matches_the_reviewed_golden_file(tmp_path: Path) -> None:
    lines = _record(tmp_path)
    text = "\n".join(lines) + "\n"
    if os.environ.get("LORA_GATEWAY_REGEN_GOLDEN") == "1":
        GOLDEN.write_text(text, encoding="utf-8")
    golden = GOLDEN.read_text(encoding="utf-8").splitlines()
    for number, (got, want) in enumerate(zip(lines, golden, strict=False), start=1):
        assert got == want, f"line {number} differs"
    assert len(lines) == len(golden)


def test_the_golden_file_shows_the_reference_milestones_in_order() -> None:
    """Independent of exact bytes: the reference's step order is visible in the file."""
    text = GOLDEN.read_text(encoding="utf-8").splitlines()

    def first(prefix: str) -> int:
        return next(i for i, line in enumerate(text) if line.startswith(prefix))

    version = first("R 5606 -> 10")
    calibrate = first("RADIO_A op 98 D7 DB")
    set_rx = first("RADIO_A op 82 FF FF FF")
    global_en = max(i for i, line in enumerate(text) if line.startswith("W 5605"))
    agc_load = first("WB 0000 <- [1024 bytes")
    arb_load = first("WB 2000 <- [1024 bytes")
    fetch = first("# one RX fetch")
    assert version < calibrate < set_rx < global_en < agc_load < arb_load < fetch
    rx = text[fetch + 1:]
    assert rx[0].startswith("RB 58C8 x2") and rx[1].startswith("RB 58C8 x2")
    assert rx[2].startswith("RB 4000 x")
    assert rx[3].startswith("RB 6101 x8")
