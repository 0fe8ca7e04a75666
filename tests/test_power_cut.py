"""Power cut: every frame of a commit that returned survives, and the file opens clean.

Method, and why: Python's ``sqlite3`` cannot install a VFS, so the writes are
recorded one level lower, as system calls. The real buffer (``UplinkBuffer`` with
its ``FrameStore`` and the production pragmas) runs in a child under
``strace -f``, which records every ``pwrite64``/``write`` with its bytes and offset,
every ``fsync``/``fdatasync``, ``ftruncate`` and ``unlink`` of the buffer's files,
in order, plus the child's marker line after each commit returns. From that log
the file is rebuilt as a power cut at event ``k`` would leave it on a card that
keeps only what was synced: for each file, everything up to its last completed
fsync, then a random subset of the writes issued since (lost, kept, reordered —
what a page cache and a flash translation layer may do). ``-shm`` is left out: it
is rebuilt from the WAL at open. The rebuilt file is opened with the gateway's
``FrameStore`` (which runs ``quick_check`` and verifies every row's checksum) and
must hold every unacknowledged frame covered by the last marker before ``k``.

A control run with ``synchronous=NORMAL`` (the old setting) must lose frames at
some cut points, which shows the method can see the failure it guards against.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from buffer.store import FrameStore

pytestmark = pytest.mark.slow

CUTS = 120
ROUNDS = 160  # enough frames that the WAL is checkpointed into the file at least once
_LINE = re.compile(r"^(\d+) (\w+)\((.*)\) = (-?\d+)")
_FD = re.compile(r"^\d+<((?:\\x[0-9a-f]{2})*)>(.*)$")
_DATA = re.compile(r'^, "((?:\\x[0-9a-f]{2})*)", (\d+), (\d+)$')
_PATH_ARG = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace("\\x", ""))


@dataclass
class Event:
    kind: str  # write, sync, truncate, unlink, marker
    name: str = ""
    offset: int = 0
    data: bytes = b""
    size: int = 0
    seq: int = 0


def parse(trace: Path, folder: Path) -> list[Event]:
    """The buffer files' writes and syncs, and the markers, in the order they completed."""
    events: list[Event] = []
    pending: dict[str, str] = {}
    for raw in trace.read_text().splitlines():
        pid, _, rest = raw.partition(" ")
        rest = rest.lstrip()  # strace pads short pids to a common width
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len(" <unfinished ...>")]
            continue
        if rest.startswith("<... "):
            rest = pending.pop(pid) + rest.split("resumed>", 1)[1]
        m = _LINE.match(f"{pid} {rest}")
        if m is None or int(m.group(4)) < 0:
            continue
        call, args = m.group(2), m.group(3)
        if call in ("unlink", "unlinkat"):
            found = _PATH_ARG.search(args)
            path = Path(_hex(found.group(1)).decode()) if found else None
            if path is not None and path.parent == folder:
                events.append(Event("unlink", path.name))
            continue
        fd = _FD.match(args)
        if fd is None:
            continue
        path = Path(_hex(fd.group(1)).decode())
        if path.parent != folder or path.name.endswith("-shm"):
            continue
        tail = fd.group(2)
        if path.name == "marker":
            if call == "write":
                text = _hex(_DATA.match(tail + ", 0").group(1)).decode()  # type: ignore[union-attr]
                events.append(Event("marker", seq=int(text.split()[1])))
            continue
        if call == "pwrite64":
            d = _DATA.match(tail)
            assert d is not None, raw[:200]
            data = _hex(d.group(1))
            assert len(data) == int(m.group(4)), "short write or truncated trace"
            events.append(Event("write", path.name, int(d.group(3)), data))
        elif call == "write":
            raise AssertionError(f"write() without offset to {path.name}: model it first")
        elif call in ("fsync", "fdatasync"):
            events.append(Event("sync", path.name))
        elif call == "ftruncate":
            events.append(Event("truncate", path.name, size=int(tail.lstrip(", "))))
    return events


@dataclass
class FileModel:
    synced: bytearray = field(default_factory=bytearray)
    unsynced: list[tuple[int, bytes]] = field(default_factory=list)
    exists: bool = True


