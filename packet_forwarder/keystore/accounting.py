"""Counting edge verdicts and logging drops without letting a flood fill the journal.

Anyone with a radio can send frames with random DevAddrs, so nothing here may grow with
the number of distinct addresses: per-(reason, DevAddr) counts live in an LRU of fixed
size (evicted counts move into a per-reason "other" bucket, so the totals stay exact),
and the log limiter remembers a bounded number of keys and also caps how many lines one
reason may write per interval. Every suppressed event is still counted and reported in
the next line for its key, or in one summary line per reason and interval.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any, Final

DEFAULT_MAX_TRACKED: Final = 1024
DEFAULT_LOG_INTERVAL_S: Final = 60.0
DEFAULT_LINES_PER_REASON: Final = 20
"""Distinct (reason, DevAddr) lines one reason may log per interval before summarising."""


class RateLimitedLog:
    """Log an event at most once per interval per key, and at most ``lines_per_group``
    distinct keys per group (the drop reason) per interval.

    ``emit(group, key, **fields)`` logs ``event`` with ``suppressed=<n>`` (how many
    were held back for this key since its last line); overflow beyond the group budget is
    summarised as ``<event>_suppressed`` once the interval ends.
    """

    def __init__(
        self,
        logger: Any,
        event: str,
        now: Callable[[], float],
        *,
        interval_s: float = DEFAULT_LOG_INTERVAL_S,
        lines_per_group: int = DEFAULT_LINES_PER_REASON,
        max_keys: int = DEFAULT_MAX_TRACKED,
    ) -> None:
        self._log = logger
        self._event = event
        self._now = now
        self._interval = interval_s
        self._budget = lines_per_group
        self._max_keys = max_keys
        self._keys: OrderedDict[tuple[str, str], list[float | int]] = OrderedDict()
        self._window_start: dict[str, float] = {}
        self._window_lines: Counter[str] = Counter()
        self._overflow: Counter[str] = Counter()
        self.suppressed_total = 0

    def emit(self, group: str, key: str, **fields: object) -> bool:
        """Log now if allowed; returns whether a line was written."""
        now = self._now()
        self._roll_window(group, now)
        state = self._keys.get((group, key))
        if state is not None and now - state[0] < self._interval:
            state[1] += 1
            self.suppressed_total += 1
            return False
        if self._window_lines[group] >= self._budget:
            self._overflow[group] += 1
            self.suppressed_total += 1
            return False
        self._window_lines[group] += 1
        held = 0 if state is None else int(state[1])
        self._log.warning(self._event, reason=group, **fields, suppressed=held)
        self._keys[(group, key)] = [now, 0]
        self._keys.move_to_end((group, key))
        while len(self._keys) > self._max_keys:
            self._keys.popitem(last=False)
        return True

    def _roll_window(self, group: str, now: float) -> None:
        start = self._window_start.get(group)
        if start is not None and now - start < self._interval:
            return
        if self._overflow[group]:
            self._log.warning(
                self._event + "_suppressed",
                reason=group,
                count=self._overflow[group],
                window_s=self._interval,
            )
        self._window_start[group] = now
        self._window_lines[group] = 0
        self._overflow[group] = 0


class VerdictCounters:
    """Forwarded / dropped / flagged counts, and drops per (reason, DevAddr) bounded."""

    def __init__(self, max_tracked: int = DEFAULT_MAX_TRACKED) -> None:
        self.forwarded: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.flagged: Counter[str] = Counter()
        self.dropped_other: Counter[str] = Counter()
        self._by_device: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._max = max_tracked

    def count_forward(self, reason: str, flags: frozenset[str]) -> None:
        self.forwarded[reason] += 1
        for flag in flags:
            self.flagged[flag] += 1

    def count_drop(self, reason: str, device: str) -> None:
        self.dropped[reason] += 1
        key = (reason, device)
        by_device = self._by_device
        by_device[key] = by_device.get(key, 0) + 1
        by_device.move_to_end(key)
        if len(by_device) > self._max:
            (old_reason, _), count = by_device.popitem(last=False)
            self.dropped_other[old_reason] += count

    def tracked(self) -> int:
        return len(self._by_device)

    def top_drops(self, limit: int = 20) -> list[dict[str, object]]:
        """The devices with most drops, for ``status`` (the ids are public, no keys)."""
        ranked = sorted(self._by_device.items(), key=lambda item: item[1], reverse=True)
        return [
            {"reason": reason, "device": device, "count": count}
            for (reason, device), count in ranked[:limit]
        ]

    def snapshot(self, limit: int = 20) -> dict[str, object]:
        return {
            "forwarded": dict(self.forwarded),
            "dropped": dict(self.dropped),
            "flagged": dict(self.flagged),
            "dropped_untracked": dict(self.dropped_other),
            "top_dropped_devices": self.top_drops(limit),
        }
