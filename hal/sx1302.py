"""The SX1302 concentrator driver: one code path for the real chip and the emulator.

Only the :class:`~hal.interface.SpiTransport`, the GPIO lines and the I2C bus
differ between a Raspberry Pi and a test: this module drives registers, radios,
firmware and the RX buffer through real SPI frames either way. The bring-up
steps live in :mod:`hal.bringup`, the MCU dialogues in :mod:`hal.mcu`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from hal import bringup
from hal.board_power import BoardLines, hold_in_reset, power_up_and_reset
from hal.counter import CounterExtender, read_counters
from hal.errors import ChipNotAnsweringError, ChipVersionError, HalError, PlanError
from hal.fine_time import FineTimestamper
from hal.firmware import FirmwareImages
from hal.interface import OutputLine, SpiTransport
from hal.lbt import ListenBeforeTalk
from hal.mcu import AGC_SX1250_STEPS, ARB_DOUBLE_DEMOD_ALL_SF, ARB_DOUBLE_DEMOD_OFF, AgcStep, Mcus
from hal.modem_config import configure_receive_path
from hal.plan import FSK_CHAIN, IfChain, RadioLayout, if_to_reg, reg_to_if, resolve_plan
from hal.registers import RX_FIFO_ADDR, RX_NB_BYTES_MSB, Registers, tx_field
from hal.rx_record import RxRecord, parse_rx_buffer
from hal.spi import Sx1302Spi
from hal.timing import (
    CR_FROM_CODE,
    decoder_delay_us,
    fsk_decoder_delay_us,
    precision_timestamp_correction_us,
)
from hal.tx import TX_STATUS_FREE, decode_tx_status, load_and_trigger
from hal.types import (
    COUNTER_MODULO,
    ChannelPlan,
    CrcStatus,
    Modulation,
    RxErrorCounters,
    RxPacket,
    TxPacket,
    TxState,
)
from hardware.board import BoardProfile, get_board

log = structlog.get_logger(__name__)

CHIP_VERSION = 0x10
FREQ_OFFSET_LSB_125K_HZ = 125_000 * 32 / (1 << 6) / (1 << 19)
FSK_RSSI_POLY = (90.636423, 0.420835, 0.007129, -0.000026)
FSK_SNR_DB = 0.0  # the FSK demodulator reports no SNR
NOMINAL_TEMPERATURE_C = 25.0
"""Used for RSSI compensation on boards without a sensor (and when a read fails)."""
TEMPERATURE_MAX_AGE_S = 10.0
COUNTER_WRAP_S = (1 << 27) / 1e6
"""The chip's µs count wraps every 134.2 s; reads further apart than this lose a wrap."""
IDLE_COUNTER_READ_S = 10.0
"""An empty ``receive()`` samples the counter when the last sample is this old (≪ 134 s)."""
TX_ABORT_TIMEOUT_S = 1.0
TX_ABORT_POLL_S = 0.001


class NotStartedError(HalError):
    """receive/send/tx_state called before start() succeeded."""


class TxAbortError(HalError):
    """The TX chain did not come back to FREE after its triggers were cleared."""