def _apply(buf: bytearray, offset: int, data: bytes) -> None:
    if len(buf) < offset:
        buf.extend(bytes(offset - len(buf)))
    buf[offset:offset + len(data)] = data


def rebuild(events: list[Event], cut: int, rng: random.Random, out: Path) -> int:
    """Write the files as a cut before ``events[cut]`` leaves them; returns the highest
    seq whose commit had returned (0 if none)."""
    files: dict[str, FileModel] = {}
    covered = 0
    for ev in events[:cut]:
        if ev.kind == "marker":
            covered = ev.seq
            continue
        f = files.setdefault(ev.name, FileModel())
        if ev.kind == "write":
            f.exists = True
            f.unsynced.append((ev.offset, ev.data))
        elif ev.kind == "sync":
            for offset, data in f.unsynced:
                _apply(f.synced, offset, data)
            f.unsynced.clear()
        elif ev.kind == "truncate":  # metadata: taken as durable when it completes
            for offset, data in f.unsynced:
                _apply(f.synced, offset, data)
            f.unsynced.clear()
            del f.synced[ev.size:]
        elif ev.kind == "unlink":
            files[ev.name] = FileModel(exists=False)
    out.mkdir(parents=True)
    for name, f in files.items():
        if not f.exists:
            continue
        content = bytearray(f.synced)
        kept = [w for w in f.unsynced if rng.random() < 0.5]
        rng.shuffle(kept)  # the card may persist them in any order
        for offset, data in kept:
            _apply(content, offset, data)
        (out / name).write_bytes(bytes(content))
    return covered


def record(folder: Path, sync: str) -> list[Event]:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    folder.mkdir()
    trace = folder / "trace"
    subprocess.run(
        [strace, "-f", "-qq", "-y", "-xx", "-s", "1000000", "-o", str(trace),
         "-e", "trace=write,pwrite64,fsync,fdatasync,ftruncate,unlink,unlinkat",
         sys.executable, "-m", "tests.powercut_writer", str(folder), str(ROUNDS), sync],
        check=True, capture_output=True, timeout=300, cwd=Path(__file__).parent.parent)
    events = parse(trace, folder)
    assert events, (folder, trace.read_text()[:2000])
    return events


def lost_at_cuts(events: list[Event], tmp: Path, cuts: int) -> tuple[int, int, int, list[str]]:
    """(cut points checked, cuts that lost a committed frame, frames lost, failures)."""
    rng = random.Random(2024)
    points = sorted(rng.sample(range(1, len(events) + 1), min(cuts, len(events))))
    losing = lost = 0
    problems: list[str] = []
    for n, cut in enumerate(points):
        folder = tmp / f"cut{n}"
        covered = rebuild(events, cut, rng, folder)
        store = FrameStore(folder / "b.sqlite")
        info = store.open()
        if info.moved_aside is not None or info.quarantined:
            problems.append(f"cut {cut}: moved aside {info.moved_aside}, "
                            f"quarantined {info.quarantined}")
        present = {r.seq for r in store.read_batch(0, 10**6)}
        store.close()
        missing = [s for s in range(1, covered + 1) if s % 3 != 0 and s not in present]
        if missing:
            losing += 1
            lost += len(missing)
        shutil.rmtree(folder)
    return len(points), losing, lost, problems


def test_power_cut_keeps_every_committed_frame(tmp_path: Path) -> None:
    events = record(tmp_path / "full", "full")
    kinds = {e.kind for e in events}
    assert {"write", "sync", "marker"} <= kinds
    assert sum(e.kind == "write" and e.name == "b.sqlite" for e in events) > 10  # checkpoints
    checked, losing, lost, problems = lost_at_cuts(events, tmp_path / "cuts", CUTS)
    assert checked >= 100
    assert problems == []
    assert (losing, lost) == (0, 0)


def test_control_without_wal_sync_loses_frames(tmp_path: Path) -> None:
    """The method sees the failure: under ``synchronous=NORMAL`` commits are not synced."""
    events = record(tmp_path / "normal", "NORMAL")
    _checked, losing, lost, problems = lost_at_cuts(events, tmp_path / "cuts", 30)
    assert problems == []  # NORMAL stays consistent ...
    assert losing > 0 and lost > 0  # ... but loses what it said was committed
