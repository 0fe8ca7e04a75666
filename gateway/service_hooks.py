"""What the daemon tells the world about itself: systemd, the status socket, state-change lines.

Kept apart from the wiring in ``daemon.py`` so that each job is small: sd_notify
READY/STOPPING and the watchdog (fed only while the radio loop makes progress),
the local status socket, and the one log line per state change a maintainer
reads months later — backhaul down/up with the outage length and the backlog,
disk nearly full, and a minute's summary of rate-limited log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog

from gateway.log import RateLimiter
from gateway.sd_notify import Notifier, Watchdog
from gateway.status_server import StatusServer

log = structlog.get_logger("gateway.service")

HOUSEKEEPING_INTERVAL_S = 60.0
DISK_NEARLY_FULL_BYTES = 200 * 1024 * 1024


class ServiceHooks:
    def __init__(
        self,
        *,
        status_socket: Path,
        snapshot: Callable[[], Mapping[str, Any]],
        backlog: Callable[[], int],
        disk_path: Path,
        limiter: RateLimiter | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.notifier = Notifier.from_env(environ)
        self.watchdog = Watchdog.from_env(self.notifier, environ)
        self._status = StatusServer(status_socket, snapshot)
        self._backlog = backlog
        self._disk_path = disk_path
        self._limiter = limiter
        self._tasks: list[asyncio.Task[None]] = []
        self._backhaul_up: bool | None = None
        self._backhaul_since = time.monotonic()
        self._disk_low = False
        self._closing = False

    async def start(self, is_healthy: Callable[[], bool]) -> None:
        try:
            await self._status.start()
        except OSError as exc:
            log.warning("status_socket_unavailable", path=str(self._status.path), error=str(exc))
        self._tasks = [
            asyncio.create_task(self.watchdog.run(is_healthy), name="watchdog"),
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
        ]

    def ready(self, detail: str) -> None:
        self.notifier.ready(detail)

    def backhaul_changed(self, up: bool) -> None:
        """One line per backhaul state change, with how long the previous state lasted."""
        now = time.monotonic()
        lasted = round(now - self._backhaul_since, 1)
        if up and self._backhaul_up is False:
            log.info("backhaul_up", outage_s=lasted, backlog=self._backlog())
        elif not up and self._backhaul_up and not self._closing:
            # Not on our own shutdown: a warning there would send a maintainer looking
            # for an outage that never happened (``mqtt_disconnected ... stopping`` says it).
            log.warning("backhaul_down", was_up_s=lasted, backlog=self._backlog())
        if up != self._backhaul_up:
            self._backhaul_since = now
        self._backhaul_up = up
        self.notifier.status("backhaul up" if up else "backhaul down, buffering")

    def backhaul_state(self) -> dict[str, Any]:
        state = {None: "connecting", True: "up", False: "down"}[self._backhaul_up]
        return {"state": state, "since_s": round(time.monotonic() - self._backhaul_since, 1)}

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
            self.check_disk()
            if self._limiter is not None:
                self._limiter.report_suppressed(log)

    def check_disk(self) -> None:
        folder = self._disk_path.parent
        try:
            st = os.statvfs(folder)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        low = free < DISK_NEARLY_FULL_BYTES
        if low and not self._disk_low:
            log.warning("disk_nearly_full", path=str(folder), free_mb=round(free / 1e6, 1))
        elif self._disk_low and not low:
            log.info("disk_space_recovered", path=str(folder), free_mb=round(free / 1e6, 1))
        self._disk_low = low

    async def close(self) -> None:
        self._closing = True
        self.notifier.stopping()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._status.close()
        self.notifier.close()
