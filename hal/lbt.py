"""Listen-before-talk around one transmission, the way the reference HAL does it.

The sequence (``lgw_send``, loragw_hal.c; ``lgw_lbt_start``/``lgw_lbt_tx_status``,
loragw_lbt.c):

1. tune the SX1261 to the TX frequency and arm its LBT scan (threshold, samples
   per window), then wait one scan window so the busy line is meaningful;
2. load and trigger the packet on the SX1302 as usual;
3. the AGC firmware checks the busy line (SX1302 GPIO 7) when the TX starts and
   reports in its status register: bit ``rf_chain`` "TX initiated", bit
   ``6 + rf_chain`` "not allowed" (the channel was busy, nothing was sent);
4. the host clears that status (mailbox 0 = 0xFF, wait for 0, mailbox 0 = 0x00)
   and stops the scan.

A blocked packet raises :class:`ChannelBusyError`; the downlink path turns it into
the refusal ChirpStack understands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from hal.errors import HalError
from hal.registers import Registers
from hal.sx1261 import LBT_SCANS, Sx1261

log = structlog.get_logger(__name__)

TX_START_TIMEOUT_S = 0.5
"""How long the reference waits for the AGC to report the TX started (loragw_lbt.c)."""
POLL_S = 0.001
AGC_CLEAR = 0xFF


@dataclass(frozen=True, slots=True)
class LbtSettings:
    """Threshold and scan window: from the region's rule unless the config overrides them."""

    threshold_dbm: int
    scan_time_us: int

    def __post_init__(self) -> None:
        if self.scan_time_us not in LBT_SCANS:
            raise ValueError(f"LBT scan time {self.scan_time_us} µs: the SX1261 supports "
                             f"{', '.join(map(str, LBT_SCANS))}")


class ChannelBusyError(HalError):
    """LBT found the channel above the threshold: the chip did not transmit."""

    def __init__(self, frequency_hz: int, threshold_dbm: int) -> None:
        super().__init__(f"channel {frequency_hz} Hz busy (above {threshold_dbm} dBm): "
                         "listen-before-talk blocked the transmission")
        self.frequency_hz = frequency_hz


class ListenBeforeTalk:
    """Wraps one send in the SX1261 scan and the AGC's verdict."""

    def __init__(self, radio: Sx1261, settings: LbtSettings,
                 sleep: Callable[[float], None]) -> None:
        self.radio = radio
        self.settings = settings
        self._sleep = sleep

    def arm(self, frequency_hz: int) -> None:
        """Step 1: listen on ``frequency_hz`` for one scan window before the TX is loaded."""
        self.radio.set_rx(frequency_hz)
        self.radio.lbt_start(self.settings.scan_time_us, self.settings.threshold_dbm)

    def verdict(self, regs: Registers, rf_chain: int, frequency_hz: int) -> None:
        """Steps 3-4: wait for the AGC's report, clear it, stop the scan; raise if blocked."""
        try:
            status = self._wait_started(regs, rf_chain)
            blocked = bool(status >> (6 + rf_chain) & 1)
            self._clear(regs)
        finally:
            self.radio.scan_stop()
        if blocked:
            log.warning("lbt_channel_busy", frequency=frequency_hz,
                        threshold_dbm=self.settings.threshold_dbm,
                        scan_time_us=self.settings.scan_time_us)
            raise ChannelBusyError(frequency_hz, self.settings.threshold_dbm)

    def _wait_started(self, regs: Registers, rf_chain: int) -> int:
        for _ in range(round(TX_START_TIMEOUT_S / POLL_S)):
            status = regs.read("AGC_MCU_STATUS")
            if status >> rf_chain & 1:
                return status
            self._sleep(POLL_S)
        raise HalError(f"AGC did not report the start of the LBT-checked TX on chain "
                       f"{rf_chain} within {TX_START_TIMEOUT_S:g} s")

    def _clear(self, regs: Registers) -> None:
        regs.write("AGC_MCU_MAILBOX_WR_0", AGC_CLEAR)
        for _ in range(round(TX_START_TIMEOUT_S / POLL_S)):
            if regs.read("AGC_MCU_STATUS") == 0:
                break
            self._sleep(POLL_S)
        else:
            log.error("lbt_status_not_cleared")
        regs.write("AGC_MCU_MAILBOX_WR_0", 0x00)
