"""One glibc malloc arena for the whole daemon, set before its first thread starts.

glibc gives each new thread its own malloc arena (up to eight per core), and each
arena keeps its freed memory for itself: with the daemon's five threads (asyncio,
radio, the two SQLite workers, the executor) that is a few megabytes of resident
memory that no other thread can reuse. ``mallopt(M_ARENA_MAX, 1)`` makes them all
share the main heap, which is what ``MALLOC_ARENA_MAX=1`` in the environment does,
but here it cannot be forgotten by whoever starts the daemon.

The price is a lock on that heap, and it is small: Python objects up to 512 bytes come
from pymalloc under the GIL and never reach malloc; glibc's per-thread cache serves
most of the rest without the lock; the one thread that allocates outside the GIL for
long is SQLite's, and it does so a few times per commit, not per frame.

Nothing happens on another C library (musl has one heap anyway), nor when the
environment already sets ``MALLOC_ARENA_MAX`` (an operator's choice wins).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

M_ARENA_MAX = -8
"""From glibc's <malloc.h>."""


def is_glibc() -> bool:
    """True when this process runs on glibc (the only C library with ``M_ARENA_MAX``)."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):  # name unknown to this platform, or refused by its libc
        return False
    return bool(version) and str(version).startswith("glibc")


def limit_malloc_arenas(arenas: int = 1, environ: Mapping[str, str] | None = None) -> bool:
    """Cap glibc's arenas at ``arenas``; True when the cap was set by this call.

    Call it before any thread starts: a thread keeps the arena it was given.
    """
    env = os.environ if environ is None else environ
    if "MALLOC_ARENA_MAX" in env or not is_glibc():
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library already loaded into this process
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # no dynamic symbols, or no mallopt
        return False
