"""The store's values and its one error type, kept apart so ``store.py`` stays readable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from buffer.types import UplinkRecord

_CORRUPT_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB (primary codes)


class StoreError(Exception):
    """A storage operation failed; nothing of the failed transaction was kept."""

    def __init__(self, operation: str, cause: BaseException) -> None:
        super().__init__(f"{operation}: {cause}")
        self.operation = operation
        self.cause = cause

    @property
    def corrupt(self) -> bool:
        code = getattr(self.cause, "sqlite_errorcode", None)
        return isinstance(code, int) and (code & 0xFF) in _CORRUPT_CODES


@dataclass(frozen=True)
class AgeLimit:
    """Rows older than this are expired: by monotonic time within ``boot_id``,
    by wall time across boots, and never by an unsynchronised wall clock."""

    boot_id: str
    min_monotonic_ns: int
    min_received_ns: int

    def expired(self, record: UplinkRecord) -> bool | None:
        """True/False, or None when the age cannot be known."""
        if record.boot_id == self.boot_id:
            return record.monotonic_ns < self.min_monotonic_ns
        if not record.clock_synced:
            return None
        return record.received_ns < self.min_received_ns


@dataclass(frozen=True)
class Dropped:
    seq: int
    device: str
    reason: str


@dataclass(frozen=True)
class OpenInfo:
    """What the buffer needs to resume: the backlog's size and per-device counts."""

    rows: int
    bytes: int
    max_seq: int
    device_counts: dict[str, int]
    moved_aside: Path | None
    quarantined: int = 0


@dataclass(frozen=True)
class CommitPlan:
    append: Sequence[UplinkRecord]
    delete: Sequence[int]
    max_bytes: int
    age: AgeLimit | None
    seq_high_water: int | None = None
    bounds: bool = True
    quarantine: Sequence[tuple[UplinkRecord, str]] = ()
    """Records the sink could not deliver (not a valid message): kept aside, not retried."""


@dataclass(frozen=True)
class CommitResult:
    dropped: list[Dropped] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    file_bytes: int = 0
    oldest: UplinkRecord | None = None


@dataclass(frozen=True)
class ReadBatch:
    """Rows read after a cursor: the verified records, the rows quarantined on the way,
    and how far the read got (so a batch that lost rows is not taken for the end)."""

    records: list[UplinkRecord]
    quarantined: list[Dropped]
    scanned: int
    last_seq: int | None
