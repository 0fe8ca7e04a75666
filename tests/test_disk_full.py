"""A really full disk under the buffer: forwarding goes on, held frames wait in a
bounded memory queue, one error line per minute, and persisting resumes when
space returns.

The test mounts its own 1 MiB tmpfs (it needs root; without it the test is
skipped, and ``test_buffer_forwarding`` still covers SQLITE_FULL by injection).
Time is a fake clock, so "once per minute" is checked without waiting a minute.
A read-only remount takes the same path (SQLITE_READONLY is a ``StoreError`` like
SQLITE_FULL), but the kernel refuses ``remount,ro`` while the file is open for
writing, so it is not staged here.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.support.buffer import FakeClock, FakeSink, make_buffer, rows, submit

BODY = bytes(200)


def _mount(target: Path, *options: str) -> bool:
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs",
                             str(target)], capture_output=True, timeout=10)
    return result.returncode == 0


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or not _mount(mnt, "size=1m", "mode=0700"):
        pytest.skip("cannot mount a size-limited tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)


def fill(folder: Path) -> Path:
    """Write zeros until the filesystem says ENOSPC."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(4096))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def storage_errors(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in logs if e["event"] == "buffer_storage_error"]


def test_disk_full_keeps_forwarding_and_resumes(small_fs: Path) -> None:
    path = small_fs / "buffer.sqlite"
    clock = FakeClock()

    async def main() -> None:
        sink = FakeSink(up=False)
        buf = make_buffer(path, sink, clock, memory_max_records=800)
        await buf.open()
        filler = fill(small_fs)
        with capture_logs() as logs:
            held = submit(buf, "held", 1000, body=BODY, clock=clock)
            for _ in range(10):  # ten commit intervals within one minute
                clock.advance(1.0)
                await buf.flush()
            stats = buf.stats()
            assert not stats.storage_ok and stats.persisted_rows == 0
            assert stats.dropped == {"memory_full": 200}  # bounded: the oldest went first
            assert len(storage_errors(logs)) == 1
            assert storage_errors(logs)[0]["log_level"] == "error"
            clock.advance(60.0)
            await buf.flush()
            assert len(storage_errors(logs)) == 2  # once per minute, not per commit

            sink.up = True  # the line is back while the disk is still full
            live = submit(buf, "live", 5, body=BODY, clock=clock)
            assert sink.sent_seqs()[:5] == live and not any(d.replayed for d in sink.log[:5])
            sink.ack_all()  # acknowledged: never needed the disk
            assert buf.stats().dropped == {"memory_full": 205}  # the queue stayed bounded

            sink.up = False
            filler.unlink()  # space returns
            clock.advance(1.0)
            await buf.flush()
            stats = buf.stats()
            assert stats.storage_ok and stats.persisted_rows == 795
        await buf.close()
        assert [s for s, _ in rows(path)] == held[205:]

    asyncio.run(main())
