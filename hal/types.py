"""Radio packet records exchanged between the HAL and the layers above it.

These are plain values with SI units (Hz, dBm, dB, µs) so that nothing above
the HAL needs to know register encodings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

COUNTER_MODULO = 1 << 32
"""The concentrator's microsecond counter is 32 bits wide and wraps every ~71.6 minutes."""


class CrcStatus(enum.Enum):
    """Outcome of the radio payload CRC, as the chip reports it."""

    NO_CRC = 0
    BAD_CRC = 1
    CRC_OK = 2


class Modulation(enum.Enum):
    LORA = "LORA"
    FSK = "FSK"


CODE_RATES = ("4/5", "4/6", "4/7", "4/8")


@dataclass(frozen=True, slots=True)
class RxPacket:
    """One frame received by the concentrator, already decoded from the chip's RX record."""

    payload: bytes
    frequency_hz: int
    """Channel centre frequency (radio centre + IF), not corrected by the measured offset."""
    if_chain: int
    """IF chain index: 0-7 multi-SF LoRa channels, 8 LoRa service channel, 9 FSK."""
    rf_chain: int
    modulation: Modulation
    spreading_factor: int
    """LoRa spreading factor 5-12; 0 for FSK."""
    bandwidth_hz: int
    code_rate: str
    """"4/5".."4/8" for LoRa, "" for FSK."""
    crc_status: CrcStatus
    rssi_dbm: float
    snr_db: float
    count_us: int
    """32-bit concentrator counter (µs) at the end of the packet, decoder delay corrected."""
    freq_offset_hz: float = 0.0
    datarate_bps: int = 0
    """FSK bit rate; 0 for LoRa."""
    modem_id: int = 0
    rssi_signal_dbm: float | None = None
    """LoRa signal RSSI (the frame alone, below the channel RSSI at low SNR); None for FSK."""
    fine_time_ns: int | None = None
    """SX1303 fine timestamp: ns since the PPS at ``fine_time_pps_count_us``; None if absent."""
    fine_time_pps_count_us: int | None = None
    """The 32-bit µs count of the PPS edge the fine time counts from (a GPS second)."""


class TxTiming(enum.Enum):
    IMMEDIATE = "immediate"
    TIMESTAMPED = "timestamped"
    ON_GPS_PPS = "on_gps_pps"


@dataclass(frozen=True, slots=True)
class TxPacket:
    """One frame to emit. ``count_us`` is the 32-bit counter value at which TX starts."""

    payload: bytes
    frequency_hz: int
    power_dbm: int
    modulation: Modulation
    spreading_factor: int
    bandwidth_hz: int
    code_rate: str = "4/5"
    invert_polarity: bool = True
    preamble: int = 8
    no_crc: bool = True
    no_header: bool = False
    """Implicit header (no LoRa PHY header): class B beacons are sent this way."""
    timing: TxTiming = TxTiming.TIMESTAMPED
    count_us: int = 0
    rf_chain: int = 0
    datarate_bps: int = 0
    fdev_hz: int = 0


class TxState(enum.Enum):
    FREE = "free"
    SCHEDULED = "scheduled"
    EMITTING = "emitting"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Channel:
    """One multi-SF LoRa receive channel, or the LoRa service / FSK channel."""

    frequency_hz: int
    bandwidth_hz: int = 125_000
    spreading_factors: tuple[int, ...] = (7, 8, 9, 10, 11, 12)
    modulation: Modulation = Modulation.LORA
    datarate_bps: int = 0


@dataclass(frozen=True, slots=True)
class ChannelPlan:
    """The receive channels the concentrator should listen on.

    ``multi_sf`` holds up to 8 channels of 125 kHz; ``lora_service`` and ``fsk``
    are the optional single-SF LoRa and FSK channels. Radio centre frequencies are
    derived by the driver, which refuses a plan the two radios cannot cover.
    """

    multi_sf: tuple[Channel, ...]
    lora_service: Channel | None = None
    fsk: Channel | None = None
    radio_centres_hz: tuple[int, int] | None = None
    """Explicit radio A/B centre frequencies; ``None`` lets the driver choose."""

    def all_channels(self) -> list[Channel]:
        extra = [c for c in (self.lora_service, self.fsk) if c is not None]
        return [*self.multi_sf, *extra]


EU868_DEFAULT_PLAN = ChannelPlan(
    multi_sf=tuple(
        Channel(f)
        for f in (868_100_000, 868_300_000, 868_500_000, 867_100_000,
                  867_300_000, 867_500_000, 867_700_000, 867_900_000)
    ),
    lora_service=Channel(868_300_000, 250_000, (7,)),
    fsk=Channel(868_800_000, 125_000, (), Modulation.FSK, 50_000),
)


@dataclass(slots=True)
class RxErrorCounters:
    """Why records read from the chip were dropped, counted per reason."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, n: int = 1) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + n
