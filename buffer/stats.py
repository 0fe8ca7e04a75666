"""A snapshot of the buffer's state for the stats publisher and for tests."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BufferStats:
    """Counts since the buffer was opened, plus its current depth.

    ``depth`` counts every record held and not yet acknowledged: in memory
    (waiting, in flight, not yet written) and on disk only.
    """

    depth: int
    memory_records: int
    disk_only_records: int
    in_flight: int
    oldest_age_s: float | None
    persisted_rows: int
    bytes_on_disk: int
    submitted: int
    sent: int
    acked: int
    nacked: int
    dropped: dict[str, int] = field(default_factory=dict)
    storage_ok: bool = True
    last_storage_error: str | None = None

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())
