"""Map a channel plan onto the SX1302's two radios and ten IF chains.

Each radio receives a band 1.6 MHz wide around its centre frequency; a channel is
receivable on a radio when ``|IF| + BW/2 <= 800 kHz``. The driver picks the two
centres (unless the plan fixes them) and refuses a plan that does not fit,
naming the channel that cannot be covered.
"""

from __future__ import annotations

from dataclasses import dataclass

from hal.errors import PlanError
from hal.types import Channel, ChannelPlan, Modulation

HALF_RADIO_BAND_HZ = 800_000
IF_STEP_NUM = 15_625  # IF register unit is 15625/32 Hz
IF_STEP_DEN = 32
IF_BITS = 13
MULTI_SF_CHAINS = 8
SERVICE_CHAIN = 8
FSK_CHAIN = 9


def if_to_reg(if_hz: int) -> int:
    """IF register value: IF·32/15625 truncated toward zero, as 13-bit two's complement."""
    magnitude = abs(if_hz) * IF_STEP_DEN // IF_STEP_NUM
    value = -magnitude if if_hz < 0 else magnitude
    if not -(1 << (IF_BITS - 1)) <= value < (1 << (IF_BITS - 1)):
        raise PlanError(f"IF {if_hz} Hz does not fit the IF register")
    return value & ((1 << IF_BITS) - 1)


def reg_to_if(reg: int) -> float:
    """IF in Hz of a 13-bit register value."""
    value = reg - (1 << IF_BITS) if reg & (1 << (IF_BITS - 1)) else reg
    return value * IF_STEP_NUM / IF_STEP_DEN


@dataclass(frozen=True, slots=True)
class IfChain:
    """One configured IF chain: which radio, which IF offset, which channel."""

    index: int
    rf_chain: int
    if_hz: int
    channel: Channel


@dataclass(frozen=True, slots=True)
class RadioLayout:
    """The plan resolved to hardware: radio centres and the enabled IF chains."""

    centres_hz: tuple[int, int]
    chains: tuple[IfChain, ...]
    plan: ChannelPlan

    def chain(self, index: int) -> IfChain | None:
        for c in self.chains:
            if c.index == index:
                return c
        return None

    @property
    def radios_used(self) -> tuple[int, ...]:
        return tuple(sorted({c.rf_chain for c in self.chains}))


def _fits(channel: Channel, centre: int) -> bool:
    return abs(channel.frequency_hz - centre) + channel.bandwidth_hz // 2 <= HALF_RADIO_BAND_HZ


def _edges(channel: Channel) -> tuple[int, int]:
    half = channel.bandwidth_hz // 2
    return channel.frequency_hz - half, channel.frequency_hz + half


def choose_centres(channels: list[Channel]) -> tuple[int, int]:
    """Two centres covering every channel, keeping IF offsets as small as possible.

    Channels sorted by frequency are split into a lower group (radio A) and an upper
    group (radio B); of the splits where each group fits 1.6 MHz, the one with the
    smallest largest half-span wins, since channels near a radio's band edge see
    more filter roll-off. Each centre is the middle of its group's span.
    """
    ordered = sorted(channels, key=lambda c: c.frequency_hz)
    best: tuple[int, int, int] | None = None  # cost, centre A, centre B
    for k in range(1, len(ordered) + 1):
        low, high = ordered[:k], ordered[k:] or ordered[:k]
        spans = [_span(low), _span(high)]
        if max(spans) > 2 * HALF_RADIO_BAND_HZ:
            continue
        if best is None or max(spans) < best[0]:
            best = (max(spans), _span_centre(low), _span_centre(high))
    if best is None:
        first_out = next(c for c in ordered if _edges(c)[1] - _edges(ordered[0])[0]
                         > 2 * HALF_RADIO_BAND_HZ)
        raise PlanError(
            f"channel {first_out.frequency_hz} Hz ({first_out.bandwidth_hz} Hz wide) is out of "
            "reach: two radios of 1.6 MHz each cannot cover the plan")
    return best[1], best[2]


def _span(group: list[Channel]) -> int:
    return max(_edges(c)[1] for c in group) - min(_edges(c)[0] for c in group)


def _span_centre(group: list[Channel]) -> int:
    low = min(_edges(c)[0] for c in group)
    high = max(_edges(c)[1] for c in group)
    return (low + high) // 2


def _assign(index: int, channel: Channel, centres: tuple[int, int]) -> IfChain:
    for rf in sorted((0, 1), key=lambda r: abs(channel.frequency_hz - centres[r])):
        if _fits(channel, centres[rf]):
            return IfChain(index, rf, channel.frequency_hz - centres[rf], channel)
    raise PlanError(f"channel {channel.frequency_hz} Hz (IF chain {index}) is not within "
                    f"±{HALF_RADIO_BAND_HZ} Hz of either radio centre {centres}")


def _check_channels(plan: ChannelPlan) -> None:
    if not plan.multi_sf and plan.lora_service is None and plan.fsk is None:
        raise PlanError("the plan has no channel")
    if len(plan.multi_sf) > MULTI_SF_CHAINS:
        raise PlanError(f"{len(plan.multi_sf)} multi-SF channels; the SX1302 has 8")
    for i, ch in enumerate(plan.multi_sf):
        if ch.bandwidth_hz != 125_000 or ch.modulation is not Modulation.LORA:
            raise PlanError(f"multi-SF channel {i} ({ch.frequency_hz} Hz) must be 125 kHz LoRa")
        if not ch.spreading_factors or not all(5 <= sf <= 12 for sf in ch.spreading_factors):
            raise PlanError(f"multi-SF channel {i}: spreading factors must be within 5-12")
    svc = plan.lora_service
    if svc is not None and (svc.bandwidth_hz not in (125_000, 250_000, 500_000)
                            or len(svc.spreading_factors) != 1):
        raise PlanError(f"LoRa service channel {svc.frequency_hz} Hz needs one SF and a "
                        "125/250/500 kHz bandwidth")
    fsk = plan.fsk
    if fsk is not None and (fsk.modulation is not Modulation.FSK or fsk.datarate_bps <= 0):
        raise PlanError(f"FSK channel {fsk.frequency_hz} Hz needs FSK modulation and a bit rate")


def resolve_plan(plan: ChannelPlan) -> RadioLayout:
    """Radio centres and IF chains for ``plan``; raises :class:`PlanError` naming the culprit."""
    _check_channels(plan)
    indexed: list[tuple[int, Channel]] = list(enumerate(plan.multi_sf))
    if plan.lora_service is not None:
        indexed.append((SERVICE_CHAIN, plan.lora_service))
    if plan.fsk is not None:
        indexed.append((FSK_CHAIN, plan.fsk))
    centres = plan.radio_centres_hz or choose_centres([c for _, c in indexed])
    chains = tuple(_assign(i, ch, centres) for i, ch in indexed)
    for c in chains:
        if_to_reg(c.if_hz)
    return RadioLayout(centres, chains, plan)
