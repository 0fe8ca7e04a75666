"""The uplink half of the daemon: poll the concentrator, turn packets into buffered uplinks.

SPI I/O is blocking, so every concentrator call runs on the one radio thread
(:class:`gateway.radio_thread.RadioThread`). That thread polls on its own every
``poll_interval_s``: it fetches the packets, stamps their contexts, then runs
``radio_service`` (the downlink path loading due TX packets), so the TX side
gets the chip every poll. The event loop hears from it only when a poll found
packets (one ``call_soon_threadsafe`` per batch), and then does the cheap work
of building the ChirpStack message and handing it to the buffer. An idle
gateway therefore costs one timed wake of one thread per poll and nothing on
the loop; before, each poll took a loop timer, an executor future and two
thread hand-offs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from gateway.clock import boottime_ns, clock_synchronised
from gateway.counters import CounterEpoch, UplinkCounters
from gateway.radio_thread import RadioThread
from hal.errors import HalError
from hal.interface import Concentrator
from hal.types import CrcStatus, RxPacket
from packet_forwarder.chirpstack import TxInfoCache, build_uplink_frame, make_context
from packet_forwarder.edge_filter import Verdict
from packet_forwarder.lorawan import device_key

log = structlog.get_logger(__name__)

Submit = Callable[..., int]
RadioService = Callable[[], None]
Received = list[tuple[RxPacket, bytes]]

CLOCK_CHECK_INTERVAL_S = 10.0
ERROR_BACKOFF_S = 1.0
REPOLL_BATCH = 8
"""A poll that fetched at least this many packets polls again at once instead of after
``poll_interval_s``, if the event loop has taken in the batches handed to it before.

