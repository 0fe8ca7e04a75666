"""Class B on the radio thread: GPS time in, lock state out, beacons into the TX queue.

Class B needs the gateway to know GPS time on the concentrator's own counter: a
GPS-timed downlink (``time_since_gps_epoch``) is converted to a counter value, and
the beacon leaves every 128 s on the PPS edge of a GPS second that is a multiple of
128. The receiver is read here without blocking (a few hundred bytes a second), on
the radio thread, because each NAV-TIMEGPS must be paired with the PPS-latched
counter, which is an SPI read. While the time reference is fresh the downlink
handler gets a clock; when it goes stale (no PPS pairing for a few seconds, or no
fix) the handler gets ``None`` and answers class B requests GPS_UNLOCKED rather than
guessing from the host clock. Lock changes are one log line each.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import structlog

from gateway.config import Config
from hal.backends import GpsOpener
from hal.gps_time import GpsClock, GpsReader, TimeReferenceError
from packet_forwarder.downlink.beacon import BeaconInfo, BeaconScheduler
from packet_forwarder.downlink.handler import DownlinkHandler
from packet_forwarder.downlink.jit import JitQueue
from packet_forwarder.downlink.status import TxStatus
from packet_forwarder.regions.model import Region

log = structlog.get_logger("gateway.class_b")


class GpsTimeAdapter:
    """The downlink path's view of GPS time (µs, ``None`` without lock) over ``GpsClock``."""

    def __init__(self, clock: GpsClock) -> None:
        self.clock = clock

    def count_at(self, gps_time_us: int) -> int | None:
        """None without lock; raises ``GpsTimeRangeError`` (a ``ValueError``) out of range."""
        try:
            return self.clock.gps_ns_to_count(gps_time_us * 1000)
        except TimeReferenceError:
            return None

    def gps_time_at(self, count_us: int) -> int | None:
        try:
            return self.clock.count_to_gps_ns(count_us) // 1000
        except TimeReferenceError:
            return None


@dataclass
class ClassBCounters:
    beacons_queued: int = 0
    beacons_refused: Counter[str] = field(default_factory=Counter)
    gps_read_errors: int = 0


class ClassB:
    """Polled from the radio thread: the receiver every few polls, beacons on a new GPS second."""

    def __init__(self, reader: GpsReader, handler: DownlinkHandler,
                 beacons: BeaconScheduler | None = None) -> None:
        self.reader = reader
        self.handler = handler
        self.beacons = beacons
        self._time = GpsTimeAdapter(reader.clock)
        self.locked = False
        self.counters = ClassBCounters()
        self._beacon_syncs = -1

    def service(self, now_count_us: int) -> None:
        """Read the receiver and, on a new GPS second, queue the beacons due."""
        if self.poll_receiver():
            self.queue_beacons(now_count_us)

    @property
    def paired_seconds(self) -> int:
        """How many GPS seconds were paired with their PPS latch so far (grows by one a second
        while locked): the radio thread reads the receiver less often right after one."""
        return self.reader.status.syncs

    def poll_receiver(self) -> bool:
        """Read what the receiver sent (no SPI unless a time message needs its PPS latch).

        Returns whether beacons should be looked at now: locked, beacons on, and a new
        GPS second paired since they last were. Only then does the caller need to read
        the counter for :meth:`queue_beacons`, so an idle poll stays one register read.
        """
        try:
            self.reader.poll()
        except OSError as exc:
            self.counters.gps_read_errors += 1
            if self.counters.gps_read_errors == 1:
                log.error("gps_read_failed", error=str(exc))
        locked = self.reader.clock.valid
        if locked != self.locked:
            self.locked = locked
            self.handler.gps = self._time if locked else None
            if locked:
                log.info("gps_locked", syncs=self.reader.status.syncs)
            else:
                log.warning("gps_lost", hint="class B downlinks are refused GPS_UNLOCKED")
        return (locked and self.beacons is not None
                and self.reader.status.syncs != self._beacon_syncs)

    def queue_beacons(self, now_count_us: int) -> None:
        """Queue the beacons due around ``now_count_us``: once per new GPS second, not
        every poll (beacons are queued 128 s ahead)."""
        if self.beacons is None:
            return
        self._beacon_syncs = self.reader.status.syncs
        for status in self.beacons.poll(now_count_us, self._time):
            if status is TxStatus.OK:
                self.counters.beacons_queued += 1
            else:
                self.counters.beacons_refused[status.name] += 1
                log.warning("beacon_refused", status=status.name)

    def gps_time_at(self, count_us: int) -> int | None:
        """GPS time (µs since the GPS epoch) at a counter value; None without lock."""
        return self._time.gps_time_at(count_us) if self.locked else None

    def position(self) -> tuple[float, float, float] | None:
        """Latitude, longitude (degrees) and altitude (m) of the receiver's fix, if any."""
        gga, rmc = self.reader.status.gga, self.reader.status.rmc
        if gga is not None and gga.fix_quality > 0 and gga.latitude is not None \
                and gga.longitude is not None:
            return gga.latitude, gga.longitude, gga.altitude_m or 0.0
        if rmc is not None and rmc.valid and rmc.latitude is not None \
                and rmc.longitude is not None:
            return rmc.latitude, rmc.longitude, 0.0
        return None

    def reset(self) -> None:
        """The concentrator restarted: the counter restarted too, so start over."""
        self.reader.clock.reference = None
        if self.beacons is not None:
            self.beacons.reset()

    def snapshot(self) -> dict[str, object]:
        return {"gps_locked": self.locked, "beacons_queued": self.counters.beacons_queued,
                "beacons_refused": dict(self.counters.beacons_refused)}


def build_class_b(config: Config, open_gps: GpsOpener | None, board_name: str,
                  handler: DownlinkHandler, region: Region, queue: JitQueue) -> ClassB | None:
    """The board's GPS receiver and the beacon; ``None`` (with one log line) when there is none.

    ``open_gps`` comes from the radio door: the board's UART receiver paired with the
    chip's PPS-latched counter, or the emulated one whose seconds pass with the chip.
    """
    settings = config.class_b
    if settings.gps == "none":
        return None
    if open_gps is None:
        log.info("gps_not_fitted", board=board_name, class_b="refused GPS_UNLOCKED")
        return None
    try:
        reader = open_gps()
    except (OSError, ValueError) as exc:
        log.error("gps_unavailable", board=board_name, error=str(exc))
        return None
    beacons = None
    if settings.beacon:
        if region.beacon is None:
            log.warning("beacon_not_defined", region=region.name)
        else:
            beacons = BeaconScheduler(
                region, queue, info=BeaconInfo(settings.latitude, settings.longitude),
                power_eirp_dbm=settings.beacon_power_eirp_dbm,
                antenna_gain_dbi=config.downlink.antenna_gain_dbi)
    return ClassB(reader, handler, beacons)
