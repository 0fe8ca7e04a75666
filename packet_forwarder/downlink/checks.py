"""Regional and hardware checks on one TX request, before any timing is considered.

Each check names the ack status ChirpStack understands: a frequency outside the
plan is TX_FREQ, power beyond the regional EIRP limit (or beyond what the board's
amplifier can produce after the antenna gain is taken off) is TX_POWER. The
protocol has no status for a modulation outside the region's data-rate table or an
oversized payload; those are INTERNAL_ERROR with the reason logged and counted.
Where the region requires listen-before-talk (KR920) and the gateway cannot do it,
downlinks go out without it unless the configuration opts in to refusing them
(``refuse_without_lbt``): then every downlink is TX_FREQ.
"""

from __future__ import annotations

from dataclasses import dataclass

from hal.types import Modulation
from packet_forwarder.downlink.request import ItemRequest
from packet_forwarder.downlink.status import TxStatus
from packet_forwarder.regions.model import Region


@dataclass(frozen=True, slots=True)
class TxLimits:
    """What the board can do: antenna gain (dBi) and its conducted power range (dBm)."""

    antenna_gain_dbi: float = 0.0
    max_conducted_dbm: int | None = None
    min_conducted_dbm: int | None = None
    listen_before_talk: bool = False
    """Whether the gateway senses the channel before sending (board SX1261, LBT enabled)."""
    refuse_without_lbt: bool = False
    """Where the region requires LBT and the gateway has none: refuse instead of sending."""


@dataclass(frozen=True, slots=True)
class Refusal:
    status: TxStatus
    reason: str


def check_request(req: ItemRequest, region: Region, limits: TxLimits) -> Refusal | None:
    """None when the request is allowed by the region and the board, else why not."""
    p = req.packet
    if region.lbt.required and not limits.listen_before_talk and limits.refuse_without_lbt:
        return Refusal(TxStatus.TX_FREQ, f"{region.name} requires listen-before-talk, "
                                         "which this gateway cannot do")
    if not region.downlink_frequency_ok(p.frequency_hz):
        return Refusal(TxStatus.TX_FREQ, f"frequency {p.frequency_hz} Hz not in {region.name}")
    dr = region.downlink_data_rate(p.modulation, spreading_factor=p.spreading_factor,
                                   bandwidth_hz=p.bandwidth_hz, bitrate_bps=p.datarate_bps)
    if dr is None:
        what = (f"SF{p.spreading_factor}/{p.bandwidth_hz} Hz" if p.modulation is Modulation.LORA
                else f"FSK {p.datarate_bps} bit/s")
        return Refusal(TxStatus.INTERNAL_ERROR, f"data rate {what} not a {region.name} downlink")
    if len(p.payload) > dr.max_phy_payload:
        return Refusal(TxStatus.INTERNAL_ERROR,
                       f"payload {len(p.payload)} B exceeds {dr.max_phy_payload} B at DR{dr.index}")
    max_eirp = region.max_eirp_for(p.frequency_hz)
    if req.power_eirp_dbm > max_eirp:
        return Refusal(TxStatus.TX_POWER,
                       f"{req.power_eirp_dbm} dBm EIRP above {max_eirp:g} dBm at {p.frequency_hz}")
    if limits.max_conducted_dbm is not None and p.power_dbm > limits.max_conducted_dbm:
        return Refusal(TxStatus.TX_POWER, f"{p.power_dbm} dBm conducted above the board's "
                                          f"{limits.max_conducted_dbm} dBm")
    if limits.min_conducted_dbm is not None and p.power_dbm < limits.min_conducted_dbm:
        return Refusal(TxStatus.TX_POWER, f"{p.power_dbm} dBm conducted below the board's "
                                          f"{limits.min_conducted_dbm} dBm")
    return None