Eight packets in one 10 ms poll is 800 a second, three times what the chip sustains:
frames are coming faster than the cadence drains them (after the host stalled, or a
flood on the emulator). With a fixed cadence the chip's 4 KiB RX buffer (about 85 short
frames) capped what got through at its size per poll: ~8,450 frames/s in every flood of
the sobriety bench, whatever the rest of the gateway did; polling again at once, the
same flood went through at ~12,400/s. Semtech's packet forwarder fetches again at once
after any fetch that returned packets and sleeps its 10 ms only after an empty one
(sx1302_hal, ``packet_forwarder/src/lora_pkt_fwd.c``, ``thread_up``, ``FETCH_SLEEP_MS``);
at ordinary rates a poll finds one to three packets and the cadence is unchanged. The
loop condition keeps batches from piling up between the threads when the loop is the
slower side (the chip's buffer then waits, as it would); past the loop, the uplink
buffer bounds what waits in memory.
"""
LOOP_TICK_S = 1.0
"""``after_poll`` runs on the loop at least this often even when nothing is received."""
PLAUSIBLE_EPOCH_NS = 1_704_067_200 * 10**9  # 2024-01-01: earlier wall times are a Pi without RTC


class HeldWrites(Protocol):
    """A link that can keep a batch's publishes queued and write them in one pass."""

    def hold_writes(self) -> None: ...

    def release_writes(self) -> None: ...


@dataclass
class RadioSession:
    """The concentrator session: its random id and the counter-wrap count (radio thread only).

    Uplink contexts carry both, so a downlink answering an uplink from before a
    concentrator restart (whose counter restarted) is recognised as stale.
    ``renew`` is called whenever the chip is started again.
    """

    session_id: int = field(default_factory=lambda: random.getrandbits(32))
    epoch: CounterEpoch = field(default_factory=CounterEpoch)

    def renew(self) -> None:
        self.session_id = random.getrandbits(32)

    def context_for(self, count_us: int) -> bytes:
        """The 12-byte uplink context of a packet stamped ``count_us``."""
        self.epoch.observe(count_us)
        return make_context(count_us, self.session_id, self.epoch.wraps_for(count_us))


class RadioLoop:
    """Receives from the concentrator and submits uplinks to the buffer in arrival order.

    ``after_poll`` runs on the event loop after each batch is submitted (and at
    least every ``LOOP_TICK_S``); ``on_alive`` runs on the radio thread after every
    poll that reached the chip (it must be thread-safe: the watchdog's float store).
    """

    def __init__(
        self,
        concentrator: Concentrator,
        radio_thread: RadioThread,
        submit: Submit,
        *,
        gateway_id: str,
        session: RadioSession,
        poll_interval_s: float,
        forward_crc_error: bool,
        counters: UplinkCounters,
        after_poll: Callable[[], None] | None = None,
        on_alive: Callable[[], None] | None = None,
        edge_check: Callable[[bytes], Verdict] | None = None,
        radio_service: RadioService | None = None,
        gps_time_at: Callable[[int], int | None] | None = None,
        links: Sequence[HeldWrites] = (),
    ) -> None:
        """``links``: the MQTT links uplinks leave by; their writes are held while a
        batch is submitted, so the batch goes out at its end, in the same loop turn."""
        self._conc = concentrator
        self._thread = radio_thread
        self._submit = submit
        self._gateway_id = gateway_id
        self.session = session
        self._radio_service = radio_service
        self._poll_interval_s = poll_interval_s
        self._forward_crc_error = forward_crc_error
        self.counters = counters
        self._after_poll = after_poll
        self._on_alive = on_alive
        self._edge_check = edge_check
        self._gps_time_at = gps_time_at
        """Counter µs → GPS µs (None without lock): places SX1303 fine times in GPS time, and
        gives every uplink its ``time_since_gps_epoch`` (UDP ``tmms``) while GPS is locked."""
        self._links = tuple(links)
        self._next_uplink_id = random.getrandbits(32)
        self._tx_infos = TxInfoCache()
        self._synced = clock_synchronised()
        self._synced_checked = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handed = 0
        """Batches handed to the loop (written by the radio thread only)."""
        self._taken = 0
        """Batches the loop has submitted (written by the loop only)."""
        self._done: asyncio.Future[None] | None = None
        self._last_tick = 0.0

    def stop(self) -> None:
        self._thread.stop_polling()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def run(self) -> None:
        """Poll on the radio thread until ``stop``; raises if a poll crashed (a bug)."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._done = loop.create_future()
        self._last_tick = time.monotonic()
        self._thread.start_polling(self._poll_thread, self._poll_interval_s, self._crashed)
        await self._done

    def _crashed(self, exc: BaseException) -> None:
        """Radio thread: a poll raised something other than HalError; end ``run``."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fail, exc)

    def _fail(self, exc: BaseException) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)

    def _poll_thread(self) -> float | None:
        """Radio thread, every poll: receive; hand a batch to the loop only if there is one."""
        try:
            received = self._poll_radio()
        except HalError as exc:
            log.error("concentrator_receive_failed", error=str(exc))
            return ERROR_BACKOFF_S
        if self._on_alive is not None:
            self._on_alive()
        loop = self._loop
        if loop is None:
            return None
        if received:
            self._handed += 1
            loop.call_soon_threadsafe(self._take, received)
            if len(received) >= REPOLL_BATCH and self._handed - self._taken <= 1:
                return 0.0  # more may be waiting in the chip: fetch again at once
        elif self._after_poll is not None:
            now = time.monotonic()
            if now - self._last_tick >= LOOP_TICK_S:
                self._last_tick = now
                loop.call_soon_threadsafe(self._after_poll)
        return None

    def _take(self, received: Received) -> None:
        """Event loop: a batch the radio thread handed over."""
        try:
            self._deliver(received)
        finally:
            self._taken += 1

    def _deliver(self, received: Received) -> None:
        """Event loop: submit one batch in arrival order."""
        handle = self._handle
        links = self._links
        for link in links:
            link.hold_writes()
        try:
            for packet, context in received:
                handle(packet, context)
        finally:
            for link in links:
                link.release_writes()
        if self._after_poll is not None:
            self._after_poll()

    async def poll_once(self) -> int:
        """Fetch what the chip holds now and submit it (used to drain on stop)."""
        loop = asyncio.get_running_loop()
        received = await loop.run_in_executor(self._thread, self._poll_radio)
        self._deliver(received)
        return len(received)

    def _poll_radio(self) -> Received:
        """Radio thread: receive, stamp contexts, then give the TX side its turn."""
        packets = self._conc.receive()
        if packets:
            context_for = self.session.context_for
            received = [(p, context_for(p.count_us)) for p in packets]
        else:
            received = []
        if self._radio_service is not None:
            self._radio_service()
        return received

    def _clock_synced(self) -> bool:
        now = time.monotonic()
        if now - self._synced_checked > CLOCK_CHECK_INTERVAL_S:
            synced = clock_synchronised()
            if synced and not self._synced:
                log.info("clock_synchronised")
            self._synced, self._synced_checked = synced, now
        return self._synced

    def _fine_time_gps_ns(self, packet: RxPacket) -> int | None:
        """The fine time's PPS edge is a whole GPS second; add the ns the SX1303 measured."""
        if (packet.fine_time_ns is None or packet.fine_time_pps_count_us is None
                or self._gps_time_at is None):
            return None
        pps_gps_us = self._gps_time_at(packet.fine_time_pps_count_us)
        if pps_gps_us is None:
            return None
        return round(pps_gps_us / 1e6) * 1_000_000_000 + packet.fine_time_ns

    def _handle(self, packet: RxPacket, context: bytes) -> None:
        counters = self.counters
        counters.rx_received += 1
        counters.per_frequency[packet.frequency_hz] += 1
        counters.per_modulation[(packet.modulation.value, packet.spreading_factor,
                                 packet.bandwidth_hz, packet.datarate_bps,
                                 packet.code_rate)] += 1
        if packet.crc_status is CrcStatus.CRC_OK:
            counters.rx_ok += 1
        elif not self._forward_crc_error:
            counters.drop("bad_crc" if packet.crc_status is CrcStatus.BAD_CRC else "no_crc")
            return
        flags = ""
        if self._edge_check is not None:
            verdict = self._edge_check(packet.payload)
            if not verdict.forward:
                counters.drop("edge_" + verdict.reason)
                return
            if verdict.flags:
                flags = ",".join(sorted(verdict.flags))
            device = verdict.device  # the edge check parsed the frame: no second parse
        else:
            device = device_key(packet.payload)
        received_ns = time.time_ns()
        synced = self._clock_synced()
        plausible = synced or received_ns >= PLAUSIBLE_EPOCH_NS
        uplink_id = self._next_uplink_id
        self._next_uplink_id = (uplink_id + 1) & 0xFFFFFFFF
        frame = build_uplink_frame(
            packet,
            gateway_id=self._gateway_id,
            uplink_id=uplink_id,
            gw_time_ns=received_ns if plausible else None,
            context=context,
            fine_time_since_gps_epoch_ns=self._fine_time_gps_ns(packet),
            tx_infos=self._tx_infos,
        )
        if flags:
            frame.rx_info.metadata["edge_flags"] = flags
        gps_us = self._gps_time_at(packet.count_us) if self._gps_time_at is not None else None
        if gps_us is not None:
            frame.rx_info.time_since_gps_epoch.FromMicroseconds(gps_us)
        self._submit(
            device,
            frame.SerializeToString(),
            received_ns=received_ns,
            monotonic_ns=boottime_ns(),
            clock_synced=synced,
        )
        counters.forwarded += 1
        counters.last_packet = (packet, device, received_ns)
