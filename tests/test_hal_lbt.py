"""Listen-before-talk on the emulated SX1261: busy refuses, free sends, scan per the rule.

The sequence and values follow Semtech's reference (sx1302_hal 2.1.0): LBT armed
with opcode 0x9A and 715 samples for a 5 ms window (``sx1261_lbt_start``,
loragw_sx1261.c), the verdict in the AGC status bits (``lgw_lbt_tx_status``,
loragw_lbt.c).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hal.backends.emulated import open_emulated
from hal.emulator.chip import Sx1302Emulator
from hal.emulator.stepping_clock import SteppingClock
from hal.errors import FirmwareError
from hal.firmware import AGC_SX1250_FILE, ARB_FILE, SX1261_PATCH_FILE, sha256_hex
from hal.lbt import ChannelBusyError, LbtSettings
from hal.sx1302 import Sx1302Concentrator
from hal.types import Modulation, TxPacket, TxTiming
from packet_forwarder.regions import load_region

KR920 = load_region("KR920")
KR_RULE = LbtSettings(threshold_dbm=KR920.lbt.rssi_target_dbm or 0,
                      scan_time_us=KR920.lbt.scan_time_us or 0)
BUSY_HZ, FREE_HZ = 922_100_000, 922_300_000


def _packet(freq: int, timing: TxTiming = TxTiming.IMMEDIATE, count_us: int = 0) -> TxPacket:
    return TxPacket(payload=b"\x60kr920", frequency_hz=freq, power_dbm=14,
                    modulation=Modulation.LORA, spreading_factor=9, bandwidth_hz=125_000,
                    timing=timing, count_us=count_us)


@pytest.fixture
def kr920() -> tuple[Sx1302Concentrator, Sx1302Emulator, SteppingClock]:
    clock = SteppingClock()
    conc, emu = open_emulated(clock=clock, sleep=clock.sleep, lbt=KR_RULE)
    assert emu.sx1261 is not None
    emu.sx1261.busy[BUSY_HZ] = -50.0  # a neighbour 15 dB above KR920's −65 dBm threshold
    conc.start(KR920.default_channel_plan(None))
    return conc, emu, clock


def test_the_kr920_rule_is_minus_65_dbm_over_5_ms() -> None:
    assert (KR_RULE.threshold_dbm, KR_RULE.scan_time_us) == (-65, 5000)


def test_busy_channel_blocks_the_transmission(
        kr920: tuple[Sx1302Concentrator, Sx1302Emulator, SteppingClock]) -> None:
    conc, emu, _ = kr920
    with pytest.raises(ChannelBusyError, match="922100000"):
        conc.send(_packet(BUSY_HZ))
    assert emu.tx_log == []
    assert [chain for chain, _ in emu.lbt_blocked] == [0]
    assert emu.sx1261 is not None and not emu.sx1261.lbt_armed  # scan stopped after the verdict
    # the AGC status was acknowledged: the next send is judged afresh
    conc.send(_packet(FREE_HZ))
    assert [round(e.frequency_hz, -3) for e in emu.tx_log] == [FREE_HZ]


def test_free_channel_transmits_after_one_full_scan_window(
        kr920: tuple[Sx1302Concentrator, Sx1302Emulator, SteppingClock]) -> None:
    conc, emu, clock = kr920
    conc.send(_packet(FREE_HZ))
    assert emu.sx1261 is not None
    (scan,) = emu.sx1261.lbt_log
    assert scan.frequency_hz == pytest.approx(FREE_HZ, abs=1)
    assert scan.nb_scan == 715  # the SX1261 patch's sample count for 5 ms
    assert scan.threshold_dbm == -65
    (tx,) = emu.tx_log
    started_s = (tx.start_count_us - emu.counter_us()) / 1e6 + clock.t
    assert round((started_s - scan.at_s) * 1e6) >= 5000  # sensed for the whole window first


def test_timestamped_downlink_is_judged_too(
        kr920: tuple[Sx1302Concentrator, Sx1302Emulator, SteppingClock]) -> None:
    conc, emu, _ = kr920
    later = (conc.counter_us() + 50_000) % (1 << 32)
    with pytest.raises(ChannelBusyError):
        conc.send(_packet(BUSY_HZ, TxTiming.TIMESTAMPED, later))
    assert emu.tx_log == []


def test_without_lbt_the_same_busy_channel_is_not_checked() -> None:
    clock = SteppingClock()
    conc, emu = open_emulated(clock=clock, sleep=clock.sleep)
    assert emu.sx1261 is not None
    emu.sx1261.busy[BUSY_HZ] = -50.0
    conc.start(KR920.default_channel_plan(None))
    assert not conc.listen_before_talk
    conc.send(_packet(BUSY_HZ))
    assert len(emu.tx_log) == 1 and emu.sx1261.lbt_log == []


def test_a_board_without_sx1261_cannot_enable_lbt() -> None:
    with pytest.raises(ValueError, match="no SX1261"):
        open_emulated(board="rak2287", lbt=KR_RULE)


# --- the SX1261 patch: hash-checked, loaded, and the AGC told to gate TX -------------------------
def _images(tmp_path: Path, patch: bytes) -> dict[str, frozenset[str]]:
    agc, arb = bytes([0x11]) * 8192, bytes([0x22]) * 8192
    for name, data in ((AGC_SX1250_FILE, agc), (ARB_FILE, arb), (SX1261_PATCH_FILE, patch)):
        (tmp_path / name).write_bytes(data)
    return {AGC_SX1250_FILE: frozenset({sha256_hex(agc)}), ARB_FILE: frozenset({sha256_hex(arb)}),
            SX1261_PATCH_FILE: frozenset({sha256_hex(patch)})}


def test_the_sx1261_patch_is_loaded_before_lbt_works(tmp_path: Path) -> None:
    patch = bytes(range(256)) * 6 + bytes(8)  # 1,544 bytes like the release's 386 words
    allowed = _images(tmp_path, patch)
    clock = SteppingClock()
    conc, emu = open_emulated(clock=clock, sleep=clock.sleep, lbt=KR_RULE, firmware_dir=tmp_path,
                              require_firmware=True, firmware_sha256=allowed)
    assert emu.sx1261 is not None
    emu.sx1261.busy[BUSY_HZ] = -50.0
    conc.start(KR920.default_channel_plan(None))
    assert emu.sx1261.patched
    with pytest.raises(ChannelBusyError):
        conc.send(_packet(BUSY_HZ))
    conc.send(_packet(FREE_HZ))
    assert len(emu.tx_log) == 1


def test_a_patch_off_the_allow_list_is_refused_by_name(tmp_path: Path) -> None:
    allowed = _images(tmp_path, bytes(16))
    (tmp_path / SX1261_PATCH_FILE).write_bytes(bytes(range(16)))
    with pytest.raises(FirmwareError, match=SX1261_PATCH_FILE):
        open_emulated(lbt=KR_RULE, firmware_dir=tmp_path, require_firmware=True,
                      firmware_sha256=allowed)


def test_scan_times_other_than_the_patch_supports_are_refused() -> None:
    with pytest.raises(ValueError, match="128, 5000"):
        LbtSettings(threshold_dbm=-80, scan_time_us=2000)
