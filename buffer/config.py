"""Settings of the uplink buffer, filled in by the daemon from its TOML configuration."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BufferConfig:
    """How much the buffer may keep, for how long, and how fast it replays.

    ``commit_interval_s`` trades the loss window of an unclean stop (power cut)
    against flash wear: every interval costs one transaction, whatever the rate.
    ``read_batch_records`` is how much backlog is read back from SQLite at a time,
    so a week of backlog never has to sit in memory.
    """

    path: Path
    commit_interval_s: float = 1.0
    max_bytes: int = 256 * 1024 * 1024
    max_age_s: float = 30 * 86400
    drain_rate_per_s: float = 100.0
    """Replay rate of the backlog after an outage; 0 means unlimited."""
    drain_burst_s: float = 0.1
    """How much of the drain rate may go out at once (a reconnect, a freed window)."""
    fresh_s: float = 1.0
    """A held frame younger than this that found its device idle goes out ahead of the
    drain rate (a momentarily full window); older ones (held through an outage) are
    paced like the rest of the backlog."""
    memory_max_records: int = 100_000
    """Records kept in memory while SQLite cannot take them (disk full, read-only)."""
    read_batch_records: int = 1000
    commit_early_records: int = 1000
    """A burst that leaves this many records unwritten is committed at once rather
    than at the end of the interval: memory (RSS) stays small whatever the rate."""
    retry_after_s: float = 1.0
    """After a failed send, how long to pause unless the sink says it is ready sooner."""
