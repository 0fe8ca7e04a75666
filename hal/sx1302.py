"""The SX1302 concentrator driver: one code path for the real chip and the emulator.

Only the :class:`~hal.interface.SpiTransport` and the GPIO lines differ between a
Raspberry Pi and a test: this module drives registers, radios and the RX buffer
through real SPI frames either way.

Not yet done (phase 2): AGC/ARB firmware load and handshakes, temperature
compensation of RSSI, GPS. A real chip needs the firmware to demodulate.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from hal.counter import CounterExtender, read_counters
from hal.errors import ChipNotAnsweringError, ChipVersionError, HalError
from hal.interface import OutputLine, SpiTransport
from hal.plan import (
    FSK_CHAIN,
    SERVICE_CHAIN,
    IfChain,
    RadioLayout,
    if_to_reg,
    reg_to_if,
    resolve_plan,
)
from hal.registers import RX_FIFO_ADDR, RX_NB_BYTES_MSB, Registers, tx_field
from hal.rx_record import RxRecord, parse_rx_buffer
from hal.spi import Sx1302Spi
from hal.sx1250 import Sx1250
from hal.timing import BW_CODES, CR_FROM_CODE, decoder_delay_us, fsk_decoder_delay_us
from hal.tx import decode_tx_status, load_and_trigger
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
RESET_STEP_S = 0.1
RADIO_RESET_HOLD_S = 0.5
RADIO_SETTLE_S = 0.01
FREQ_OFFSET_LSB_125K_HZ = 125_000 * 32 / (1 << 6) / (1 << 19)
FSK_RSSI_POLY = (90.636423, 0.420835, 0.007129, -0.000026)
FSK_SNR_DB = 0.0  # the FSK demodulator reports no SNR


class NotStartedError(HalError):
    """receive/send/tx_state called before start() succeeded."""


class Sx1302Concentrator:
    """:class:`hal.interface.Concentrator` for an SX1302 with two SX1250 radios."""

    def __init__(self, spi: SpiTransport, *, reset: OutputLine | None = None,
                 power: OutputLine | None = None, board: BoardProfile | None = None,
                 spi_name: str = "emulator", sleep: Callable[[float], None] = time.sleep) -> None:
        self._transport = spi
        self._spi = Sx1302Spi(spi)
        self._regs = Registers(self._spi)
        self._reset_line = reset
        self._power_line = power
        self.board = board if board is not None else get_board("corecell")
        self.spi_name = spi_name
        self._sleep = sleep
        self.rx_errors = RxErrorCounters()
        self._counter = CounterExtender()
        self._layout: RadioLayout | None = None
        self._last_tx_chain = 0

    # --- bring-up ------------------------------------------------------------------------------
    def start(self, plan: ChannelPlan) -> None:
        layout = resolve_plan(plan)  # refuse a bad plan before touching the hardware
        self._layout = None
        self._hardware_reset()
        self._check_version()
        self._bring_up_radios(layout)
        self._configure_channels(layout)
        self._configure_tx_and_gps()
        self._enable_modems(layout)
        self._counter = CounterExtender()
        self._counter.update(read_counters(self._spi))
        self._layout = layout
        log.info("concentrator_started", spi=self.spi_name, board=self.board.name,
                 radio_centres_hz=list(layout.centres_hz))

    def _hardware_reset(self) -> None:
        """Power on, then pulse the SX1302 reset high then low, 100 ms per step."""
        if self._power_line is not None:
            self._power_line.set(True)
            self._sleep(RESET_STEP_S)
        if self._reset_line is not None:
            self._reset_line.set(True)
            self._sleep(RESET_STEP_S)
            self._reset_line.set(False)
            self._sleep(RESET_STEP_S)

    def _check_version(self) -> None:
        version = self._regs.read("COMMON_VERSION")
        if version == 0x00:
            raise ChipNotAnsweringError(
                f"no answer from the concentrator on {self.spi_name} — check SPI is enabled "
                "and the reset pin")
        if version != CHIP_VERSION:
            raise ChipVersionError(
                f"concentrator on {self.spi_name} reports version 0x{version:02X}, expected "
                f"0x{CHIP_VERSION:02X} (0xFF usually means nothing drives MISO)")

    def _radios(self, layout: RadioLayout) -> list[int]:
        return sorted(set(layout.radios_used) | {self.board.clock_source})

    def _bring_up_radios(self, layout: RadioLayout) -> None:
        """Reset, calibrate the image band, then tune each radio and leave it in RX."""
        radios = self._radios(layout)
        for rf in radios:
            self._reset_radio(rf)
            self._regs.write(f"COMMON_CTRL0_SX1261_MODE_RADIO_{'AB'[rf]}", 1)
        self._select_clock(self.board.clock_source)
        self._regs.write("AGC_MCU_CTRL_FORCE_HOST_FE_CTRL", 1)
        self._regs.write("AGC_MCU_RF_EN_A_PA_EN", 0)
        self._regs.write("AGC_MCU_RF_EN_A_LNA_EN", 0)
        for rf in radios:
            Sx1250(self._spi, rf, self._sleep).calibrate_image(layout.centres_hz[rf])
        self._regs.write("AGC_MCU_CTRL_FORCE_HOST_FE_CTRL", 0)
        for rf in radios:
            self._reset_radio(rf)
            Sx1250(self._spi, rf, self._sleep).setup_rx(layout.centres_hz[rf])
            self._regs.write(f"COMMON_CTRL0_SX1261_MODE_RADIO_{'AB'[rf]}", 1)
        self._select_clock(self.board.clock_source)
        self._regs.write("COMMON_CTRL0_HOST_RADIO_CTRL", 0)

    def _reset_radio(self, rf: int) -> None:
        letter = "AB"[rf]
        self._regs.write("COMMON_CTRL0_CLK32_RIF_CTRL", 0)  # SPI clock while the radio resets
        self._regs.write(f"AGC_MCU_RF_EN_{letter}_RADIO_EN", 1)
        self._regs.write(f"AGC_MCU_RF_EN_{letter}_RADIO_RST", 1)
        self._sleep(RADIO_RESET_HOLD_S)
        self._regs.write(f"AGC_MCU_RF_EN_{letter}_RADIO_RST", 0)
        self._sleep(RADIO_SETTLE_S)
        self._regs.write(f"AGC_MCU_RF_EN_{letter}_RADIO_RST", 1)
        self._sleep(RADIO_SETTLE_S)

    def _select_clock(self, rf: int) -> None:
        self._regs.write("CLK_CTRL_CLK_SEL_CLK_RADIO_A_SEL", int(rf == 0))
        self._regs.write("CLK_CTRL_CLK_SEL_CLK_RADIO_B_SEL", int(rf == 1))
        self._regs.write("CLK_CTRL_CLK_SEL_CLKDIV_EN", 1)
        self._regs.write("COMMON_CTRL0_CLK32_RIF_CTRL", 1)

    def _configure_channels(self, layout: RadioLayout) -> None:
        """Radio selection, IF frequencies, correlators and service/FSK modems."""
        regs = self._regs
        regs.write("RX_TOP_RX_BUFFER_LEGACY_TIMESTAMP", 1)  # stamp at end of packet
        regs.write("GPIO_DIR_L", 0x7F)
        multi = [c for c in layout.chains if c.index < SERVICE_CHAIN]
        regs.write("RX_TOP_RADIO_SELECT", sum(c.rf_chain << c.index for c in multi))
        for c in layout.chains:
            self._write_if(c)
        sf_mask = 0
        for c in multi:
            for sf in c.channel.spreading_factors:
                sf_mask |= 1 << (sf - 5)
        channel_mask = sum(1 << c.index for c in multi)
        regs.write("RX_TOP_CORRELATOR_SF_EN", sf_mask or 0xFF)
        regs.write("RX_TOP_CORR_CLOCK_ENABLE", channel_mask)
        regs.write("RX_TOP_CORRELATOR_EN", channel_mask)
        for prefix in ("SF5", "SF6"):
            regs.write(f"RX_TOP_FRAME_SYNCH0_{prefix}_PEAK1_POS", 2)
            regs.write(f"RX_TOP_FRAME_SYNCH1_{prefix}_PEAK2_POS", 4)
        regs.write("RX_TOP_FRAME_SYNCH0_SF7TO12_PEAK1_POS", 6)  # LoRaWAN public sync word
        regs.write("RX_TOP_FRAME_SYNCH1_SF7TO12_PEAK2_POS", 8)
        service = layout.chain(SERVICE_CHAIN)
        if service is not None:
            sf = service.channel.spreading_factors[0]
            regs.write("SERVICE_RADIO_SELECT", service.rf_chain)
            regs.write("SERVICE_MODEM_SF", sf)
            regs.write("SERVICE_MODEM_BW", BW_CODES[service.channel.bandwidth_hz])
            regs.write("SERVICE_FRAME_SYNCH0_PEAK1_POS", 6 if sf >= 7 else 2)
            regs.write("SERVICE_FRAME_SYNCH1_PEAK2_POS", 8 if sf >= 7 else 4)
            regs.write("SERVICE_MODEM_EN", 1)
        fsk = layout.chain(FSK_CHAIN)
        if fsk is not None:
            regs.write("FSK_RADIO_SELECT", fsk.rf_chain)
            bit_rate = 32_000_000 // fsk.channel.datarate_bps
            regs.write("FSK_BIT_RATE_MSB", (bit_rate >> 8) & 0xFF)
            regs.write("FSK_BIT_RATE_LSB", bit_rate & 0xFF)

    def _write_if(self, chain: IfChain) -> None:
        reg = if_to_reg(chain.if_hz)
        prefix = {SERVICE_CHAIN: "SERVICE_FREQ", FSK_CHAIN: "FSK_FREQ"}.get(
            chain.index, f"RX_TOP_FREQ_{chain.index}")
        self._regs.write(f"{prefix}_MSB", (reg >> 8) & 0x1F)
        self._regs.write(f"{prefix}_LSB", reg & 0xFF)

    def _configure_tx_and_gps(self) -> None:
        for chain in (0, 1):
            self._regs.write(tx_field(chain, "TX_RFFE_IF_CTRL2_PLL_DIV_CTRL_AGC"), 1)
            self._regs.write(tx_field(chain, "TX_RFFE_IF_CTRL_TX_IF_DST"), 1)
            self._regs.write(tx_field(chain, "TX_RFFE_IF_CTRL_TX_MODE"), 1)
            self._regs.write(tx_field(chain, "TX_RFFE_IF_CTRL_TX_CLK_EDGE"), 0)
        self._regs.write("TIMESTAMP_GPS_CTRL_GPS_EN", 1)
        self._regs.write("TIMESTAMP_GPS_CTRL_GPS_POL", 1)

    def _enable_modems(self, layout: RadioLayout) -> None:
        self._regs.write("COMMON_GEN_CONCENTRATOR_MODEM_ENABLE",
                         int(any(c.index < SERVICE_CHAIN for c in layout.chains)))
        self._regs.write("COMMON_GEN_MBWSSF_MODEM_ENABLE",
                         int(layout.chain(SERVICE_CHAIN) is not None))
        self._regs.write("COMMON_GEN_FSK_MODEM_ENABLE", int(layout.chain(FSK_CHAIN) is not None))
        self._regs.write("COMMON_GEN_GLOBAL_EN", 1)

    # --- receive -------------------------------------------------------------------------------
    def _started(self) -> RadioLayout:
        if self._layout is None:
            raise NotStartedError("the concentrator is not started")
        return self._layout

    def _bytes_waiting(self) -> int:
        """The RX buffer fill level, read twice keeping the larger (a torn read reads low)."""
        counts = []
        for _ in range(2):
            raw = self._spi.burst_read(RX_NB_BYTES_MSB, 2)
            counts.append(((raw[0] & 0x1F) << 8) | raw[1])
        return max(counts)

    def receive(self) -> list[RxPacket]:
        layout = self._started()
        waiting = self._bytes_waiting()
        data = self._spi.burst_read(RX_FIFO_ADDR, waiting, fifo=True) if waiting else b""
        self._counter.update(read_counters(self._spi))  # after the fetch: packets predate it
        packets = []
        for record in parse_rx_buffer(data, self.rx_errors):
            packet = self._to_packet(record, layout)
            if packet is not None:
                packets.append(packet)
        return packets

    def _to_packet(self, rec: RxRecord, layout: RadioLayout) -> RxPacket | None:
        chain = layout.chain(rec.if_chain)
        if chain is None:
            self._drop("unconfigured_chain", f"IF chain {rec.if_chain} is not in the plan")
            return None
        if chain.index == FSK_CHAIN:
            return self._fsk_packet(rec, chain)
        code_rate = CR_FROM_CODE.get(rec.coding_rate)
        if code_rate is None:
            self._drop("bad_coding_rate", f"coding rate code {rec.coding_rate}")
            return None
        bw = chain.channel.bandwidth_hz
        delay = decoder_delay_us(rec.spreading_factor, bw, rec.coding_rate, len(rec.payload),
                                 rec.crc_enabled)
        if_error = chain.if_hz - reg_to_if(if_to_reg(chain.if_hz))
        return RxPacket(
            payload=rec.payload, frequency_hz=chain.channel.frequency_hz, if_chain=chain.index,
            rf_chain=chain.rf_chain, modulation=Modulation.LORA,
            spreading_factor=rec.spreading_factor, bandwidth_hz=bw, code_rate=code_rate,
            crc_status=_crc_status(rec), rssi_dbm=rec.rssi_chan_raw + self.board.rssi_offset_db,
            snr_db=rec.snr_raw / 4,
            count_us=(self._counter.expand_packet(rec.timestamp_ticks) - delay) % COUNTER_MODULO,
            freq_offset_hz=rec.freq_offset_raw * FREQ_OFFSET_LSB_125K_HZ * (bw // 125_000)
            + if_error,
            modem_id=rec.modem_id,
        )

    def _fsk_packet(self, rec: RxRecord, chain: IfChain) -> RxPacket:
        raw = float(rec.rssi_chan_raw)
        rssi = sum(k * raw**i for i, k in enumerate(FSK_RSSI_POLY)) + self.board.rssi_offset_db
        delay = fsk_decoder_delay_us(chain.channel.datarate_bps)
        return RxPacket(
            payload=rec.payload, frequency_hz=chain.channel.frequency_hz, if_chain=chain.index,
            rf_chain=chain.rf_chain, modulation=Modulation.FSK, spreading_factor=0,
            bandwidth_hz=chain.channel.bandwidth_hz, code_rate="", crc_status=_crc_status(rec),
            rssi_dbm=rssi, snr_db=FSK_SNR_DB,
            count_us=(self._counter.expand_packet(rec.timestamp_ticks) - delay) % COUNTER_MODULO,
            datarate_bps=chain.channel.datarate_bps, modem_id=rec.modem_id,
        )

    def _drop(self, reason: str, detail: str) -> None:
        self.rx_errors.add(reason)
        log.warning("rx_record_dropped", reason=reason, detail=detail)

    # --- transmit, clock, identity -----------------------------------------------------------
    def send(self, packet: TxPacket) -> None:
        self._started()
        load_and_trigger(self._regs, packet, self.board)
        self._last_tx_chain = packet.rf_chain

    def tx_state(self) -> TxState:
        self._started()
        return decode_tx_status(self._regs.read(tx_field(self._last_tx_chain, "TX_FSM_STATUS")))

    def counter_us(self) -> int:
        inst, _pps = self._counter.update(read_counters(self._spi))
        return inst

    def pps_counter_us(self) -> int:
        """The counter value latched at the last GPS PPS edge (32-bit µs)."""
        _inst, pps = self._counter.update(read_counters(self._spi))
        return pps

    def eui(self) -> bytes:
        """The 8-byte chip EUI from OTP, most significant byte first."""
        out = bytearray()
        for i in range(8):
            self._regs.write("OTP_BYTE_ADDR", i)
            out.append(self._regs.read("OTP_RD_DATA"))
        return bytes(out)

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
        """Stop, then release the SPI device and GPIO lines."""
        try:
            self.stop()
        finally:
            self._transport.close()
            for line in (self._reset_line, self._power_line):
                if line is not None:
                    line.close()


def _crc_status(rec: RxRecord) -> CrcStatus:
    if not rec.crc_enabled:
        return CrcStatus.NO_CRC
    return CrcStatus.BAD_CRC if rec.crc_error else CrcStatus.CRC_OK
