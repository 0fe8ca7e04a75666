"""Logging output for the daemon and CLI: the only place that configures structlog.

Libraries below ``gateway/`` only call ``structlog.get_logger(__name__)``. Here we
choose how events look: native journald fields under systemd (so ``journalctl``
can match on DEVADDR, REASON, ...), coloured lines on a terminal, one
``key=value`` line per event otherwise, or JSON. Two processors sit in front of
every output: secrets are redacted (a log is shared in bug reports, a broker
password or session key must never be in it) and repeated warnings are
rate-limited with a count of what was held back (a flapping link must not fill
the SD card).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import structlog

from gateway.journald import JOURNAL_SOCKET, JournalSender, event_to_fields, stderr_is_journal

if TYPE_CHECKING:
    from gateway.config import Config

__all__ = [
    "REDACTED",
    "JournalLogger",
    "RateLimiter",
    "SecretRedactor",
    "configure_logging",
    "secrets_from_config",
]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "warn": logging.WARNING, "error": logging.ERROR, "exception": logging.ERROR,
           "critical": logging.CRITICAL}

REDACTED = "[redacted]"
SECRET_KEYS = re.compile(r"pass(word|wd)?$|secret|token|_s_key$|app_key|nwk_key|private_key|psk",
                         re.IGNORECASE)
"""Event keys whose values are never written, whatever they hold."""

SYSLOG_IDENTIFIER = "lora-gateway"
EventDict = MutableMapping[str, Any]


class SecretRedactor:
    """structlog processor: blanks secret-named keys and any known secret value.

    Key names catch the obvious (``password=...``); the value scan catches a secret
    that ended up inside an error text or a URL. Secrets shorter than 4 characters
    are not scanned for: they would redact ordinary words.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        unique = {s for s in secrets if len(s) >= 4}
        unique |= {s.upper() for s in unique} | {s.lower() for s in unique}
        self._secrets = sorted(unique, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __call__(self, _logger: Any, _method: str, event: EventDict) -> EventDict:
        for key, value in list(event.items()):
            if SECRET_KEYS.search(key):
                event[key] = REDACTED
            elif isinstance(value, str):
                event[key] = self._scrub(value)
            elif self._secrets and not isinstance(value, int | float | bool | type(None)):
                text = str(value)
                scrubbed = self._scrub(text)
                if scrubbed != text:
                    event[key] = scrubbed
        return event


def secrets_from_config(config: Config) -> list[str]:
    """Every secret value a configuration holds: the MQTT password and emulator session keys."""
    found = [config.mqtt.password] if config.mqtt.password else []
    for sensor in config.concentrator.emulator.sensors:
        found += [sensor.nwk_s_key, sensor.app_s_key]
    return found


@dataclass
class _Window:
    start: float
    passed: int
    suppressed: int


class RateLimiter:
    """structlog processor: at most ``burst`` events per key in each ``window_s``.

    The key is the event name plus the values of ``key_fields``, so "mqtt_connect_failed
    reason=refused" and "... reason=timeout" are limited separately. The first event
    after a window with drops carries ``suppressed=N`` (how many were held back), so
    the count is never lost. Only events at ``min_level`` or above are limited:
    repetitive errors are the problem, and info lines are state changes that must all
    appear. ``report_suppressed`` logs the counts of windows that went quiet.
    """

    def __init__(self, *, burst: int = 5, window_s: float = 60.0,
                 key_fields: tuple[str, ...] = ("reason", "operation", "server", "callback"),
                 min_level: str = "warning", clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 1024) -> None:
        self.burst = burst
        self.window_s = window_s
        self.key_fields = key_fields
        self.min_level = _LEVELS[min_level]
        self._clock = clock
        self._max_keys = max_keys
        self._windows: OrderedDict[tuple[str, ...], _Window] = OrderedDict()
        self._lock = threading.Lock()

    def _key(self, event: Mapping[str, Any]) -> tuple[str, ...]:
        return (str(event.get("event")), *(repr(event.get(f)) for f in self.key_fields))

    def __call__(self, _logger: Any, method: str, event: EventDict) -> EventDict:
        level = _LEVELS.get(str(event.get("level", method)), logging.INFO)
        if level < self.min_level:
            return event
        key = self._key(event)
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None or now - window.start >= self.window_s:
                held = window.suppressed if window else 0
                self._windows[key] = _Window(start=now, passed=1, suppressed=0)
                self._windows.move_to_end(key)
                while len(self._windows) > self._max_keys:
                    self._windows.popitem(last=False)
                if held:
                    event["suppressed"] = held
                return event
            if window.passed < self.burst:
                window.passed += 1
                return event
            window.suppressed += 1
        raise structlog.DropEvent

    def report_suppressed(self, logger: Any) -> int:
        """Log one ``log_events_suppressed`` line per finished window that dropped events.

        Call it now and then (e.g. every minute); returns how many lines it wrote.
        """
        now = self._clock()
        due: list[tuple[str, int]] = []
        with self._lock:
            for key, window in list(self._windows.items()):
                if window.suppressed and now - window.start >= self.window_s:
                    due.append((key[0], window.suppressed))
                    del self._windows[key]
        for name, count in due:
            logger.info("log_events_suppressed", suppressed_event=name, suppressed=count,
                        window_s=self.window_s)
        return len(due)


class JournalLogger:
    """structlog logger writing each event as native journal fields.

    If journald cannot be reached (shutdown, tests), the summary line goes to
    ``fallback`` so no event disappears silently.
    """

    def __init__(self, sender: JournalSender, fallback: TextIO) -> None:
        self._sender = sender
        self._fallback = fallback
        self._lock = threading.Lock()

    def msg(self, fields: Mapping[str, str]) -> None:
        if not self._sender.send(fields):
            with self._lock:
                self._fallback.write(fields.get("MESSAGE", "") + "\n")
                self._fallback.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _journal_renderer(_logger: Any, _method: str, event: EventDict) -> Any:
    return ((event_to_fields(event, identifier=SYSLOG_IDENTIFIER),), {})


def _choose_format(fmt: str, out: Any, environ: Mapping[str, str], explicit_stream: bool) -> str:
    if fmt != "auto":
        return fmt
    if not explicit_stream and stderr_is_journal(environ):
        return "journal"
    return "console" if getattr(out, "isatty", lambda: False)() else "keyvalue"


def configure_logging(level: str = "info", fmt: str = "auto", stream: Any = None, *,
                      secrets: Iterable[str] = (), rate_limiter: RateLimiter | None = None,
                      environ: Mapping[str, str] | None = None,
                      journal_socket: Path = JOURNAL_SOCKET,
                      drop_events: frozenset[str] = frozenset()) -> RateLimiter:
    """Set up structlog once per process; safe to call again (tests, CLI subcommands).

    ``fmt`` is auto, console, keyvalue, json or journal; auto picks journal when
    systemd connected stderr to the journal. Returns the rate limiter in use, so the
    daemon can call ``report_suppressed`` on it now and then. ``drop_events`` names
    events not to write at all (the demo, which has already explained them once).
    """
    out = stream if stream is not None else sys.stderr
    env = os.environ if environ is None else environ
    chosen = _choose_format(fmt, out, env, stream is not None)
    limiter = rate_limiter or RateLimiter()
    processors: list[Any] = [
        *([_EventDropper(drop_events)] if drop_events else []),
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        limiter,
        structlog.processors.format_exc_info,
        SecretRedactor(secrets),
    ]
    factory: Callable[..., Any]
    if chosen == "journal":
        logger = JournalLogger(JournalSender(journal_socket), out)
        processors.append(_journal_renderer)
        factory = lambda *_args: logger  # noqa: E731 - structlog wants a factory callable
    else:
        processors += [structlog.processors.TimeStamper(fmt="iso", utc=True), _renderer(chosen)]
        factory = structlog.PrintLoggerFactory(file=out)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    return limiter


@dataclass(frozen=True)
class _EventDropper:
    """structlog processor: drops the named events."""

    events: frozenset[str]

    def __call__(self, _logger: Any, _name: str, event_dict: EventDict) -> EventDict:
        if event_dict.get("event") in self.events:
            raise structlog.DropEvent
        return event_dict


def _renderer(fmt: str) -> Any:
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=True)
    if fmt == "json":
        return structlog.processors.JSONRenderer(sort_keys=False)
    return structlog.processors.LogfmtRenderer(
        key_order=["timestamp", "level", "event"], drop_missing=True
    )
