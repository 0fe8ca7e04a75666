"""``command/down`` → TX queue → ``event/ack``: the downlink decisions, free of MQTT and SPI.

A ``DownlinkFrame`` carries one or more alternatives (RX1, then RX2, ...). They are
tried in order; the first one accepted is queued and every later one is answered
IGNORED, as ChirpStack expects. Each refusal names its cause: the region's rules
(frequency, power, data rate, payload size), the timing (a stale or too-old uplink
context, too late, too early, no GPS lock), the duty-cycle budget, or the queue
(collision with a packet or beacon, full).

Timing uses the uplink context this gateway wrote (counter, session id, wrap
count), so a late answer to an uplink from an earlier concentrator session or
older than one counter period is TOO_LATE, never sent ~71.6 minutes off.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace

from chirpstack_api.gw import gw_pb2

from hal.types import COUNTER_MODULO
from packet_forwarder.chirpstack import (
    JSON,
    PROTOBUF,
    MessageDecodeError,
    marshal,
    parse_context,
    unmarshal,
)
from packet_forwarder.downlink.airtime import packet_time_on_air_us
from packet_forwarder.downlink.checks import (
    Refusal,
    TxLimits,
    check_request,
    fit_power,
    raised_power_refusal,
)
from packet_forwarder.downlink.clock import RadioNow
from packet_forwarder.downlink.duty_cycle import DutyCycle
from packet_forwarder.downlink.gps import GpsClock
from packet_forwarder.downlink.jit import JitQueue, QueueItem, signed_delta
from packet_forwarder.downlink.request import ItemError, ItemRequest, parse_item, salvage
from packet_forwarder.downlink.status import TxStatus
from packet_forwarder.regions.model import Region

_LOG = logging.getLogger(__name__)
MAX_ITEMS = 8
"""ChirpStack sends one item per receive window (RX1, RX2, maybe a few alternatives); a
frame with more is refused whole, so its size cannot buy work or log lines."""
_LOGGED_ITEMS = 3


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    status: TxStatus
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DownlinkResult:
    """What to publish on ``event/ack`` and what was queued, for one ``command/down``."""

    downlink_id: int | None
    encoding: str
    outcomes: tuple[ItemOutcome, ...]
    scheduled: QueueItem | None
    ack: gw_pb2.DownlinkTxAck | None
    error: str | None = None

    def ack_payload(self) -> bytes | None:
        """The ack in the request's own encoding; None when no ack can be addressed."""
        return None if self.ack is None else marshal(self.ack, self.encoding)


@dataclass(slots=True)
class DownlinkCounters:
    """TX-side counts for ``event/stats``."""

    received: int = 0
    emitted: int = 0
    per_status: Counter[str] = field(default_factory=Counter)
    per_frequency: Counter[int] = field(default_factory=Counter)
    per_modulation: Counter[tuple[str, int, int, int, str]] = field(default_factory=Counter)
    """(modulation, spreading factor, bandwidth Hz, FSK bit rate, code rate) of emitted packets."""
    dropped: Counter[str] = field(default_factory=Counter)
    power_clamped: int = 0
    """Items sent at a lower power than requested because the board's table stops below it."""


def final_status(outcomes: list[ItemOutcome]) -> TxStatus:
    """The one status a downlink counts under in ``tx_packets_per_status``.

    OK when an item was queued, else the last refusal: the way Concentratord's
    ``handle_downlink`` (chirpstack-concentratord-sx1302 ``src/handler/command.rs``)
    keeps one ``stats_tx_status`` per frame, so the later IGNORED items are not counted.
    """
    status = TxStatus.IGNORED
    for o in outcomes:
        if o.status is TxStatus.OK:
            return o.status
        if o.status is not TxStatus.IGNORED:
            status = o.status
    return status


