"""The replay feed: a JSON Lines file of inject datagrams played into the emulated chip's air.

Frames sent one datagram at a time through the inject socket cost the daemon's event
loop a wake-up, a ``recv`` and a JSON parse each, on the thread that does the
gateway's real work; a benchmark then measures the emulator as much as the gateway.
A :class:`ReplayFeed` is the chip's air source instead (:mod:`hal.emulator.air`): at
each read of the RX fill level (the radio thread's poll) the chip asks it for the
frames that are due, and it validates each line there and then, when it falls due
(it reads one line ahead, so it knows it is finished as its last frame goes in).
Nothing runs on the event loop per frame, and the file is streamed: a line read
ahead, one parsed frame and the file object's read buffer are all it holds,
whatever the file's length.

Timing: line ``n`` (from 0, blank lines included) is due ``n / rate`` seconds after
the first fill read that asks the feed, so a rejected line leaves its slot empty and
the others keep their times; rate 0 makes every line due at once. A bad line is
logged once (``inject_replay_line_rejected line=N reason=…``, at most
``MAX_LOGGED_LINES`` per replay), skipped and counted in the finished line.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

import structlog

from gateway.sim.inject import MAX_DATAGRAM, InjectError, InjectRequest, parse_inject_datagram

log = structlog.get_logger("gateway.sim")

MAX_LOGGED_LINES = 20
"""Rejected lines logged per replay; the rest are only counted."""
READ_BUFFER = 64 * 1024


class ReplayOpenError(OSError):
    """The replay file cannot be read; ``reason`` is a short code for the log line."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def open_replay_file(path: Path) -> BinaryIO:
    """Open ``path`` for a replay without ever blocking: a FIFO or device is refused
    (opening a FIFO with no writer would hang the event loop that asks)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ReplayOpenError("unreadable", exc.strerror or str(exc)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ReplayOpenError("not_a_file", "not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=READ_BUFFER)
    except BaseException:
        os.close(fd)
        raise


class ReplayFeed:
    """An air source over an open JSON Lines file; see the module docstring.

    ``next_due``/``taken`` run on the radio thread under the chip's lock; ``stop`` runs
    on the event loop after the feed was detached from the chip, so the two never
    overlap. ``done`` turns True once the file is exhausted or the feed stopped.
    """

    def __init__(self, file: BinaryIO, path: Path, rate: float,
                 max_logged: int = MAX_LOGGED_LINES) -> None:
        self._file = file
        self.path = path
        self.rate = rate
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._max_logged = max_logged
        self._start: float | None = None
        self._line = 0
        """Lines read so far; the line read ahead has slot ``_line - 1``."""
        self._ahead: bytes | None = None
        """The next line, read but not parsed (parsing waits for its time)."""
        self._next: tuple[float, InjectRequest] | None = None
        self.frames = 0
        self.unheard = 0
        self.rejected = 0
        self.done = False

    # --- the chip's side (radio thread) ---------------------------------------------------

    def next_due(self, now: float) -> tuple[float, InjectRequest] | None:
        if self._next is not None or self.done:
            return self._next
        if self._start is None:
            self._start = now
        while True:
            if self._ahead is None and not self._read_ahead(now):
                return None
            due = self._start + (self._line - 1) * self._interval
            if due > now:
                return None
            line, self._ahead = self._ahead, None
            assert line is not None
            try:
                self._next = (due, parse_inject_datagram(line))
            except InjectError as exc:
                self._reject(exc)
                continue
            return self._next

    def _read_ahead(self, now: float) -> bool:
        """Read the next non-blank line (not parsed yet: that waits for its time); at the
        end of the file finish at once, so the replay is over as its last frame is taken."""
        while True:
            try:
                line = self._read_line()
            except InjectError as exc:
                self._reject(exc)
                continue
            except OSError as exc:
                log.error("inject_replay_read_failed", path=str(self.path), line=self._line,
                          error=exc.strerror or str(exc))
                line = None
            if line is None:
                self._finish(now)
                return False
            if line.strip():
                self._ahead = line
                return True

    def taken(self, heard: bool) -> None:
        self._next = None
        self.frames += 1
        if not heard:
            self.unheard += 1

    def _read_line(self) -> bytes | None:
        """The next line (None at the end); a line longer than any datagram is skipped
        whole, in bounded reads, and raises ``InjectError``."""
        line = self._file.readline(MAX_DATAGRAM + 1)
        if not line:
            return None
        self._line += 1
        if len(line) <= MAX_DATAGRAM or line.endswith(b"\n"):
            return line
        while (rest := self._file.readline(MAX_DATAGRAM)) and not rest.endswith(b"\n"):
            pass
        raise InjectError("too_long", f"longer than {MAX_DATAGRAM} bytes")

    def _reject(self, exc: InjectError) -> None:
        self.rejected += 1
        if self.rejected <= self._max_logged:
            log.warning("inject_replay_line_rejected", line=self._line, reason=exc.reason,
                        detail=exc.detail)
            if self.rejected == self._max_logged:
                log.warning("inject_replay_lines_not_logged", path=str(self.path),
                            after=self._max_logged, note="further rejected lines are counted")

    def _finish(self, now: float) -> None:
        self.done = True
        self._file.close()
        log.info("inject_replay_finished", path=str(self.path), frames=self.frames,
                 rejected=self.rejected, unheard=self.unheard,
                 seconds=round(now - (self._start or now), 3))

    # --- the site's side (event loop, after the chip let go of the feed) --------------------

    def stop(self) -> None:
        """The daemon stops mid-replay: what the chip took is received; the rest is not."""
        if self.done:
            return
        self.done = True
        left = (self._next is not None) + (self._ahead is not None) + self._lines_left()
        self._file.close()
        log.warning("inject_replay_stopped", path=str(self.path), frames=self.frames,
                    rejected=self.rejected, unheard=self.unheard, left=left)

    def _lines_left(self) -> int:
        """Lines not read yet, counted in bounded chunks (blank ones included)."""
        count, last = 0, b"\n"
        try:
            while chunk := self._file.read(READ_BUFFER):
                count += chunk.count(b"\n")
                last = chunk[-1:]
        except OSError:
            pass
        return count + (last != b"\n")
