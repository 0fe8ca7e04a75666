"""The daemon's side of the edge checks: open the key store, flush counters, key sync.

``EdgeFilter.check`` runs on the event loop for every frame (pure CPU). Everything
that touches the key store's SQLite file — opening, the periodic frame-counter
flush, remote key sync, closing — runs on one dedicated store thread, so the
radio path never waits for the SD card.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import structlog

from gateway.config import Config
from packet_forwarder.edge_filter import EdgeFilter, EdgePolicy
from packet_forwarder.key_sync import KeySync
from packet_forwarder.keystore import DeviceSession, KeyStore, KeyStoreError

log = structlog.get_logger(__name__)


def _open_filter(config: Config, fresh: Sequence[DeviceSession]) -> EdgeFilter:
    policy = EdgePolicy.from_mapping(config.edge.policy)
    if config.keys.store is None:
        return EdgeFilter(policy)
    config.keys.store.parent.mkdir(parents=True, exist_ok=True)
    store = KeyStore(config.keys.store, config.keys.key_file, track_shutdown=True)
    if fresh:
        # sessions handed in by the wiring (the simulator's virtual sensors) start afresh
        store.apply(remove=[s.dev_eui for s in fresh])
        store.apply(sessions=list(fresh))
    return EdgeFilter(policy, store)


class EdgeStage:
    """Owns the edge filter, its store thread and the optional key-sync handler."""

    def __init__(self, config: Config, extra_sessions: Sequence[DeviceSession] = ()) -> None:
        self._config = config
        self._extra_sessions = tuple(extra_sessions)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="keystore")
        self.filter: EdgeFilter | None = None
        self._sync: KeySync | None = None
        self._flush_task: asyncio.Task[None] | None = None

    async def open(self, gateway_id: str) -> EdgeFilter:
        """Open the store; raises ``KeyStoreError`` with a message fit for one log line."""
        loop = asyncio.get_running_loop()
        self.filter = await loop.run_in_executor(self._executor, _open_filter, self._config,
                                                 self._extra_sessions)
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
        log.debug("key_sync_handled", applied=applied)  # refusals: KeySync's limited line
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
