"""The SX1302 over a USB MCU: protocol framing, failures, and the whole driver through it."""

from __future__ import annotations

import struct

import pytest

from hal.backends.emulated import open_emulated
from hal.backends.emulated_usb import open_emulated_usb
from hal.emulator.chip import DEFAULT_EUI
from hal.emulator.usb_mcu import UNIQUE_ID, EmulatedUsbMcu
from hal.types import EU868_DEFAULT_PLAN, Modulation, TxPacket, TxTiming
from hal.usb_mcu import (
    GPIO_PORT_A,
    PIN_POWER_EN,
    PIN_SX1302_RESET,
    McuError,
    UsbMcuLink,
    open_link,
)


class TickingClock:
    """Advances a little on every reading, so timeouts expire without real waiting."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 0.001
        return self.t


class RecordingPort:
    """Answers nothing; keeps what the host wrote."""

    def __init__(self, answer: bytes = b"") -> None:
        self.written = bytearray()
        self.answer = bytearray(answer)

    def read(self, size: int = 1) -> bytes:
        out = bytes(self.answer[:size])
        del self.answer[:size]
        return out

    def write(self, data: bytes) -> int:
        self.written += data
        return len(data)

    def close(self) -> None:
        pass


def test_request_framing_is_id_size_command_then_payload() -> None:
    port = RecordingPort(answer=bytes((7, 0, 1, 0x44, 0)))  # ack WRITE_GPIO, status 0
    link = UsbMcuLink(port, "test", clock=TickingClock())
    link.gpio_write(0, 2, 1)
    _req_id, size, command = struct.unpack(">BHB", port.written[:4])
    assert (size, command, bytes(port.written[4:])) == (3, 0x04, bytes((0, 2, 1)))


def test_open_pings_checks_and_powers_then_pulses_reset() -> None:
    conc, _, mcu = open_emulated_usb(clock=TickingClock())
    assert mcu.gpio[(GPIO_PORT_A, PIN_POWER_EN)] == 1
    resets = [v for p, pin, v in mcu.gpio_writes if (p, pin) == (GPIO_PORT_A, PIN_SX1302_RESET)]
    assert resets == [1, 0]  # asserted then released
    assert conc.check_version() == 0x10
    assert conc.eui() == DEFAULT_EUI


def test_whole_driver_receives_and_transmits_through_the_mcu() -> None:
    clock = TickingClock()
    conc, emu, mcu = open_emulated_usb(clock=clock)
    conc.start(EU868_DEFAULT_PLAN)
    emu.inject(b"over-usb", frequency_hz=868_100_000, sf=9, bw_hz=125_000, rssi_dbm=-70,
               snr_db=6)
    [packet] = conc.receive()
    assert (packet.payload, packet.spreading_factor, packet.frequency_hz) == (
        b"over-usb", 9, 868_100_000)
    conc.send(TxPacket(b"\x60down", 869_525_000, 14, Modulation.LORA, 9, 125_000,
                       timing=TxTiming.IMMEDIATE))
    assert emu.tx_log[-1].payload == b"\x60down"
    assert mcu.requests > 300  # every register access went through the MCU
    assert 20 < conc.temperature_c() < 40  # from the MCU's status answer (31.5 °C)


def test_usb_and_spi_paths_put_the_same_transactions_on_the_chip() -> None:
    direct, direct_emu = open_emulated(clock=lambda: 500.0, record_transcript=True)
    direct.start(EU868_DEFAULT_PLAN)
    usb, usb_emu, _ = open_emulated_usb(clock=TickingClock())
    usb_emu.transcript = []  # record from here, as the direct one did from the start
    usb.start(EU868_DEFAULT_PLAN)
    assert direct_emu.transcript is not None
    # what the driver clocked out, frame by frame (replies differ only in counter values)
    assert [sent for sent, _ in usb_emu.transcript] == [sent for sent, _ in
                                                        direct_emu.transcript]


@pytest.mark.parametrize(("fault", "message"), [
    ("silent", "no answer from the MCU on emulated-usb"),
    ("garble", "garbled link"),
])
def test_link_failures_are_one_clear_error(fault: str, message: str) -> None:
    with pytest.raises(McuError, match=message):
        open_emulated_usb(clock=TickingClock(), fault=fault)


def test_other_firmware_is_reported_but_tolerated() -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        conc, _, _ = open_emulated_usb(clock=TickingClock(), version="V02.01.00")
    assert any(e["event"] == "usb_mcu_firmware_unexpected" for e in logs)
    assert conc.check_version() == 0x10


def test_spi_answer_of_the_wrong_length_is_refused() -> None:
    class ShortAnswers(EmulatedUsbMcu):
        def _spi(self, payload: bytes) -> bytes:
            return super()._spi(payload)[:-1]

    from hal.emulator.chip import Sx1302Emulator
    from hardware.board import get_board

    mcu = ShortAnswers(Sx1302Emulator(board=get_board("emulator")))
    link = open_link(mcu, "short", sleep=lambda _s: None, clock=TickingClock())
    assert link.ping().unique_id == UNIQUE_ID
    with pytest.raises(McuError, match="SPI request failed"):
        link.spi_transfer(bytes((0x00, 0x56, 0x06, 0x00)))


def test_usb_backend_is_configurable_and_doctor_names_a_missing_port(tmp_path: object) -> None:
    from pathlib import Path

    from gateway.config import load_config_text
    from gateway.doctor_hw import concentrator_checks

    config = load_config_text('[concentrator]\nbackend = "sx1302_usb"\n'
                              'usb_device = "/dev/ttyACM-missing"\n',
                              source="test.toml", base_dir=Path(str(tmp_path)))
    assert config.concentrator.usb_device == "/dev/ttyACM-missing"
    [check], eui = concentrator_checks(config)
    assert eui is None and "ttyACM-missing" in check.detail
