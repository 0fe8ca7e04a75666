"""Regional rules as values: what a region allows a gateway to transmit and receive.

The facts live in TOML data files (``data/*.toml``), one per region; this module
only gives them types and the questions the downlink path asks of them (is this
frequency in the plan, which data rate is this modulation, how much power may go
out here, which duty-cycle sub-band is this).
"""

from __future__ import annotations

from dataclasses import dataclass

from hal.types import Channel, ChannelPlan, Modulation

MIN_DEFAULT_PLAN_SF = 7


@dataclass(frozen=True, slots=True)
class DataRate:
    """One row of a region's data-rate table."""

    index: int
    modulation: Modulation
    spreading_factor: int
    """LoRa spreading factor; 0 for FSK."""
    bandwidth_hz: int
    """LoRa bandwidth; 0 for FSK."""
    bitrate_bps: int
    """FSK bit rate; 0 for LoRa."""
    max_mac_payload: int
    """M in the Regional Parameters: MACPayload bytes. A PHYPayload may carry M + 5."""
    uplink: bool = True
    downlink: bool = True

    @property
    def max_phy_payload(self) -> int:
        """MHDR (1) + MACPayload (M) + MIC (4)."""
        return self.max_mac_payload + 5


@dataclass(frozen=True, slots=True)
class LrFhssRate:
    """An LR-FHSS uplink data rate: receive-only, and only for chips that demodulate it.

    Kept so the region's data-rate numbering is complete (ChirpStack's per-data-rate
    charts and ``LinkADRReq`` count them); no downlink ever uses one.
    """

    index: int
    coding_rate: str
    occupied_channel_width_hz: int


@dataclass(frozen=True, slots=True)
class SubBand:
    """A regulatory sub-band: duty-cycle limit (a fraction, None for none) and power limit."""

    name: str
    min_hz: int
    max_hz: int
    duty_cycle: float | None
    max_eirp_dbm: float

    def contains(self, frequency_hz: int) -> bool:
        return self.min_hz <= frequency_hz <= self.max_hz


@dataclass(frozen=True, slots=True)
class FrequencyGrid:
    """Evenly spaced channels: ``first_hz + i * step_hz`` for ``i`` in ``range(count)``."""

    first_hz: int
    step_hz: int
    count: int

    def frequency(self, index: int) -> int:
        if not 0 <= index < self.count:
            raise IndexError(f"channel {index} outside 0..{self.count - 1}")
        return self.first_hz + index * self.step_hz

    def frequencies(self) -> tuple[int, ...]:
        return tuple(self.frequency(i) for i in range(self.count))

    def contains(self, frequency_hz: int) -> bool:
        offset = frequency_hz - self.first_hz
        if self.step_hz == 0:
            return offset == 0
        return offset % self.step_hz == 0 and 0 <= offset // self.step_hz < self.count


@dataclass(frozen=True, slots=True)
class Rx2:
    frequency_hz: int
    data_rate: int


@dataclass(frozen=True, slots=True)
class Lbt:
    """Listen-before-talk rule, recorded for the stats and a future LBT implementation."""

    required: bool
    rssi_target_dbm: int | None = None
    scan_time_us: int | None = None


