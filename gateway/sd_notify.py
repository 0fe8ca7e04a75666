"""systemd service notifications (Type=notify) and the watchdog keep-alive.

READY=1 tells systemd the gateway really works (concentrator running, store
open), so units ordered after it and ``systemctl start`` wait for that, not for
the process to exist. WATCHDOG=1 is sent only while the radio loop makes
progress: a hung SPI read stops the keep-alives and systemd restarts the
service, which is the one recovery a wedged concentrator needs.

The protocol is a datagram of ``KEY=value`` lines to the socket named by
``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). Without
that variable (run by hand, in tests) every call is a no-op.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

__all__ = ["Notifier", "Watchdog", "watchdog_interval_s"]

log = structlog.get_logger(__name__)


def _address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


class Notifier:
    """Sends sd_notify messages; silent when not started by systemd with NOTIFY_SOCKET."""

    def __init__(self, socket_path: str | None) -> None:
        self._address = _address(socket_path) if socket_path else None
        self._sock: socket.socket | None = None
        self.failures = 0
        if self._address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: str) -> bool:
        """Send ``KEY=value`` lines (keys given in lower case are upper-cased)."""
        if self._sock is None or self._address is None:
            return False
        text = "".join(f"{k.upper()}={v.replace(chr(10), ' ')}\n" for k, v in fields.items())
        try:
            self._sock.sendto(text.encode(), self._address)
            return True
        except OSError as exc:
            self.failures += 1
            log.debug("sd_notify_failed", error=str(exc))
            return False

    def ready(self, status: str) -> bool:
        return self.notify(ready="1", status=status)

    def status(self, text: str) -> bool:
        return self.notify(status=text)

    def watchdog(self) -> bool:
        return self.notify(watchdog="1")

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify(stopping="1", status=status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s(environ: Mapping[str, str] | None = None,
                        pid: int | None = None) -> float | None:
    """systemd's WatchdogSec for this process in seconds, or None when no watchdog applies."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1_000_000


class Watchdog:
    """Pets systemd's watchdog only while the radio loop shows signs of life.

    The radio thread calls ``radio_alive()`` after every poll (a float store, safe
    from any thread). ``run()`` wakes every half watchdog period and sends
    WATCHDOG=1 when the last sign of life is younger than ``stall_after_s`` and
    ``is_healthy()`` agrees. When the radio stalls it logs one line and stops
    petting, and systemd restarts the service after WatchdogSec.
    """

    def __init__(self, notifier: Notifier, interval_s: float | None, *,
                 stall_after_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.interval_s = interval_s
        self.stall_after_s = stall_after_s if stall_after_s is not None else (
            interval_s / 2 if interval_s else 30.0)
        self._clock = clock
        self._last_alive = clock()
        self.stalled = False
        self.pets = 0

    @classmethod
    def from_env(cls, notifier: Notifier, environ: Mapping[str, str] | None = None,
                 stall_after_s: float | None = None) -> Watchdog:
        return cls(notifier, watchdog_interval_s(environ), stall_after_s=stall_after_s)

    def radio_alive(self) -> None:
        """Record that the radio loop completed a poll just now.

        One attribute store, atomic under the GIL: no lock, as this runs 100 times a
        second on the radio thread and the reader only needs the latest value."""
        self._last_alive = self._clock()

    def radio_age_s(self) -> float:
        return self._clock() - self._last_alive

    def check(self, is_healthy: Callable[[], bool] | None = None) -> bool:
        """One decision: pet now (and return True) or withhold the keep-alive."""
        age = self.radio_age_s()
        healthy = age < self.stall_after_s and (is_healthy is None or is_healthy())
        if not healthy:
            if not self.stalled:
                log.error("watchdog_withheld", radio_idle_s=round(age, 1),
                          reason="radio loop stalled" if age >= self.stall_after_s
                          else "health check failed")
            self.stalled = True
            return False
        if self.stalled:
            log.info("watchdog_resumed", radio_idle_s=round(age, 1))
        self.stalled = False
        self.pets += 1
        self.notifier.watchdog()
        return True

    async def run(self, is_healthy: Callable[[], bool] | None = None) -> None:
        """Pet every half period until cancelled; returns at once when no watchdog is set."""
        if not self.interval_s:
            return
        period = self.interval_s / 2
        while True:
            self.check(is_healthy)
            await asyncio.sleep(period)