class DownlinkHandler:
    """Decides every downlink; owns nothing that blocks. See the module docstring."""

    def __init__(self, *, gateway_id: str, region: Region, queue: JitQueue,
                 duty_cycle: DutyCycle | None, limits: TxLimits,
                 gps: GpsClock | None = None, context_future_tolerance_us: int = 1_000_000,
                 log: logging.Logger = _LOG) -> None:
        self.gateway_id = gateway_id
        self.region = region
        self.queue = queue
        self.duty_cycle = duty_cycle
        self.limits = limits
        self.gps = gps
        """Replace with ``None`` when GPS lock is lost; class B requests then get GPS_UNLOCKED."""
        self.counters = DownlinkCounters()
        self._future_tolerance_us = context_future_tolerance_us
        self._log = log

    # -- MQTT side ------------------------------------------------------------------------

    def handle(self, payload: bytes, now: RadioNow | None) -> DownlinkResult:
        """Decide one ``command/down`` payload; ``now`` None means the concentrator is down."""
        encoding = JSON if b"gatewayId" in payload else PROTOBUF
        try:
            frame = unmarshal(payload, gw_pb2.DownlinkFrame)
        except MessageDecodeError as exc:
            return self._undecodable(payload, encoding, str(exc))
        if frame.gateway_id and frame.gateway_id.lower() != self.gateway_id.lower():
            shown = frame.gateway_id[:32]  # an outsider's string: never a megabyte line
            self._log.warning("downlink %d for gateway %r ignored", frame.downlink_id, shown)
            self.counters.dropped["wrong_gateway_id"] += 1
            return DownlinkResult(frame.downlink_id, encoding, (), None, None,
                                  f"gateway_id {shown!r} is not ours")
        if not frame.items:
            self.counters.dropped["no_items"] += 1
            self._log.warning("downlink %d has no items; not acked", frame.downlink_id)
            return DownlinkResult(frame.downlink_id, encoding, (), None, None, "no items")
        self.counters.received += 1
        outcomes: list[ItemOutcome] = []
        scheduled: QueueItem | None = None
        if len(frame.items) > MAX_ITEMS:
            self.counters.dropped["too_many_items"] += 1
            reason = f"{len(frame.items)} items, at most {MAX_ITEMS}"
            outcomes = [ItemOutcome(TxStatus.INTERNAL_ERROR, reason)] * len(frame.items)
        else:
            for item in frame.items:
                if scheduled is not None:
                    outcomes.append(ItemOutcome(TxStatus.IGNORED))
                    continue
                outcome, scheduled = self._try_item(item, now, frame.downlink_id)
                outcomes.append(outcome)
        self._log_refusals(frame.downlink_id, outcomes)
        return DownlinkResult(frame.downlink_id, encoding, tuple(outcomes), scheduled,
                              self._ack(frame.downlink_id, outcomes))

    def _log_refusals(self, downlink_id: int, outcomes: list[ItemOutcome]) -> None:
        """Count the downlink's final status; one warning line per downlink (never one per
        item), which the daemon's log limiter caps, so a flood of bad downlinks cannot
        flood the log."""
        self.counters.per_status[final_status(outcomes).name] += 1
        refused = []
        for i, o in enumerate(outcomes):
            if o.status not in (TxStatus.OK, TxStatus.IGNORED):
                refused.append(f"item {i}: {o.status.name} ({o.reason[:120]})")
        if refused:
            more = len(refused) - _LOGGED_ITEMS
            tail = f"; and {more} more" if more > 0 else ""
            self._log.warning("downlink %d refused: %s%s", downlink_id,
                              "; ".join(refused[:_LOGGED_ITEMS]), tail)

    def _undecodable(self, payload: bytes, encoding: str, error: str) -> DownlinkResult:
        found = salvage(payload)
        self.counters.dropped["undecodable"] += 1
        self._log.warning("command/down undecodable (%s); downlink_id=%s",
                          error[:200].replace("\n", " "), found.downlink_id)
        if found.downlink_id is None:
            return DownlinkResult(None, encoding, (), None, None, error)
        outcomes = [ItemOutcome(TxStatus.INTERNAL_ERROR, "undecodable")] * max(
            1, found.item_count)
        return DownlinkResult(found.downlink_id, encoding, tuple(outcomes), None,
                              self._ack(found.downlink_id, outcomes), error)

    def _ack(self, downlink_id: int, outcomes: list[ItemOutcome]) -> gw_pb2.DownlinkTxAck:
        ack = gw_pb2.DownlinkTxAck(gateway_id=self.gateway_id, downlink_id=downlink_id)
        for o in outcomes:
            ack.items.add(status=int(o.status))
        return ack

    def _try_item(self, item: gw_pb2.DownlinkFrameItem, now: RadioNow | None,
                  downlink_id: int) -> tuple[ItemOutcome, QueueItem | None]:
        try:
            req = parse_item(item, self.limits.antenna_gain_dbi)
        except (ItemError, ValueError) as exc:
            return ItemOutcome(TxStatus.INTERNAL_ERROR, str(exc)), None
        refusal = check_request(req, self.region, self.limits)
        if refusal is not None:
            return ItemOutcome(refusal.status, refusal.reason), None
        power = fit_power(req.packet.power_dbm, self.limits)
        refusal = raised_power_refusal(req, power, self.region, self.limits)
        if refusal is not None:
            return ItemOutcome(refusal.status, refusal.reason), None
        asked = req.packet.power_dbm
        if power != asked:
            req = replace(req, packet=replace(req.packet, power_dbm=power))
        if now is None:
            return ItemOutcome(TxStatus.INTERNAL_ERROR, "concentrator not running"), None
        start = self._start(req, now)
        if isinstance(start, Refusal):
            return ItemOutcome(start.status, start.reason), None
        outcome, queued = self._enqueue(req, start, now, downlink_id)
        if queued is not None and power != asked:   # counted once per packet that goes out
            self.counters.power_clamped += power < asked
            self._log.debug("downlink %d: %d dBm conducted asked, %d dBm sent (board table)",
                            downlink_id, asked, power)
        return outcome, queued

    def _start(self, req: ItemRequest, now: RadioNow) -> int | Refusal | None:
        """Counter value at which to start; None for "immediately"; or why it cannot be timed."""
        if req.timing == "immediately":
            return None
        if req.timing == "gps_epoch":
            return self._gps_start(req, now)
        ctx = parse_context(req.context)
        if ctx is None:
            return Refusal(TxStatus.TOO_LATE, f"context of {len(req.context)} B not ours")
        if ctx.session_id != now.session_id:
            return Refusal(TxStatus.TOO_LATE, "context from an earlier concentrator session")
        uplink_abs = ctx.wraps * COUNTER_MODULO + ctx.count_us
        age = now.absolute_us - uplink_abs
        if age >= COUNTER_MODULO:
            return Refusal(TxStatus.TOO_LATE, f"uplink {age // 1_000_000} s old")
        if age < -self._future_tolerance_us:
            return Refusal(TxStatus.TOO_LATE, "context ahead of the counter")
        lead = uplink_abs + req.delay_us - now.absolute_us
        refusal = self._lead_refusal(lead)
        if refusal is not None:
            return refusal
        return (uplink_abs + req.delay_us) % COUNTER_MODULO

    def _lead_refusal(self, lead_us: int) -> Refusal | None:
        if lead_us < self.queue.config.min_lead_us:
            return Refusal(TxStatus.TOO_LATE, f"{lead_us} µs before TX")
        if lead_us > self.queue.config.max_advance_us:
            return Refusal(TxStatus.TOO_EARLY, f"{lead_us} µs before TX")
        return None

    def _gps_start(self, req: ItemRequest, now: RadioNow) -> int | Refusal:
        """Class B: the lead is judged in GPS time first, so a time the queue cannot
        schedule unambiguously (days ahead, before the epoch, one counter period
        back) is TOO_EARLY or TOO_LATE and never aliased modulo 2^32."""
        gps = self.gps
        gps_now = None if gps is None else gps.gps_time_at(now.count_us)
        if gps is None or gps_now is None:
            return Refusal(TxStatus.GPS_UNLOCKED, "no GPS time reference")
        lead = req.gps_time_us - gps_now
        refusal = self._lead_refusal(lead)
        if refusal is not None:
            return refusal
        try:
            count = gps.count_at(req.gps_time_us)
        except ValueError as exc:
            return Refusal(TxStatus.TOO_EARLY if lead > 0 else TxStatus.TOO_LATE, str(exc))
        if count is None:
            return Refusal(TxStatus.GPS_UNLOCKED, "no GPS time reference")
        return count

    def _enqueue(self, req: ItemRequest, start: int | None, now: RadioNow,
                 downlink_id: int) -> tuple[ItemOutcome, QueueItem | None]:
        toa = packet_time_on_air_us(req.packet)
        cfg = self.queue.config
        lead_us = cfg.immediate_lead_us if start is None else signed_delta(start, now.count_us)
        freq = req.packet.frequency_hz
        duty = self.duty_cycle
        if duty is not None and duty.would_exceed(freq, toa, lead_s=lead_us / 1e6):
            return ItemOutcome(TxStatus.DUTY_CYCLE_OVERFLOW, f"{toa} µs over budget"), None
        booking = None if duty is None else duty.record(freq, toa, lead_s=lead_us / 1e6)
        item = QueueItem(replace(req.packet, count_us=start or 0), toa, downlink_id=downlink_id,
                         booking=booking)
        if start is None:
            status, item = self.queue.schedule_immediate(item, now.count_us)
        else:
            status = self.queue.schedule(item, now.count_us)
        if status is not TxStatus.OK:
            if duty is not None:
                duty.release(booking)
            return ItemOutcome(status, "refused by the TX queue"), None
        return ItemOutcome(TxStatus.OK), item

    # -- radio side -----------------------------------------------------------------------

    def due(self, now_count_us: int, *, tx_free: bool = True) -> list[QueueItem]:
        """Packets to load now (at most one, and only while the chip's TX is free).

        Also retires packets whose slot passed while the chip was busy: their
        duty-cycle booking is released and they are counted as dropped.
        """
        loads = self.queue.due(now_count_us, limit=1 if tx_free else 0)
        for missed in self.queue.take_missed():
            self._retire(missed, "missed_slot")
        return loads

    def tx_result(self, item: QueueItem, ok: bool, reason: str = "tx_failed") -> None:
        """Report what became of a packet returned by :meth:`due` (``ok``: the chip took it)."""
        if not ok:
            self._retire(item, reason)
            return
        p = item.packet
        self.counters.emitted += 1
        self.counters.per_frequency[p.frequency_hz] += 1
        self.counters.per_modulation[(p.modulation.value, p.spreading_factor, p.bandwidth_hz,
                                      p.datarate_bps, p.code_rate)] += 1

    def channel_busy(self, item: QueueItem) -> gw_pb2.DownlinkTxAck:
        """LBT found the channel busy at TX time: retire the packet and build the follow-up
        ack. The protocol has no LBT status; COLLISION_PACKET ("collides with another
        packet in the same time interval") is the one that says what happened."""
        self._retire(item, "lbt_busy")
        return self._ack(item.downlink_id, [ItemOutcome(TxStatus.COLLISION_PACKET)])

    def reset_session(self) -> None:
        """The concentrator restarted: queued counter values are meaningless, drop them."""
        for item in self.queue.clear():
            self._retire(item, "session_reset")

    def _retire(self, item: QueueItem, reason: str) -> None:
        self.counters.dropped[reason] += 1
        if self.duty_cycle is not None:
            self.duty_cycle.release(item.booking)
        self._log.warning("downlink %d dropped: %s", item.downlink_id, reason)