class Sx1302Concentrator:
    """:class:`hal.interface.Concentrator` for an SX1302/SX1303 with two SX1250 radios.

    ``firmware`` None skips the AGC/ARB load (the emulator's default: it needs
    none); a real chip always gets the images. ``temperature`` returns °C from the
    board's sensor; without it RSSI is compensated at a nominal 25 °C.
    """

    def __init__(self, spi: SpiTransport, *, reset: OutputLine | None = None,
                 power: OutputLine | None = None, board: BoardProfile | None = None,
                 spi_name: str = "emulator", sleep: Callable[[float], None] = time.sleep,
                 lines: BoardLines | None = None, firmware: FirmwareImages | None = None,
                 temperature: Callable[[], float] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 lbt: ListenBeforeTalk | None = None,
                 sx1261_patch: bytes | None = None) -> None:
        self._transport = spi
        self._spi = Sx1302Spi(spi)
        self._read_rx_fill = self._spi.prepared_read(RX_NB_BYTES_MSB, 2)
        self._regs = Registers(self._spi)
        self._lines = lines if lines is not None else BoardLines(reset=reset, power=power)
        self.board = board if board is not None else get_board("corecell")
        self.spi_name = spi_name
        self._sleep = sleep
        self._clock = clock
        self._firmware = firmware
        self._read_temperature = temperature
        self._temperature: tuple[float, float] | None = None  # (°C, when read)
        self.rx_errors = RxErrorCounters()
        self._counter = CounterExtender()
        self._last_counter_read: float | None = None
        self._layout: RadioLayout | None = None
        self._last_tx_chain = 0
        self.model = "unknown"
        self.lbt = lbt
        """Listen-before-talk on the board's SX1261; None sends without it."""
        self.fine_timestamp = False
        """True once started on an SX1303 whose board profile allows fine timestamps."""
        self._fine = FineTimestamper()
        self._sx1261_patch = sx1261_patch

    # --- bring-up ------------------------------------------------------------------------------
    def check_plan(self, plan: ChannelPlan) -> str | None:
        """Whether the two radios and ten IF chains can receive ``plan``; the reason if not."""
        try:
            resolve_plan(plan)
        except PlanError as exc:
            return str(exc)
        return None

    def start(self, plan: ChannelPlan) -> None:
        layout = resolve_plan(plan)  # refuse a bad plan before touching the hardware
        self._layout = None
        power_up_and_reset(self._lines, self.board, self._sleep)
        self.check_version()
        self.model = bringup.read_model(self._regs)
        bringup.bring_up_radios(self._regs, layout, self.board, self._sleep)
        if self.lbt is not None:
            self._start_sx1261(self.lbt, layout.centres_hz[self.board.tx_radio])
        self.fine_timestamp = self.model == "SX1303" and self.board.fine_timestamp
        self._fine = FineTimestamper()
        configure_receive_path(self._regs, layout, fine_timestamp=self.fine_timestamp)
        bringup.enable_modems(self._regs, layout)
        if self._firmware is not None:
            self._start_mcus(self._firmware)
        bringup.configure_tx_and_gps(self._regs)
        self._counter = CounterExtender()
        self._read_counter()
        self._layout = layout
        log.info("concentrator_started", spi=self.spi_name, board=self.board.name,
                 model=self.model, firmware=self._firmware is not None,
                 radio_centres_hz=list(layout.centres_hz))

    def probe(self) -> int:
        """Power up, reset and read the version, without starting anything (doctor, provision)."""
        power_up_and_reset(self._lines, self.board, self._sleep)
        return self.check_version()

    def check_version(self) -> int:
        """The version register; raises the clear errors an installer needs when it is wrong."""
        version = self._regs.read("COMMON_VERSION")
        if version == 0x00:
            raise ChipNotAnsweringError(
                f"no answer from the concentrator on {self.spi_name} — check SPI is enabled "
                "and the reset pin")
        if version != CHIP_VERSION:
            raise ChipVersionError(
                f"concentrator on {self.spi_name} reports version 0x{version:02X}, expected "
                f"0x{CHIP_VERSION:02X} (0xFF usually means nothing drives MISO)")
        return version

    def _start_mcus(self, images: FirmwareImages) -> None:
        mcus = Mcus(self._regs, self._sleep)
        mcus.load("AGC", images.agc)
        steps = AGC_SX1250_STEPS
        if self.lbt is not None:  # the AGC then checks the SX1261's busy line before each TX
            steps = tuple(AgcStep(s.label.replace("off", "on"), (1,), s.command, s.status)
                          if s.label == "LBT off" else s for s in steps)
        mcus.start_agc(images.agc_version, steps)
        mcus.load("ARB", images.arb)
        mcus.start_arb(images.arb_version, ARB_DOUBLE_DEMOD_ALL_SF if self.fine_timestamp
                       else ARB_DOUBLE_DEMOD_OFF)

    def _start_sx1261(self, lbt: ListenBeforeTalk, centre_hz: int) -> None:
        """The SX1261 patch (without it neither LBT nor scans exist), then its image calibration."""
        if self._sx1261_patch is not None:
            version = lbt.radio.load_patch(self._sx1261_patch)
            log.info("sx1261_patch_loaded", version=version)
        lbt.radio.calibrate_image(centre_hz)

    @property
    def listen_before_talk(self) -> bool:
        return self.lbt is not None

    # --- receive -------------------------------------------------------------------------------
    def _started(self) -> RadioLayout:
        if self._layout is None:
            raise NotStartedError("the concentrator is not started")
        return self._layout

    def _bytes_waiting(self) -> int:
        """The RX buffer fill level (13 bits of a 2-byte register)."""
        raw = self._read_rx_fill()
        return ((raw[0] & 0x1F) << 8) | raw[1]

    def receive(self) -> list[RxPacket]:
        """The packets the chip holds; an empty poll costs one 2-byte register read.

        An empty buffer reads zero once and returns: a torn read reads low, so a zero
        read while a packet lands just defers it to the next poll. The counter is then
        not sampled (the packets need it, nothing else here does), except once every
        ``IDLE_COUNTER_READ_S`` so the 27-bit extension holds even for a caller that
        only ever calls ``receive()``.
        """
        layout = self._layout
        if layout is None:
            raise NotStartedError("the concentrator is not started")
        waiting = self._bytes_waiting()
        if not waiting:
            last = self._last_counter_read
            if last is None or self._clock() - last > IDLE_COUNTER_READ_S:
                self._read_counter()
            return []
        # a torn read reads low: read again, keep the larger (the fetch must not end early)
        waiting = max(waiting, self._bytes_waiting())
        data = self._spi.burst_read(RX_FIFO_ADDR, waiting, fifo=True)
        self._read_counter()  # after the fetch: the packets predate this sample
        packets = []
        rssi_correction = self._rssi_correction_db()  # one temperature for the whole batch
        for record in parse_rx_buffer(data, self.rx_errors):
            packet = self._to_packet(record, layout, rssi_correction)
            if packet is not None:
                packets.append(packet)
        return packets

    def _to_packet(self, rec: RxRecord, layout: RadioLayout,
                   rssi_correction: float) -> RxPacket | None:
        chain = layout.chain(rec.if_chain)
        if chain is None:
            self._drop("unconfigured_chain", f"IF chain {rec.if_chain} is not in the plan")
            return None
        if chain.index == FSK_CHAIN:
            return self._fsk_packet(rec, chain, rssi_correction)
        code_rate = CR_FROM_CODE.get(rec.coding_rate)
        if code_rate is None:
            self._drop("bad_coding_rate", f"coding rate code {rec.coding_rate}")
            return None
        bw = chain.channel.bandwidth_hz
        if self.fine_timestamp:  # precision stamps sit at the end of the header
            delay = -precision_timestamp_correction_us(
                rec.spreading_factor, bw, rec.coding_rate, len(rec.payload), rec.crc_enabled)
        else:
            delay = decoder_delay_us(rec.spreading_factor, bw, rec.coding_rate,
                                     len(rec.payload), rec.crc_enabled)
        if_error = chain.if_hz - reg_to_if(if_to_reg(chain.if_hz))
        freq_offset = rec.freq_offset_raw * FREQ_OFFSET_LSB_125K_HZ * (bw // 125_000) + if_error
        fine = self._fine_time(rec, chain, freq_offset)
        return RxPacket(
            payload=rec.payload, frequency_hz=chain.channel.frequency_hz, if_chain=chain.index,
            rf_chain=chain.rf_chain, modulation=Modulation.LORA,
            spreading_factor=rec.spreading_factor, bandwidth_hz=bw, code_rate=code_rate,
            crc_status=_crc_status(rec), rssi_dbm=rec.rssi_chan_raw + rssi_correction,
            rssi_signal_dbm=rec.rssi_sig_raw + rssi_correction, snr_db=rec.snr_raw / 4,
            count_us=(self._counter.expand_packet(rec.timestamp_ticks) - delay) % COUNTER_MODULO,
            freq_offset_hz=freq_offset, modem_id=rec.modem_id,
            fine_time_ns=None if fine is None else fine[0],
            fine_time_pps_count_us=None if fine is None else fine[1],
        )

    def _fine_time(self, rec: RxRecord, chain: IfChain,
                   freq_offset_hz: float) -> tuple[int, int] | None:
        """(ns since the PPS, that PPS as a 32-bit µs count) for a CRC-good precision stamp."""
        if not (self.fine_timestamp and rec.ts_metrics and rec.timing_set
                and rec.crc_enabled and not rec.crc_error):
            return None
        freq = chain.channel.frequency_hz
        result = self._fine.compute(rec.timestamp_ticks, rec.ts_metrics, rec.spreading_factor,
                                    chain.if_hz, (freq + freq_offset_hz) / freq - 1.0)
        if result is None:
            return None
        return result[0], self._counter.expand_packet(result[1])

    def _fsk_packet(self, rec: RxRecord, chain: IfChain, rssi_correction: float) -> RxPacket:
        raw = float(rec.rssi_chan_raw)
        rssi = sum(k * raw**i for i, k in enumerate(FSK_RSSI_POLY)) + rssi_correction
        # The FSK stamp is early: the reference *adds* 680000/bitrate - 20 µs
        # (``sx1302_parse``, loragw_sx1302.c), unlike the LoRa decoder delay.
        correction = fsk_decoder_delay_us(chain.channel.datarate_bps)
        return RxPacket(
            payload=rec.payload, frequency_hz=chain.channel.frequency_hz, if_chain=chain.index,
            rf_chain=chain.rf_chain, modulation=Modulation.FSK, spreading_factor=0,
            bandwidth_hz=chain.channel.bandwidth_hz, code_rate="", crc_status=_crc_status(rec),
            rssi_dbm=rssi, snr_db=FSK_SNR_DB,
            count_us=(self._counter.expand_packet(rec.timestamp_ticks) + correction)
            % COUNTER_MODULO,
            datarate_bps=chain.channel.datarate_bps, modem_id=rec.modem_id,
        )

    def _drop(self, reason: str, detail: str) -> None:
        self.rx_errors.add(reason)
        log.warning("rx_record_dropped", reason=reason, detail=detail)

    @property
    def has_temperature_sensor(self) -> bool:
        return self._read_temperature is not None

    def read_sensor_c(self) -> float:
        """A fresh sensor reading; raises :class:`HalError` (doctor wants the reason)."""
        if self._read_temperature is None:
            raise HalError(f"board {self.board.name!r} has no temperature sensor")
        return self._read_temperature()

    def temperature_c(self) -> float:
        """Board temperature, read at most every 10 s; nominal 25 °C without a working sensor."""
        now = self._clock()
        if self._temperature is not None and now - self._temperature[1] < TEMPERATURE_MAX_AGE_S:
            return self._temperature[0]
        celsius = NOMINAL_TEMPERATURE_C
        if self._read_temperature is not None:
            try:
                celsius = self._read_temperature()
            except HalError as exc:
                self.rx_errors.add("temperature_read")
                log.warning("temperature_read_failed", error=str(exc))
        self._temperature = (celsius, now)
        return celsius

    def _rssi_correction_db(self) -> float:
        """Board RSSI offset plus the temperature polynomial, as the reference applies them."""
        return self.board.rssi_offset_db + self.board.rssi_temperature_offset_db(
            self.temperature_c())

    # --- transmit, clock, identity -----------------------------------------------------------
    def send(self, packet: TxPacket) -> None:
        self._started()
        if self.lbt is not None:
            self.lbt.arm(packet.frequency_hz)
        load_and_trigger(self._regs, packet, self.board)
        self._last_tx_chain = packet.rf_chain
        if self.lbt is not None:
            self.lbt.verdict(self._regs, packet.rf_chain, packet.frequency_hz)

    def tx_state(self) -> TxState:
        self._started()
        return decode_tx_status(self._regs.read(tx_field(self._last_tx_chain, "TX_FSM_STATUS")))

    def abort_tx(self, rf_chain: int | None = None) -> None:
        """Clear every trigger of the chain and wait (bounded) until its FSM reports FREE."""
        self._started()
        chain = self._last_tx_chain if rf_chain is None else rf_chain
        for name in ("TX_TRIG_IMMEDIATE", "TX_TRIG_DELAYED", "TX_TRIG_GPS"):
            self._regs.write(tx_field(chain, name), 0)
        status = -1
        for _ in range(round(TX_ABORT_TIMEOUT_S / TX_ABORT_POLL_S)):
            status = self._regs.read(tx_field(chain, "TX_FSM_STATUS"))
            if status == TX_STATUS_FREE:
                return
            self._sleep(TX_ABORT_POLL_S)
        raise TxAbortError(f"TX chain {chain} still reports status 0x{status:02X} "
                           f"{TX_ABORT_TIMEOUT_S:g} s after abort")

    def _read_counter(self) -> tuple[int, int]:
        """One counter sample; warns when reads were too far apart to have seen every wrap."""
        now = self._clock()
        if self._last_counter_read is not None and now - self._last_counter_read > COUNTER_WRAP_S:
            self.rx_errors.add("counter_read_gap")
            log.error("counter_read_gap", seconds=round(now - self._last_counter_read, 1),
                      limit_s=round(COUNTER_WRAP_S, 1))
        self._last_counter_read = now
        sample = read_counters(self._spi)
        self._fine.observe_pps(sample.pps_ticks)
        return self._counter.update(sample)

    def counter_us(self) -> int:
        inst, _pps = self._read_counter()
        return inst

    def pps_counter_us(self) -> int:
        """The counter value latched at the last GPS PPS edge (32-bit µs)."""
        _inst, pps = self._read_counter()
        return pps

    def eui(self) -> bytes:
        """The 8-byte chip EUI from OTP, most significant byte first."""
        return bringup.read_eui(self._regs)

    def read_model(self) -> str:
        """"SX1302" or "SX1303" (fine timestamps exist only on the SX1303)."""
        self.model = bringup.read_model(self._regs)
        return self.model

    def stop(self) -> None:
        """Stop receiving and hold the radios in reset; the chip can be started again."""
        if self._layout is None:
            return
        self._layout = None
        for name in ("COMMON_GEN_GLOBAL_EN", "COMMON_GEN_CONCENTRATOR_MODEM_ENABLE",
                     "COMMON_GEN_MBWSSF_MODEM_ENABLE", "COMMON_GEN_FSK_MODEM_ENABLE"):
            self._regs.write(name, 0)
        for letter in "AB":
            self._regs.write(f"AGC_MCU_RF_EN_{letter}_RADIO_RST", 0)
        log.info("concentrator_stopped", spi=self.spi_name)

    def close(self) -> None:
        """Stop, hold the board in reset, then release the SPI device and GPIO lines."""
        try:
            self.stop()
        finally:
            try:
                hold_in_reset(self._lines, self.board)
            finally:
                self._transport.close()
                self._lines.close()


def _crc_status(rec: RxRecord) -> CrcStatus:
    if not rec.crc_enabled:
        return CrcStatus.NO_CRC
    return CrcStatus.BAD_CRC if rec.crc_error else CrcStatus.CRC_OK
