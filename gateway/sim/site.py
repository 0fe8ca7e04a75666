"""The emulated site around the emulated chip: injected frames, virtual sensors, TX log lines.

:class:`SimSite` is built by the daemon only when the radio door returned an emulator,
and reaches the running gateway through hooks the daemon passes down:

- :meth:`SimSite.after_poll` (radio loop): let the inject socket hand in what waited
  for room in the chip's buffer;
- a replay control datagram on the inject socket attaches a
  :class:`gateway.sim.replay.ReplayFeed` to the chip as its air (one at a time; one
  asked for while another runs is refused), detached once finished or at stop;
- :meth:`SimSite.report_tx` (downlink path's ``on_loaded``): log what the chip itself
  put on the air, decoded from its registers — the end-to-end evidence the subprocess
  tests read;
- :attr:`SimSite.sessions` (edge stage): the virtual sensors' ABP sessions, so their
  frames pass the MIC checks.
"""

from __future__ import annotations

import asyncio

import structlog

from gateway.config import Config, SensorConfig
from gateway.sim.inject import InjectRequest, InjectServer, ReplayControl
from gateway.sim.replay import ReplayFeed, ReplayOpenError, open_replay_file
from gateway.sim.virtual_sensors import VirtualSensors
from hal.emulator.chip import Sx1302Emulator
from packet_forwarder.downlink.jit import QueueItem
from packet_forwarder.keystore import DeviceSession

log = structlog.get_logger("gateway.sim")


def sensor_session(sensor: SensorConfig) -> DeviceSession:
    """The ABP session of a virtual sensor, so the demo's frames pass the MIC check."""
    key = bytes.fromhex(sensor.nwk_s_key)
    return DeviceSession(
        dev_eui=f"0016c001{sensor.dev_addr}", dev_addr=sensor.dev_addr, mac_version="1.0.3",
        nwk_s_enc_key=key, s_nwk_s_int_key=key, f_nwk_s_int_key=key,
        app_s_key=bytes.fromhex(sensor.app_s_key),
    )


class SimSite:
    """The emulated chip's surroundings for one daemon run."""

    def __init__(self, config: Config, emulator: Sx1302Emulator) -> None:
        self._settings = config.concentrator.emulator
        self.emulator = emulator
        self.server: InjectServer | None = None
        self.sensors: VirtualSensors | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.replay: ReplayFeed | None = None
        """The replay attached to the chip, until ``after_poll`` sees it finished."""
        self._air_cpu_at_start = 0
        """The chip's ``air_cpu_ns`` when that replay started."""
        self._stopping = False
        self._tx_seen = len(emulator.tx_log)
        self.sessions: tuple[DeviceSession, ...] = tuple(
            sensor_session(s) for s in self._settings.sensors)
        """Virtual ABP sensors restart their counters at 0 with every run: the edge stage
        starts their sessions afresh too, or it would call their frames replays."""

    async def start(self) -> None:
        """Open the inject socket and start the virtual sensors, as configured."""
        if self._settings.inject_socket is not None:
            self.server = InjectServer(self._settings.inject_socket, self._inject,
                                       on_replay=self._replay)
            await self.server.start()
        if self._settings.sensors:
            self.sensors = VirtualSensors(self._settings.sensors, self.emulator)
            self.tasks.append(asyncio.create_task(self.sensors.run(), name="sensors"))

    def _inject(self, req: InjectRequest) -> bool:
        chip = self.emulator
        if not chip.rx_fifo_has_room(len(req.phy_payload)):
            return False  # the chip's buffer is full: keep it until the radio loop drains
        if req.fault == "truncate_record":
            chip.truncate_next_record()
        elif req.fault == "corrupt_record":
            chip.corrupt_next_record()
        chip.inject(req.phy_payload, frequency_hz=req.frequency_hz, sf=req.sf, bw_hz=req.bw_hz,
                    cr=req.cr, rssi_dbm=req.rssi_dbm, snr_db=req.snr_db, crc_ok=req.crc_ok)
        return True

    def _replay(self, control: ReplayControl) -> None:
        """Event loop: start a replay, or say in one line why not."""
        path = str(control.path)
        if self._stopping:
            log.warning("inject_replay_refused", path=path, reason="stopping")
            return
        if self.replay is not None and not self.replay.done:
            log.warning("inject_replay_refused", path=path, reason="busy",
                        running=str(self.replay.path))
            return
        try:
            file = open_replay_file(control.path)
        except ReplayOpenError as exc:
            log.warning("inject_replay_refused", path=path, reason=exc.reason, detail=exc.detail)
            return
        self.replay = ReplayFeed(file, control.path, control.rate)
        self._air_cpu_at_start = self.emulator.air_cpu_ns
        self.emulator.set_air(self.replay)
        log.info("inject_replay_started", path=path, rate=control.rate)

    def _stop_replay(self) -> None:
        """Detach the replay from the chip (after this the chip asks it nothing more)."""
        feed, self.replay = self.replay, None
        if feed is not None:
            self.emulator.set_air(None)
            feed.stop()
            # what the emulated chip's taking the frames in cost the radio thread (a real
            # chip costs the host nothing for it): benchmarks subtract it per frame
            log.info("inject_replay_emulator_cpu", path=str(feed.path), frames=feed.frames,
                     cpu_ms=round((self.emulator.air_cpu_ns - self._air_cpu_at_start) / 1e6, 3))

    def after_poll(self) -> None:
        """Radio loop hook: hand in injected frames that waited for room in the chip, and
        let go of a replay that has finished."""
        if self.server is not None:
            self.server.resume()
        if self.replay is not None and self.replay.done:
            self._stop_replay()

    def report_tx(self, _item: QueueItem) -> None:
        """Downlink hook (radio thread): log what the emulated chip transmitted."""
        log_entries = self.emulator.tx_log
        entries = log_entries[self._tx_seen:]
        self._tx_seen += len(entries)
        for e in entries:
            log.info("tx_started", source="emulator", count_us=e.start_count_us,
                     frequency=e.frequency_hz, sf=e.spreading_factor, bw=e.bandwidth_hz,
                     power_dbm=e.power_dbm, size=len(e.payload), timing=e.timing.value)

    def drain_socket(self) -> None:
        """At stop: read what the inject socket already holds, and end a replay (the chip
        keeps what it took in; the rest of the file is not played)."""
        self._stopping = True
        if self.server is not None:
            self.server.drain_socket()
        self._stop_replay()

    def pending(self) -> bool:
        """Injected frames still waiting for the chip."""
        return self.server is not None and self.server.pending() > 0

    def close(self) -> None:
        self._stop_replay()
        for task in self.tasks:
            task.cancel()
        if self.server is not None:
            self.server.close()
        if self.sensors is not None:
            self.sensors.stop()
