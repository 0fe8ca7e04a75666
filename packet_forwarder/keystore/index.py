"""The in-memory view of the key store that the per-frame check reads.

DevAddr → candidate sessions (several devices may share an address), with every key
already prepared as a ``CmacKey``, so a check costs a dict lookup and one CMAC per
candidate and never touches the disk. Counters advance here and are marked dirty; the
store gets them in grouped flushes (``take_dirty``), never per frame.

Threads: the event loop reads the maps without a lock (one dict lookup is atomic under
the GIL, and writers replace whole tuples, never mutate one in place) and takes the lock
only to advance a counter. The worker thread (flush, reload, sync) takes the lock to
swap maps and collect dirty counters; it never holds it across disk I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from packet_forwarder.keystore.records import DeviceSession, RootKey
from packet_forwarder.keystore.store import Loaded, StoredSession
from packet_forwarder.lorawan import CmacKey, derive_js_int_key


class Candidate:
    """One device session as the filter sees it. ``repr`` shows no key.

    ``mic_key`` is the NwkSKey (1.0.x) or FNwkSIntKey (1.1); ``s_key`` the SNwkSIntKey,
    which signs type 0/2 rejoin-requests. ``stale`` marks a counter that may be up to one
    flush window old (the store was not closed cleanly). ``repeats`` counts frames seen
    again with the last accepted counter (retransmissions).
    """

    __slots__ = (
        "dev_addr", "dev_eui", "is_11", "key_id", "last_fcnt", "mic_key", "repeats", "s_key",
        "stale",
    )

    def __init__(self, stored: StoredSession, *, stale: bool = False) -> None:
        session = stored.session
        self.dev_eui = session.dev_eui
        self.dev_addr = bytes.fromhex(session.dev_addr)
        self.is_11 = session.is_11
        self.key_id = stored.key_id
        self.mic_key = CmacKey(session.f_nwk_s_int_key)
        # A 1.0.x session's keys are one NwkSKey: one prepared key (two OpenSSL CMAC
        # contexts, ~1.6 kB resident) serves both, as CmacKey is never mutated.
        self.s_key = (self.mic_key if session.s_nwk_s_int_key == session.f_nwk_s_int_key
                      else CmacKey(session.s_nwk_s_int_key))
        self.last_fcnt: int | None = session.last_fcnt
        self.repeats = 0
        self.stale = stale

    def __repr__(self) -> str:
        return f"Candidate(dev_eui={self.dev_eui!r}, dev_addr={self.dev_addr.hex()!r})"


class RootEntry:
    """Root keys prepared for join-request (NwkKey/AppKey) and type 1 rejoin (JSIntKey)."""

    __slots__ = ("dev_eui", "join_key", "js_int_key")

    def __init__(self, root: RootKey) -> None:
        self.dev_eui = root.dev_eui
        self.join_key = CmacKey(root.nwk_key)
        self.js_int_key = CmacKey(derive_js_int_key(root.nwk_key, bytes.fromhex(root.dev_eui)))

    def __repr__(self) -> str:
        return f"RootEntry(dev_eui={self.dev_eui!r})"


class SessionIndex:
    """DevAddr → candidates, DevEUI → candidate, DevEUI → root keys; dirty counters."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_addr: dict[bytes, tuple[Candidate, ...]] = {}
        self._by_eui: dict[str, Candidate] = {}
        self._roots: dict[str, RootEntry] = {}
        self._dirty: dict[str, Candidate] = {}

    # -- read side (event loop) --------------------------------------------------------

    def lookup(self, dev_addr: bytes) -> tuple[Candidate, ...]:
        return self._by_addr.get(dev_addr, ())

    def session(self, dev_eui: str) -> Candidate | None:
        return self._by_eui.get(dev_eui)

    def root(self, dev_eui: str) -> RootEntry | None:
        return self._roots.get(dev_eui)

    def accept(self, cand: Candidate, fcnt: int) -> None:
        """Record an accepted counter. If a reload replaced ``cand`` meanwhile with the
        same keys, the counter moves to the replacement; a different session ignores it."""
        with self._lock:
            current = self._by_eui.get(cand.dev_eui)
            if current is not None and current is not cand and current.key_id == cand.key_id:
                cand = current
            if cand.last_fcnt is None or fcnt > cand.last_fcnt:
                cand.last_fcnt = fcnt
            cand.repeats = 0
            cand.stale = False
            if current is cand:
                self._dirty[cand.dev_eui] = cand

    @property
    def session_count(self) -> int:
        return len(self._by_eui)

    @property
    def root_count(self) -> int:
        return len(self._roots)

    # -- write side (worker thread) ----------------------------------------------------

    def replace_all(self, loaded: Loaded, *, stale: bool = False) -> None:
        """Swap in everything the store holds, keeping newer in-memory counters of
        sessions whose keys did not change."""
        fresh = [Candidate(s, stale=stale) for s in loaded.sessions]
        roots = {r.dev_eui: RootEntry(r) for r in loaded.roots}
        with self._lock:
            for cand in fresh:
                old = self._by_eui.get(cand.dev_eui)
                if old is not None and old.key_id == cand.key_id:
                    cand.last_fcnt = _newer(old.last_fcnt, cand.last_fcnt)
                    cand.stale = old.stale and cand.stale
                    if cand.dev_eui in self._dirty:
                        self._dirty[cand.dev_eui] = cand
            self._by_eui = {c.dev_eui: c for c in fresh}
            self._by_addr = _group(fresh)
            self._roots = roots
            self._dirty = {e: c for e, c in self._dirty.items() if self._by_eui.get(e) is c}

    def apply(
        self, stored: Iterable[StoredSession], roots: Iterable[RootKey], removed: Iterable[str]
    ) -> None:
        """Mirror one store transaction (``store.Applied``) into memory."""
        new = [Candidate(s) for s in stored]
        new_roots = [RootEntry(r) for r in roots]
        with self._lock:
            by_eui = dict(self._by_eui)
            root_map = dict(self._roots)
            for dev_eui in removed:
                by_eui.pop(dev_eui, None)
                root_map.pop(dev_eui, None)
                self._dirty.pop(dev_eui, None)
            for cand in new:
                old = by_eui.get(cand.dev_eui)
                was_dirty = self._dirty.pop(cand.dev_eui, None) is not None
                if old is not None and old.key_id == cand.key_id:
                    cand.last_fcnt = _newer(old.last_fcnt, cand.last_fcnt)
                    if was_dirty:
                        self._dirty[cand.dev_eui] = cand
                by_eui[cand.dev_eui] = cand
            for entry in new_roots:
                root_map[entry.dev_eui] = entry
            self._by_eui = by_eui
            self._by_addr = _group(by_eui.values())
            self._roots = root_map

    def take_dirty(self) -> dict[str, tuple[bytes, int]]:
        """Hand the worker every counter that moved since the last call."""
        with self._lock:
            dirty, self._dirty = self._dirty, {}
            return {
                e: (c.key_id, c.last_fcnt) for e, c in dirty.items() if c.last_fcnt is not None
            }

    def restore_dirty(self, batch: Mapping[str, tuple[bytes, int]]) -> None:
        """A flush failed: mark those sessions dirty again so the next one retries."""
        with self._lock:
            for dev_eui, (key_id, _) in batch.items():
                cand = self._by_eui.get(dev_eui)
                if cand is not None and cand.key_id == key_id:
                    self._dirty[dev_eui] = cand


def _newer(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def _group(cands: Iterable[Candidate]) -> dict[bytes, tuple[Candidate, ...]]:
    grouped: dict[bytes, list[Candidate]] = {}
    for cand in cands:
        grouped.setdefault(cand.dev_addr, []).append(cand)
    return {addr: tuple(group) for addr, group in grouped.items()}


def session_public(session: DeviceSession) -> dict[str, object]:
    """What may be shown about a session (``keys list``, acks): never a key."""
    return {
        "dev_eui": session.dev_eui,
        "dev_addr": session.dev_addr,
        "mac_version": session.mac_version,
        "f_cnt_up": None if session.last_fcnt is None else session.last_fcnt + 1,
        "has_app_s_key": session.app_s_key is not None,
    }
