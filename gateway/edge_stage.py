"""The daemon's side of the edge checks: open the key store, flush counters, key sync.

``EdgeFilter.check`` runs on the event loop for every frame (pure CPU). Everything
that touches the key store's SQLite file — opening, the periodic frame-counter
flush, remote key sync, closing — runs on one dedicated store thread, so the
radio path never waits for the SD card.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor

import structlog

from gateway.config import Config, SensorConfig
from packet_forwarder.edge_filter import EdgeFilter, EdgePolicy
from packet_forwarder.key_sync import KeySync
from packet_forwarder.keystore import DeviceSession, KeyStore, KeyStoreError

log = structlog.get_logger(__name__)


def sensor_session(sensor: SensorConfig) -> DeviceSession:
    """The ABP session of a virtual sensor, so the demo's frames pass the MIC check."""
    key = bytes.fromhex(sensor.nwk_s_key)
    return DeviceSession(
        dev_eui=f"0016c001{sensor.dev_addr}", dev_addr=sensor.dev_addr, mac_version="1.0.3",
        nwk_s_enc_key=key, s_nwk_s_int_key=key, f_nwk_s_int_key=key,
        app_s_key=bytes.fromhex(sensor.app_s_key),
    )


def _open_filter(config: Config) -> EdgeFilter:
    policy = EdgePolicy.from_mapping(config.edge.policy)
    if config.keys.store is None:
        return EdgeFilter(policy)
    config.keys.store.parent.mkdir(parents=True, exist_ok=True)
    store = KeyStore(config.keys.store, config.keys.key_file, track_shutdown=True)
    sensors = config.concentrator.emulator.sensors
    if config.concentrator.backend == "emulator" and sensors:
        # Virtual ABP sensors restart their counters at 0 with every demo run: start
        # their sessions afresh too, or the edge check would call them replays.
        fresh = [sensor_session(s) for s in sensors]
        store.apply(remove=[s.dev_eui for s in fresh])
        store.apply(sessions=fresh)
    return EdgeFilter(policy, store)


class EdgeStage:
    """Owns the edge filter, its store thread and the optional key-sync handler."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="keystore")
        self.filter: EdgeFilter | None = None
        self._sync: KeySync | None = None
        self._flush_task: asyncio.Task[None] | None = None

    async def open(self, gateway_id: str) -> EdgeFilter:
        """Open the store; raises ``KeyStoreError`` with a message fit for one log line."""
        loop = asyncio.get_running_loop()
        self.filter = await loop.run_in_executor(self._executor, _open_filter, self._config)
        secret_file = self._config.keys.sync_secret_file
        if secret_file is not None and self.filter.store is not None:
            secret = await loop.run_in_executor(self._executor, secret_file.read_bytes)
            self._sync = KeySync(self.filter.store, self.filter.index, gateway_id=gateway_id,
                                 secret=secret.strip())
        self._flush_task = asyncio.create_task(self._flush_forever(), name="keystore-flush")
        return self.filter

    async def _flush_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._config.keys.flush_interval_s)
            assert self.filter is not None
            try:
                await loop.run_in_executor(self._executor, self.filter.flush)
            except KeyStoreError as exc:
                log.error("keystore_flush_failed", error=str(exc))

    async def handle_sync(self, payload: bytes) -> bytes | None:
        """Apply one ``command/keys`` message; returns the ack to publish (None: sync off)."""
        if self._sync is None:
            log.warning("key_sync_disabled", size=len(payload),
                        hint="set keys.sync_secret_file to accept command/keys")
            return None
        loop = asyncio.get_running_loop()
        ack, applied = await loop.run_in_executor(self._executor, self._sync.handle, payload)
        log.info("key_sync_handled", applied=applied)
        return ack

    async def close(self) -> None:
        if self._flush_task is not None:
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush_task
        if self.filter is not None:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self.filter.close)
            except KeyStoreError as exc:
                log.error("keystore_close_failed", error=str(exc))
        self._executor.shutdown(wait=True)
