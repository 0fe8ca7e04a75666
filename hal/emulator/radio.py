"""An SX1250 as seen through the SX1302 mux: mode, tuned frequency, written registers."""

from __future__ import annotations

from hal import sx1250 as cmd


class RadioEmulator:
    """Answers only while enabled and out of reset, like the real radio behind the mux."""

    def __init__(self) -> None:
        self.enabled = False
        self.image_calibrations: list[bytes] = []
        """Every CalibrateImage band received, kept across resets (for observation)."""
        self.reset()

    def reset(self) -> None:
        self.mode = cmd.MODE_STANDBY_RC
        self.freq_reg: int | None = None
        self.image_band: bytes | None = None
        self.registers: dict[int, int] = {}

    @property
    def status(self) -> int:
        return self.mode << 4

    @property
    def centre_hz(self) -> float | None:
        """The frequency the radio listens on, or None when it is not receiving."""
        if self.mode != cmd.MODE_RX or self.freq_reg is None:
            return None
        return cmd.reg_to_freq(self.freq_reg)

    def transfer(self, frame: bytes) -> bytes:
        """Execute ``mux, opcode, params...``; the answer fills the parameter positions."""
        reply = bytearray(len(frame))
        if not self.enabled or len(frame) < 2:
            return bytes(reply)
        opcode, params = frame[1], frame[2:]
        reply[1] = self.status
        if opcode == cmd.GET_STATUS:
            reply[2:] = bytes((self.status,)) * len(params)
        elif opcode == cmd.SET_STANDBY and params:
            self.mode = cmd.MODE_STANDBY_XOSC if params[0] == cmd.STANDBY_XOSC else \
                cmd.MODE_STANDBY_RC
        elif opcode == cmd.SET_RF_FREQUENCY and len(params) >= 4:
            self.freq_reg = int.from_bytes(params[:4], "big")
        elif opcode == cmd.SET_RX:
            self.mode = cmd.MODE_RX
        elif opcode == cmd.CALIBRATE_IMAGE and len(params) >= 2:
            self.image_band = bytes(params[:2])
            self.image_calibrations.append(self.image_band)
        elif opcode == cmd.WRITE_REGISTER and len(params) >= 3:
            address = int.from_bytes(params[:2], "big")
            for i, value in enumerate(params[2:]):
                self.registers[address + i] = value
        return bytes(reply)
