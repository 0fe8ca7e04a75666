"""A burst is written as soon as it is large, not at the end of the interval."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.buffer import FakeSink, make_buffer, rows, run, submit


def test_burst_is_committed_early(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"

    async def go() -> tuple[int, int]:
        buf = make_buffer(path, FakeSink(up=False), commit_early_records=50)
        await buf.open()  # commit_interval_s is an hour: only an early commit writes
        submit(buf, "dA", 49)
        for _ in range(20):
            await asyncio.sleep(0.01)
        before = len(rows(path))
        submit(buf, "dA", 1)
        for _ in range(500):
            if rows(path):
                break
            await asyncio.sleep(0.01)
        after = len(rows(path))
        await buf.abort()
        return before, after

    assert run(go()) == (0, 50)
