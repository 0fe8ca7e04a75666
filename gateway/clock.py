"""What the host clock can be trusted for.

A Raspberry Pi has no RTC: after a cold boot without network its wall clock is
wrong until NTP synchronises it. Each frame therefore carries the boot identity,
a boot-relative monotonic time and whether the wall clock was synchronised when
it was received, so later code can correct or flag its timestamp.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (Linux); the tail is padding we never read.
    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 11),
    ]


def _load_libc() -> ctypes.CDLL | None:
    # The symbols already loaded into this process (libc among them): not
    # ctypes.util.find_library, which runs ``ldconfig -p`` and brings subprocess,
    # tempfile and shutil into the daemon for good.
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()


def clock_synchronised() -> bool:
    """True when the kernel says NTP (or similar) disciplines the wall clock.

    Falls back to "synchronised" only when the year looks plausible and adjtimex
    is unavailable, so a 1970 or 2012 clock is never reported as good.
    """
    if _LIBC is not None:
        tx = _Timex()
        state = _LIBC.adjtimex(ctypes.byref(tx))
        if state >= 0:
            return state != _TIME_ERROR and not tx.status & _STA_UNSYNC
    return time.gmtime().tm_year >= 2024


def boot_id() -> str:
    """The kernel's random id of this boot; a fresh random id where it cannot be read."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        import uuid  # only where /proc is not readable

        return str(uuid.uuid4())


def boottime_ns() -> int:
    """Monotonic time that keeps counting through suspend: comparable within one boot."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)
