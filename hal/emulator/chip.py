"""``Sx1302Emulator``: an SX1302 with two SX1250s, behind the :class:`SpiTransport` protocol.

It decodes the same SPI frames a chip would (mux byte, write flag, dummy byte,
bursts, FIFO reads at a fixed address), keeps a register file with the chip's reset
values, answers radio commands through the mux, and fills its RX buffer with
records in the chip's own format when a test or the demo "transmits" a packet
with :meth:`Sx1302Emulator.inject`. Its 32 MHz counter runs on an injectable
clock, so tests control time.

``inject`` is called from other threads than ``transfer``; one lock guards all
state. An air source (:meth:`Sx1302Emulator.set_air`, see :mod:`hal.emulator.air`)
instead hands frames in from the thread that reads the chip, at its fill-level reads.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable

import structlog

from hal.emulator.air import AirSource
from hal.emulator.fine_time import METRIC_PAIRS, FineTimeModel
from hal.emulator.mcu import McuPair
from hal.emulator.peripherals import Stts751Emulator
from hal.emulator.radio import RadioEmulator
from hal.emulator.records import RecordFields, encode_record
from hal.emulator.reset_image import CHIP_RESET_OVERRIDES
from hal.emulator.sx1261 import Sx1261Emulator
from hal.emulator.transmit import TRIGGER_BITS, TxChainEmulator, TxLogEntry
from hal.plan import reg_to_if
from hal.registers import (
    FIELDS,
    IF_FREQ_FSK,
    IF_FREQ_MULTI_SF,
    IF_FREQ_SERVICE,
    RX_FIFO_ADDR,
    RX_NB_BYTES_MSB,
    TIMESTAMP_BLOCK,
    TX_BASE,
    TX_PAYLOAD_ADDR,
    reset_bytes,
)
from hal.rx_record import MIN_RECORD
from hal.spi import MUX_RADIO_A, MUX_RADIO_B, MUX_SX1302, WRITE_FLAG
from hal.timing import BW_CODES, BW_FROM_CODE, CR_CODES, decoder_delay_us, fsk_decoder_delay_us
from hardware.board import BoardProfile, get_board

log = structlog.get_logger(__name__)

TICK_HZ = 32_000_000
TICKS_PER_US = 32
COUNTER_TICKS = 1 << 32
FIFO_CAPACITY = 4096
DEFAULT_EUI = bytes.fromhex("0016c001ff1e0001")
OTP_SIZE = 256
OTP_MODEL_ID = 0xD0
MODEL_SX1302 = 0x00
MODEL_SX1303 = 0x03
FIRMWARE_RAM_END = 0x4000
MEMORY_SIZE = 0x8000
FREQ_OFFSET_LSB_125K_HZ = 125_000 * 32 / (1 << 6) / (1 << 19)
SERVICE_MODEM_ID = 16
FSK_MODEM_ID = 17
FSK_CHAIN = 9
FSK_BIT_RATE = 0x5B5B  # RX FSK bit rate, 32 MHz / bit/s, big-endian (two bytes)
FSK_RSSI_POLY = (90.636423, 0.420835, 0.007129, -0.000026)
"""The driver linearises the FSK RSSI byte with this cubic (``sx1302_parse``)."""
GPIO_DIR, GPIO_OUT = 0x5641, 0x5643
AGC_STATUS, AGC_MAILBOX_WR_0 = 0x5781, 0x578C
LEGACY_TS, TS_ENABLE = 0x58C0, 0x58B3
LBT_CLEAR = 0xFF
RF_EN = (0x5783, 0x5784)  # bit 3 radio reset (active low), bit 2 radio enable
TX_FSM_STATUS_OFFSET = 17
OTP_ADDR, OTP_DATA = 0x6180, 0x6181
COMMON_GEN = 0x5605
_RX_FILL_READ = bytes((MUX_SX1302, RX_NB_BYTES_MSB >> 8, RX_NB_BYTES_MSB & 0xFF, 0, 0, 0))
"""The read of the RX fill level the driver makes at every poll, as it comes over SPI."""

_COMPUTED = tuple(sorted({*range(TIMESTAMP_BLOCK, TIMESTAMP_BLOCK + 8), RX_NB_BYTES_MSB,
                          RX_NB_BYTES_MSB + 1, OTP_DATA,
                          *(base + TX_FSM_STATUS_OFFSET for base in TX_BASE)}))
"""Addresses whose read value is computed (counters, fill level, OTP, TX state); every
other address reads straight from the register file."""

_READ_ONLY = frozenset(
    f.address for f in FIELDS.values()
    if all(g.read_only for g in FIELDS.values() if g.address == f.address))


class Sx1302Emulator:
    """An emulated concentrator; see the module docstring. Fault switches are plain attributes."""

    def __init__(self, *, eui: bytes = DEFAULT_EUI, clock: Callable[[], float] = time.monotonic,
                 counter_start_ticks: int = 0, board: BoardProfile | None = None,
                 record_transcript: bool = False, fifo_capacity: int = FIFO_CAPACITY,
                 model_id: int = MODEL_SX1302, expected_firmware: tuple[bytes, bytes] | None = None,
                 require_firmware: bool = False) -> None:
        if len(eui) != 8:
            raise ValueError("the EUI is 8 bytes")
        if not 0 <= counter_start_ticks < COUNTER_TICKS:
            raise ValueError("counter_start_ticks must fit the 32-bit counter")
        self._lock = threading.RLock()
        self._clock = clock
        self._t0 = clock()
        self._start_ticks = counter_start_ticks
        self.board = board if board is not None else get_board("corecell")
        self._mem = bytearray(MEMORY_SIZE)
        for address, value in reset_bytes().items():
            self._mem[address] = value
        for address, value in CHIP_RESET_OVERRIDES.items():
            self._mem[address] = value
        self._config_gen = 0
        """Bumped by every register write and radio command: what a cached chain match
        was computed from may have changed."""
        self._chain_cache: dict[tuple[int, int, int], tuple[int, float] | None] = {}
        self._chain_cache_gen = -1
        self._otp = bytearray(OTP_SIZE)
        self._otp[0:8] = eui
        self._otp[OTP_MODEL_ID] = model_id
        self.mcus = McuPair()
        if expected_firmware is not None:
            self.mcus.expected = {"AGC": expected_firmware[0], "ARB": expected_firmware[1]}
        self.require_firmware = require_firmware
        self.sensor = Stts751Emulator()
        """The board's temperature sensor; its temperature also shapes the RSSI the chip reports."""
        """When set, nothing is demodulated until both MCUs have been started (as on a chip)."""
        self._fifo = bytearray()
        self.fifo_capacity = fifo_capacity
        self.fifo_overflows = 0
        self.radios = (RadioEmulator(), RadioEmulator())
        self._tx = (TxChainEmulator(0, self.board), TxChainEmulator(1, self.board))
        self.tx_log: list[TxLogEntry] = []
        self._pps_ticks = 0
        self._modem_rr = 0
        self.transcript: list[tuple[bytes, bytes]] | None = [] if record_transcript else None
        self.sx1261: Sx1261Emulator | None = None
        """The LBT radio whose busy line reaches GPIO 7; set by ``open_emulated``."""
        self.lbt_blocked: list[tuple[int, int]] = []
        """(chain, µs counter) of every TX the AGC refused because LBT saw a busy channel."""
        self._lbt_pending = False
        self.model_id = model_id
        self.fine = FineTimeModel()
        """SX1303 precision stamps: metrics per frame, and the true fine times for tests."""
        self._air: AirSource | None = None
        self._air_read_at = 0.0  # the last fill read that asked the air (``_release_air``)
        self.air_cpu_ns = 0
        """CPU time this thread spent taking frames from the air source into the RX buffer:
        work a real chip does without the host, which benchmarks report apart."""
        # fault modes
        self.no_answer = False
        self._corrupt_next = False
        self._truncate_next = False

    # --- time ----------------------------------------------------------------------------------
    def ticks(self) -> int:
        """Unwrapped 32 MHz ticks since the counter started (the chip shows them mod 2^32)."""
        with self._lock:
            return int((self._clock() - self._t0) * TICK_HZ) + self._start_ticks

    def counter_us(self) -> int:
        """The 32-bit µs count a driver that has kept up with every wrap would report."""
        return (self.ticks() // TICKS_PER_US) % COUNTER_TICKS

    def pps(self, at_ticks: int | None = None) -> None:
        """A GPS PPS edge: latch the counter and fire any TX armed on PPS.

        ``at_ticks`` places the edge exactly (a real PPS is accurate to tens of ns;
        a caller polling the host clock is late by a poll interval).
        """
        with self._lock:
            now = self.ticks() if at_ticks is None else at_ticks
            self._pps_ticks = now % COUNTER_TICKS
            for chain in self._tx:
                entry = chain.pps(now)
                if entry is not None:
                    self.tx_log.append(entry)

    # --- fault switches --------------------------------------------------------------------------
    def corrupt_next_record(self) -> None:
        """The next injected record gets a payload byte flipped after its checksum is computed."""
        with self._lock:
            self._corrupt_next = True

    def truncate_next_record(self) -> None:
        """The next injected record loses its last bytes (a partial write into the buffer)."""
        with self._lock:
            self._truncate_next = True

    @property
    def stuck_tx(self) -> bool:
        return self._tx[0].stuck

    @stuck_tx.setter
    def stuck_tx(self, value: bool) -> None:
        with self._lock:
            for chain in self._tx:
                chain.stuck = value

    # --- SPI -----------------------------------------------------------------------------------
    def transfer(self, data: bytes) -> bytes:
        if data == _RX_FILL_READ:
            air = self._air
            if air is not None and not self.no_answer:
                started = time.thread_time_ns()
                self._release_air(air)
                self.air_cpu_ns += time.thread_time_ns() - started
            if self.transcript is None and not self.no_answer:
                # the idle poll's read, 100 times a second: one len() of the FIFO, atomic
                # under the GIL, answers it; the lock and the general path cost more
                waiting = len(self._fifo)
                return bytes((0, 0, 0, 0, (waiting >> 8) & 0x1F, waiting & 0xFF))
        with self._lock:
            reply = bytes(len(data)) if self.no_answer else self._transfer(bytes(data))
            if self.transcript is not None:
                self.transcript.append((bytes(data), reply))
            return reply

    def close(self) -> None:
        """Nothing to release; present for the transport protocol."""

    def _transfer(self, data: bytes) -> bytes:
        if not data:
            return b""
        if data[0] in (MUX_RADIO_A, MUX_RADIO_B):
            self._config_gen += 1
            return self.radios[data[0] - MUX_RADIO_A].transfer(data)
        if data[0] != MUX_SX1302 or len(data) < 3:
            return bytes(len(data))
        address = ((data[1] & 0x7F) << 8) | data[2]
        if data[1] & WRITE_FLAG:
            self._config_gen += 1
            now = self.ticks()
            for i, value in enumerate(data[3:]):
                self._write_byte(address + i, value, now)
            return bytes(len(data))
        count = len(data) - 4
        if count <= 0:
            return bytes(len(data))
        if address == RX_FIFO_ADDR:
            return bytes(4) + self._pop_fifo(count)
        return bytes(4) + self._read_bytes(address, count)

    def _read_bytes(self, address: int, count: int) -> bytes:
        """A burst read, answered whole where it can be: one slice of the register file
        unless it covers computed bytes, the counter block built once, and the clock read
        only when a computed byte needs it."""
        end = address + count
        first = bisect_left(_COMPUTED, address)
        if end <= MEMORY_SIZE and (first == len(_COMPUTED) or _COMPUTED[first] >= end):
            return bytes(self._mem[address:end])
        now = self.ticks()
        if address >= TIMESTAMP_BLOCK and end <= TIMESTAMP_BLOCK + 8:
            return self._timestamp_block(now)[address - TIMESTAMP_BLOCK:end - TIMESTAMP_BLOCK]
        return bytes(self._read_byte(a, now) for a in range(address, end))

    def _timestamp_block(self, now: int) -> bytes:
        """PPS-latched then free-running counter, big-endian, as the block reads."""
        return self._pps_ticks.to_bytes(4, "big") + (now % COUNTER_TICKS).to_bytes(4, "big")

    def _pop_fifo(self, count: int) -> bytes:
        out = bytes(self._fifo[:count])
        del self._fifo[:count]
        return out + bytes(count - len(out))

    def _read_byte(self, address: int, now: int) -> int:
        if address >= MEMORY_SIZE:
            return 0
        if TIMESTAMP_BLOCK <= address < TIMESTAMP_BLOCK + 8:
            return self._timestamp_block(now)[address - TIMESTAMP_BLOCK]
        if address == RX_NB_BYTES_MSB:
            return (len(self._fifo) >> 8) & 0x1F
        if address == RX_NB_BYTES_MSB + 1:
            return len(self._fifo) & 0xFF
        if address == OTP_DATA:
            return self._otp[self._mem[OTP_ADDR]]
        for chain, base in enumerate(TX_BASE):
            if address == base + TX_FSM_STATUS_OFFSET:
                return self._tx[chain].status(now)
        return self._mem[address]

    def _write_byte(self, address: int, value: int, now: int) -> None:
        if address >= MEMORY_SIZE or address in _READ_ONLY:
            return
        if address < FIRMWARE_RAM_END:
            self.mcus.check_ram_write(address, self._mem)
        for chain, base in enumerate(TX_PAYLOAD_ADDR):
            if base <= address < base + 0x100 and not self._mem[TX_BASE[chain] + 7] & 1:
                return  # the TX buffer only takes data between WRITE_BUFFER=1 and 0
        previous = self._mem[address]
        self._mem[address] = value
        if address in RF_EN:
            self._update_radio(RF_EN.index(address), value)
        if address == AGC_MAILBOX_WR_0 and value == LBT_CLEAR and self._lbt_pending:
            self._mem[AGC_STATUS] = 0  # the host acknowledged the LBT verdict
            self._lbt_pending = False
        self.mcus.on_write(address, previous, value, self._mem)
        for chain, base in enumerate(TX_BASE):
            if address == base:
                self._trigger(chain, previous, value, now)

    def _update_radio(self, rf: int, value: int) -> None:
        radio = self.radios[rf]
        running = bool(value & 0x04) and bool(value & 0x08)
        if not value & 0x08:
            radio.reset()
        radio.enabled = running

    def _trigger(self, chain: int, previous: int, value: int, now: int) -> None:
        for bit, timing in TRIGGER_BITS.items():
            rose = value >> bit & 1 and not previous >> bit & 1
            fell = previous >> bit & 1 and not value >> bit & 1
            if fell:
                self._tx[chain].cancel(now)
            if rose and self._lbt_refuses(chain, now):
                continue
            if rose:
                entry = self._tx[chain].arm(self._mem, timing, now)
                if entry is not None:
                    self.tx_log.append(entry)
                    log.debug("emulator_tx", chain=chain, count_us=entry.start_count_us)

    def _lbt_refuses(self, chain: int, now: int) -> bool:
        """The AGC's LBT check at TX start (modelled at the trigger): the verdict goes to
        its status register, bit ``chain`` "started", bit ``6 + chain`` "not allowed"."""
        lbt = self.sx1261
        if lbt is None or not lbt.lbt_armed:
            return False
        blocked = lbt.busy_line()
        self._mem[AGC_STATUS] = (1 << chain) | (int(blocked) << (6 + chain))
        self._lbt_pending = True
        if blocked:
            self.lbt_blocked.append((chain, (now // TICKS_PER_US) % COUNTER_TICKS))
            log.debug("emulator_lbt_blocked", chain=chain)
        return blocked

    # --- what the driver configured --------------------------------------------------------------
    def _if_hz(self, address: int) -> float:
        return reg_to_if(((self._mem[address] & 0x1F) << 8) | self._mem[address + 1])

    def radio_centres_hz(self) -> tuple[float | None, float | None]:
        with self._lock:
            return self.radios[0].centre_hz, self.radios[1].centre_hz

    def channel_frequencies(self) -> dict[int, float]:
        """Frequency of every enabled IF chain, from the radio and IF registers."""
        with self._lock:
            out: dict[int, float] = {}
            for index, address, radio in self._chains():
                centre = self.radios[radio].centre_hz
                if centre is not None:
                    out[index] = centre + self._if_hz(address)
            return out

    def _chains(self) -> list[tuple[int, int, int]]:
        """(IF chain, IF register address, radio) of every enabled receive chain."""
        gen = self._mem[COMMON_GEN]
        chains: list[tuple[int, int, int]] = []
        if not gen & 0x08:
            return chains
        if gen & 0x02:
            enabled, select = self._mem[0x5821], self._mem[0x5810]
            chains += [(i, IF_FREQ_MULTI_SF + 2 * i, select >> i & 1)
                       for i in range(8) if enabled >> i & 1]
        if gen & 0x01 and self._mem[0x5B22] & 0x08:
            chains.append((8, IF_FREQ_SERVICE, self._mem[0x5B02] & 1))
        if gen & 0x04:
            chains.append((9, IF_FREQ_FSK, self._mem[0x5B54] >> 1 & 1))
        return chains

    def _hears_public_sync_word(self, index: int, sf: int) -> bool:
        """Injected frames are LoRaWAN's (public sync word 0x34); a correlator set to
        other peak positions (a forgotten sync-word step, a private network) misses them."""
        if sf < 7:
            return True  # SF5/SF6 have a single sync word
        address = 0x588E if index < 8 else 0x5B2E
        return (self._mem[address] & 0x1F, self._mem[address + 1] & 0x1F) == (6, 8)

    def _listens(self, index: int, sf: int, bw_hz: int) -> bool:
        if not self._hears_public_sync_word(index, sf):
            return False
        if index < 8:
            return bw_hz == 125_000 and bool(self._mem[0x5822] >> (sf - 5) & 1)
        if index == 8:
            svc = self._mem[0x5B21]
            return BW_FROM_CODE.get(svc >> 4) == bw_hz and svc & 0x0F == sf
        return False  # FSK frames go through inject_fsk

    def _match_chain(self, frequency_hz: int, sf: int, bw_hz: int) -> tuple[int, float] | None:
        """The IF chain that would demodulate this frame, and that chain's frequency.

        Remembered per (frequency, SF, bandwidth) until the next register write or radio
        command: a flood of injected frames would otherwise walk every chain's registers
        for each one."""
        if self._chain_cache_gen != self._config_gen:
            self._chain_cache.clear()
            self._chain_cache_gen = self._config_gen
        key = (frequency_hz, sf, bw_hz)
        if key in self._chain_cache:
            return self._chain_cache[key]
        match = self._find_chain(frequency_hz, sf, bw_hz)
        if len(self._chain_cache) < 256:
            self._chain_cache[key] = match
        return match

    def _find_chain(self, frequency_hz: int, sf: int, bw_hz: int) -> tuple[int, float] | None:
        for index, address, radio in self._chains():
            centre = self.radios[radio].centre_hz
            if centre is None or not self._listens(index, sf, bw_hz):
                continue
            channel = centre + self._if_hz(address)
            if abs(frequency_hz - channel) <= bw_hz / 4:
                return index, channel
        return None

    # --- the air ---------------------------------------------------------------------------------
    def set_air(self, source: AirSource | None) -> AirSource | None:
        """Attach an air source (None detaches; returns the one replaced): every read of the
        RX fill level first takes in its due frames. The old source is asked nothing more
        once this returns (a release in progress holds the lock)."""
        with self._lock:
            previous, self._air = self._air, source
            self._air_read_at = self._clock()
            return previous

    def _release_air(self, air: AirSource) -> None:
        """At a fill read: the frames whose time has come go into the RX buffer while it
        has room; the rest stay in the source for a later read.

        Each frame is stamped at its due time, not at this read: a chip stamps a frame
        when it is demodulated, whenever the host happens to poll, so stamping at the
        read would bunch every frame of a poll on one count and tie the stamps to the
        host's cadence. A frame that had to wait for room is stamped no earlier than the
        previous fill read: until the fetch after that read the buffer was full, so
        that is the earliest moment a chip could have taken it in (stamps stay in order)."""
        with self._lock:
            now = self._clock()
            floor, self._air_read_at = self._air_read_at, now
            metrics = 2 * METRIC_PAIRS if self._precision_stamps() else 0
            while (due := air.next_due(now)) is not None:
                at, frame = due
                payload = frame.phy_payload
                if len(self._fifo) + MIN_RECORD + len(payload) + metrics > self.fifo_capacity:
                    return  # full: the rest waits, as frames wait on a busy inject socket
                if frame.fault == "truncate_record":
                    self._truncate_next = True
                elif frame.fault == "corrupt_record":
                    self._corrupt_next = True
                heard = self.inject(
                    payload, frequency_hz=frame.frequency_hz, sf=frame.sf, bw_hz=frame.bw_hz,
                    cr=frame.cr, rssi_dbm=frame.rssi_dbm, snr_db=frame.snr_db,
                    crc_ok=frame.crc_ok,
                    at_ticks=int((max(at, floor) - self._t0) * TICK_HZ) + self._start_ticks)
                air.taken(heard is not None)

    def rx_fifo_has_room(self, payload_len: int) -> bool:
        with self._lock:
            return len(self._fifo) + MIN_RECORD + payload_len <= self.fifo_capacity

    def inject(self, payload: bytes, *, frequency_hz: int, sf: int, bw_hz: int, cr: str = "4/5",
               rssi_dbm: float, snr_db: float, crc_ok: bool = True,
               at_ticks: int | None = None) -> int | None:
        """A LoRa frame arriving now (or ending at ``at_ticks``, unwrapped 32 MHz ticks, not
        in the future); returns its end-of-frame counter µs, or None if unheard.

        The chip stamps a frame when its decoder finishes, a model-computed delay after
        the frame ends on air; the returned value is the end of the frame, which is
        what the driver reports after removing that delay. None means no enabled
        channel matches (frequency, SF, bandwidth) or the RX buffer is full.
        """
        if not 5 <= sf <= 12 or bw_hz not in BW_CODES or cr not in CR_CODES:
            raise ValueError(f"not a LoRa frame the SX1302 receives: SF{sf} {bw_hz} Hz {cr}")
        if len(payload) > 255:
            raise ValueError("payload longer than 255 bytes")
        with self._lock:
            match = self._match_chain(frequency_hz, sf, bw_hz)
            if match is None or (self.require_firmware and not self.mcus.running):
                return None
            index, channel = match
            now = self.ticks() if at_ticks is None else at_ticks
            stamp, metrics = now, b""
            precision = self._precision_stamps()
            if precision:
                stamp, metrics = self.fine.frame(
                    end_ticks=now, pps_ticks=self._pps_ticks, sf=sf, bw_hz=bw_hz,
                    cr=CR_CODES[cr], size=len(payload),
                    if_hz=channel - (self.radios[self._radio_of(index)].centre_hz or channel),
                    freq_error=(frequency_hz - channel) / channel)
                if not crc_ok:  # no fine time for a corrupted frame
                    metrics = b""
                    self.fine.true_fine_ns.pop()
            correction = self._rssi_correction_db()
            record = encode_record(RecordFields(
                payload=bytes(payload), if_chain=index, spreading_factor=sf,
                coding_rate=CR_CODES[cr], modem_id=self._modem_for(index, sf),
                timestamp_ticks=stamp, ts_metrics=metrics, timing_set=bool(metrics),
                rssi_raw=round(rssi_dbm - correction),
                rssi_sig_raw=round(signal_rssi_dbm(rssi_dbm, snr_db) - correction),
                snr_raw=round(snr_db * 4), crc_ok=crc_ok,
                freq_offset_raw=round((frequency_hz - channel)
                                      / (FREQ_OFFSET_LSB_125K_HZ * bw_hz / 125_000)),
            ))
            record = self._apply_faults(record)
            if len(self._fifo) + len(record) > self.fifo_capacity:
                self.fifo_overflows += 1
                log.warning("emulator_rx_fifo_overflow", dropped_payload=len(payload))
                return None
            self._fifo += record
            if precision:  # precision stamp: "now" is the end of the frame itself
                return (now // TICKS_PER_US) % COUNTER_TICKS
            delay = decoder_delay_us(sf, bw_hz, CR_CODES[cr], len(payload), True)
            return (now // TICKS_PER_US - delay) % COUNTER_TICKS

    def inject_fsk(self, payload: bytes, *, frequency_hz: int, datarate_bps: int,
                   rssi_dbm: float, crc_ok: bool = True) -> int | None:
        """An FSK frame arriving now; returns its end-of-frame counter µs, or None if unheard.

        The FSK demodulator's stamp is off the end of the frame by
        680000/bitrate - 20 µs (the correction ``sx1302_parse`` adds to it): the
        record is stamped now and the returned end is now plus that correction.
        The frame is heard when the FSK chain is enabled, its frequency is within a
        quarter of 125 kHz of the chain's and the bit rate register matches.
        """
        if len(payload) > 255 or datarate_bps <= 0:
            raise ValueError("FSK payload up to 255 bytes and a positive bit rate")
        with self._lock:
            chain = self._fsk_chain_hz()
            bit_rate = int.from_bytes(self._mem[FSK_BIT_RATE:FSK_BIT_RATE + 2], "big")
            if (chain is None or abs(frequency_hz - chain) > 125_000 / 4
                    or bit_rate != TICK_HZ // datarate_bps
                    or (self.require_firmware and not self.mcus.running)):
                return None
            now = self.ticks()
            early_us = fsk_decoder_delay_us(datarate_bps)
            raw = _fsk_rssi_raw(rssi_dbm - self._rssi_correction_db())
            record = encode_record(RecordFields(
                payload=bytes(payload), if_chain=FSK_CHAIN, spreading_factor=0, coding_rate=0,
                modem_id=FSK_MODEM_ID, timestamp_ticks=now,
                rssi_raw=raw, rssi_sig_raw=raw, snr_raw=0, crc_ok=crc_ok))
            record = self._apply_faults(record)
            if len(self._fifo) + len(record) > self.fifo_capacity:
                self.fifo_overflows += 1
                log.warning("emulator_rx_fifo_overflow", dropped_payload=len(payload))
                return None
            self._fifo += record
            return (now // TICKS_PER_US + early_us) % COUNTER_TICKS

    def _precision_stamps(self) -> bool:
        """SX1303 in precision mode: legacy stamping off and the timestamp block enabled."""
        return (self.model_id == MODEL_SX1303 and not self._mem[LEGACY_TS] & 0x04
                and bool(self._mem[TS_ENABLE] & 0x08))

    def _radio_of(self, index: int) -> int:
        return next((radio for i, _a, radio in self._chains() if i == index), 0)

    def _fsk_chain_hz(self) -> float | None:
        for index, address, radio in self._chains():
            centre = self.radios[radio].centre_hz
            if index == FSK_CHAIN and centre is not None:
                return centre + self._if_hz(address)
        return None

    def gpio_outputs(self) -> dict[int, bool]:
        """Level of each SX1302 GPIO the driver set as an output (board LEDs, status lines)."""
        with self._lock:
            direction, level = self._mem[GPIO_DIR], self._mem[GPIO_OUT]
            return {pin: bool(level >> pin & 1) for pin in range(8) if direction >> pin & 1}

    def _rssi_correction_db(self) -> float:
        """What the driver will add to the raw RSSI byte (offset and temperature term)."""
        return self.board.rssi_offset_db + self.board.rssi_temperature_offset_db(
            self.sensor.celsius)

    def _modem_for(self, index: int, sf: int) -> int:
        if index == 8:
            return SERVICE_MODEM_ID
        self._modem_rr = (self._modem_rr + 1) % 16
        return self._modem_rr % 8 if sf >= 11 else self._modem_rr  # SF11/12: first 8 only

    def _apply_faults(self, record: bytes) -> bytes:
        if self._corrupt_next:
            self._corrupt_next = False
            flipped = bytearray(record)
            flipped[9 if record[2] else 3] ^= 0x01
            return bytes(flipped)
        if self._truncate_next:
            self._truncate_next = False
            return record[: max(3, len(record) - 5)]
        return record


def signal_rssi_dbm(channel_rssi_dbm: float, snr_db: float) -> float:
    """The frame's own power: the channel power holds signal plus noise, so at low SNR
    the signal is well below it (channel = signal · (1 + 1/SNR) in linear units)."""
    return channel_rssi_dbm - 10 * math.log10(1 + 10 ** (-snr_db / 10))


def _fsk_rssi_raw(target_db: float) -> int:
    """The RSSI byte whose linearised value (the driver's cubic) is closest to ``target_db``."""
    def value(raw: int) -> float:
        return float(sum(k * float(raw) ** i for i, k in enumerate(FSK_RSSI_POLY)))
    return min(range(256), key=lambda raw: abs(value(raw) - target_db))