@dataclass(frozen=True, slots=True)
class BeaconSpec:
    """Class B beacon: data rate, channel(s) and the frame layout's reserved-byte counts."""

    data_rate: int
    channels: FrequencyGrid
    rfu1_bytes: int
    rfu2_bytes: int
    period_s: int = 128
    preamble: int = 10

    @property
    def payload_size(self) -> int:
        """RFU1 + time (4) + CRC (2) + gateway info (7) + RFU2 + CRC (2)."""
        return self.rfu1_bytes + 4 + 2 + 7 + self.rfu2_bytes + 2

    def frequency_for(self, beacon_time_s: int) -> int:
        """Beacons hop over the channels one per period (a single channel for most regions)."""
        return self.channels.frequency((beacon_time_s // self.period_s) % self.channels.count)


@dataclass(frozen=True, slots=True)
class ServiceChannel:
    frequency_hz: int
    bandwidth_hz: int
    spreading_factor: int


@dataclass(frozen=True, slots=True)
class FskChannel:
    frequency_hz: int
    bandwidth_hz: int
    bitrate_bps: int


@dataclass(frozen=True, slots=True)
class UplinkPlan:
    """How a region's default receive plan is written: a fixed list, or a sub-band of a grid."""

    multi_sf_hz: tuple[int, ...] = ()
    service: ServiceChannel | None = None
    fsk: FskChannel | None = None
    grid_125khz: FrequencyGrid | None = None
    grid_500khz: FrequencyGrid | None = None
    default_sub_band: int = 1


class RegionPlanError(ValueError):
    """A channel plan request the region cannot satisfy (e.g. a sub-band that does not exist)."""


@dataclass(frozen=True, slots=True)
class Region:
    """Everything the gateway needs to know about one LoRaWAN region."""

    name: str
    common_name: str
    source: str
    regulation: str
    band_hz: tuple[int, int]
    max_eirp_dbm: float
    duty_cycle_window_s: int
    data_rates: tuple[DataRate, ...]
    sub_bands: tuple[SubBand, ...]
    default_uplink_hz: tuple[int, ...]
    uplink_plan: UplinkPlan
    downlink_grid: FrequencyGrid | None
    rx2: Rx2
    lbt: Lbt
    beacon: BeaconSpec | None
    lr_fhss_rates: tuple[LrFhssRate, ...] = ()

    def data_rate(self, index: int) -> DataRate | None:
        return next((d for d in self.data_rates if d.index == index), None)

    def downlink_data_rate(self, modulation: Modulation, *, spreading_factor: int = 0,
                           bandwidth_hz: int = 0, bitrate_bps: int = 0) -> DataRate | None:
        """The downlink data rate these modulation parameters form, None when not in the table."""
        for d in self.data_rates:
            if not d.downlink or d.modulation is not modulation:
                continue
            if modulation is Modulation.LORA and (d.spreading_factor, d.bandwidth_hz) == (
                    spreading_factor, bandwidth_hz):
                return d
            if modulation is Modulation.FSK and d.bitrate_bps == bitrate_bps:
                return d
        return None

    def sub_band_for(self, frequency_hz: int) -> SubBand | None:
        return next((s for s in self.sub_bands if s.contains(frequency_hz)), None)

    def downlink_frequency_ok(self, frequency_hz: int) -> bool:
        """In the band, on the downlink grid if the region has one, in a sub-band if it has any."""
        low, high = self.band_hz
        if not low <= frequency_hz <= high:
            return False
        if self.downlink_grid is not None and not self.downlink_grid.contains(frequency_hz):
            return False
        return not self.sub_bands or self.sub_band_for(frequency_hz) is not None

    def max_eirp_for(self, frequency_hz: int) -> float:
        band = self.sub_band_for(frequency_hz)
        return band.max_eirp_dbm if band is not None else self.max_eirp_dbm

    def default_channel_plan(self, sub_band: int | None = None) -> ChannelPlan:
        """The receive plan a fresh gateway starts with.

        Grid regions (US915, AU915) listen on one sub-band of eight 125 kHz channels
        plus the 500 kHz channel of the same sub-band; ``sub_band`` counts from 1.
        Other regions have one fixed plan and refuse a ``sub_band``.
        """
        plan = self.uplink_plan
        if plan.grid_125khz is None:
            if sub_band is not None:
                raise RegionPlanError(f"{self.name} has no uplink sub-bands")
            return self._fixed_plan()
        chosen = plan.default_sub_band if sub_band is None else sub_band
        groups = plan.grid_125khz.count // 8
        if not 1 <= chosen <= groups:
            raise RegionPlanError(f"{self.name} sub-band {chosen} outside 1..{groups}")
        sfs = self._uplink_sfs(125_000)
        multi = tuple(Channel(plan.grid_125khz.frequency((chosen - 1) * 8 + i), 125_000, sfs)
                      for i in range(8))
        service = None
        if plan.grid_500khz is not None:
            wide_sfs = self._uplink_sfs(500_000)
            service = Channel(plan.grid_500khz.frequency(chosen - 1), 500_000, wide_sfs[:1])
        return ChannelPlan(multi_sf=multi, lora_service=service)

    def _fixed_plan(self) -> ChannelPlan:
        plan = self.uplink_plan
        sfs = self._uplink_sfs(125_000)
        multi = tuple(Channel(f, 125_000, sfs) for f in plan.multi_sf_hz)
        service = None
        if plan.service is not None:
            s = plan.service
            service = Channel(s.frequency_hz, s.bandwidth_hz, (s.spreading_factor,))
        fsk = None
        if plan.fsk is not None:
            f = plan.fsk
            fsk = Channel(f.frequency_hz, f.bandwidth_hz, (), Modulation.FSK, f.bitrate_bps)
        return ChannelPlan(multi_sf=multi, lora_service=service, fsk=fsk)

    def _uplink_sfs(self, bandwidth_hz: int) -> tuple[int, ...]:
        """SF7 and up: the default plan listens as ChirpStack's shipped channel plans do
        (``spreading_factors = [7, ...]``); SF5/SF6 channels come with a ``command/config``."""
        return tuple(sorted({d.spreading_factor for d in self.data_rates
                             if d.uplink and d.modulation is Modulation.LORA
                             and d.bandwidth_hz == bandwidth_hz
                             and d.spreading_factor >= MIN_DEFAULT_PLAN_SF}))
