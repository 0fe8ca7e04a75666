"""Regional and hardware checks on one TX request, before any timing is considered.

Each check names the ack status ChirpStack understands: a frequency outside the
plan is TX_FREQ, power beyond the regional EIRP limit is TX_POWER. The
protocol has no status for a modulation outside the region's data-rate table or an
oversized payload; those are INTERNAL_ERROR with the reason logged and counted.

Power the board cannot make is not refused: like the reference HAL (``lgw_send`` in
Semtech's sx1302_hal ``loragw_hal.c`` walks the TX gain table down to the first
entry not above the request) and ChirpStack Concentratord, :func:`fit_power` picks
the strongest step of the board's power table at or below the request. ChirpStack
asks for its region's default EIRP (lrwn ``get_downlink_tx_power_eirp``: 29 dBm on
EU868 869.4-869.65 MHz, 30 dBm in AU915 and IN865), more than most boards make; a
refusal there would lose every RX2 and class C downlink. A request below the table's
weakest step goes out at that step, as the reference HAL does (its loop stops at entry
0), unless that step is above the region's EIRP limit there: then TX_POWER.
Where the region requires listen-before-talk (KR920) and the gateway cannot do it,
downlinks go out without it unless the configuration opts in to refusing them
(``refuse_without_lbt``): then every downlink is TX_FREQ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hal.types import Modulation, TxPacket
from packet_forwarder.downlink.request import ItemRequest
from packet_forwarder.downlink.status import TxStatus
from packet_forwarder.regions.model import Region


@dataclass(frozen=True, slots=True)
class TxLimits:
    """What the board can do: antenna gain (dBi) and its conducted power range (dBm)."""

    antenna_gain_dbi: float = 0.0
    max_conducted_dbm: int | None = None
    min_conducted_dbm: int | None = None
    power_steps_dbm: tuple[int, ...] = ()
    """The conducted powers the board's TX gain table can make, rising; empty when
    unknown (then ``max_conducted_dbm`` / ``min_conducted_dbm`` bound the request)."""
    listen_before_talk: bool = False
    """Whether the gateway senses the channel before sending (board SX1261, LBT enabled)."""
    refuse_without_lbt: bool = False
    """Where the region requires LBT and the gateway has none: refuse instead of sending."""


@dataclass(frozen=True, slots=True)
class Refusal:
    status: TxStatus
    reason: str


# What the SX1302 TX path accepts (Semtech sx1302_hal, libloragw/inc/loragw_hal.h: the
# preamble is a uint16 with 0 meaning "default" and 6 the LoRa minimum, DR_FSK_MIN/MAX;
# libloragw/src/loragw_hal.c lgw_send: FSK deviation 1..200 kHz, payload at most 255 B).
LORA_PREAMBLE_MIN: Final = 6
LORA_PREAMBLE_MAX: Final = 0xFFFF
FSK_BITRATE_BPS: Final = (500, 250_000)
FSK_FDEV_HZ: Final = (1_000, 200_000)
MAX_PAYLOAD: Final = 255
LORA_BANDWIDTHS_HZ: Final = (125_000, 250_000, 500_000)


def check_chip(p: TxPacket) -> Refusal | None:
    """Fields the chip cannot honour (a value its register would truncate, say), refused
    INTERNAL_ERROR before the region is asked: the protocol has no closer status."""
    if len(p.payload) > MAX_PAYLOAD:
        return Refusal(TxStatus.INTERNAL_ERROR, f"payload {len(p.payload)} B over {MAX_PAYLOAD}")
    if p.modulation is Modulation.LORA:
        if not LORA_PREAMBLE_MIN <= p.preamble <= LORA_PREAMBLE_MAX:
            return Refusal(TxStatus.INTERNAL_ERROR, f"LoRa preamble of {p.preamble} symbols "
                           f"outside {LORA_PREAMBLE_MIN}..{LORA_PREAMBLE_MAX}")
        if not 5 <= p.spreading_factor <= 12 or p.bandwidth_hz not in LORA_BANDWIDTHS_HZ:
            return Refusal(TxStatus.INTERNAL_ERROR, f"SF{p.spreading_factor}/"
                           f"{p.bandwidth_hz} Hz is not a LoRa modulation the chip sends")
        return None
    low, high = FSK_BITRATE_BPS
    if not low <= p.datarate_bps <= high:
        return Refusal(TxStatus.INTERNAL_ERROR,
                       f"FSK bit rate {p.datarate_bps} bit/s outside {low}..{high}")
    low, high = FSK_FDEV_HZ
    if not low <= p.fdev_hz <= high:
        return Refusal(TxStatus.INTERNAL_ERROR,
                       f"FSK deviation {p.fdev_hz} Hz outside {low}..{high}")
    return None


def check_request(req: ItemRequest, region: Region, limits: TxLimits) -> Refusal | None:
    """None when the request is allowed by the region and the board, else why not."""
    p = req.packet
    chip = check_chip(p)
    if chip is not None:
        return chip
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
    return None


def fit_power(conducted_dbm: int, limits: TxLimits) -> int:
    """The conducted power to send for a request of ``conducted_dbm``: see the module docstring.

    The strongest table step at or below the request, or the weakest step when the
    request is below them all (the caller checks that against the regional limit);
    without a table, the request bounded by ``min/max_conducted_dbm``.
    """
    steps = limits.power_steps_dbm
    if steps:
        fitting = [s for s in steps if s <= conducted_dbm]
        return max(fitting) if fitting else min(steps)
    if limits.min_conducted_dbm is not None:
        conducted_dbm = max(conducted_dbm, limits.min_conducted_dbm)
    if limits.max_conducted_dbm is not None:
        conducted_dbm = min(conducted_dbm, limits.max_conducted_dbm)
    return conducted_dbm


def raised_power_refusal(req: ItemRequest, power_dbm: int, region: Region,
                         limits: TxLimits) -> Refusal | None:
    """TX_POWER when the board's weakest step, above the request, breaks the regional limit."""
    eirp = power_dbm + limits.antenna_gain_dbi
    max_eirp = region.max_eirp_for(req.packet.frequency_hz)
    if power_dbm > req.packet.power_dbm and eirp > max_eirp:
        return Refusal(TxStatus.TX_POWER, f"board's weakest step {power_dbm} dBm gives "
                                          f"{eirp:g} dBm EIRP, above {max_eirp:g} dBm")
    return None
