"""The edge check: decide per received frame whether it is worth the backhaul.

``EdgeFilter.check(phy)`` runs on the event loop for every frame, so it is pure CPU: a
parse, a dict lookup of the DevAddr's candidate sessions, and one CMAC per candidate
with keys prepared at load time. Counter state lives in memory and reaches the store in
grouped ``flush()`` calls that the daemon runs in an executor, never per frame.

Power cuts: the stored counters can be up to one flush window old after an unclean
shutdown. A frame captured and replayed within that window would then read as new and
pass once. We choose to forward such frames rather than risk dropping genuine ones the
network server needs (it keeps its own authoritative counters and rejects replays):
each session's first accepted frame after an unclean start carries the flag
``fcnt_stale``, and the store's ``unclean_shutdown`` is logged once at start.

LoRaWAN 1.1 data uplinks are checked on the FNwkSIntKey half of the MIC only
(``verify_data_uplink_11_f``): the other half is computed over ConfFCnt (the counter of
the confirmed downlink being acknowledged, which may have gone out through another
gateway), TxDr and TxCh (the channel *index* in the network server's channel plan),
which the gateway does not reliably know. The F half is a 16-bit check: a forger
needs ~65,536 tries per accepted frame, against 2**32 for 1.0; the network server still
checks both halves.

Retransmissions: LoRaWAN devices repeat a frame with the SAME counter (NbTrans, or a
confirmed uplink whose ACK was lost), and the network server must see those to resend
the ACK. So a valid frame repeating the last accepted counter is forwarded (flag
``retransmission``) up to ``max_retransmissions`` times; older counters are replays.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import structlog

from packet_forwarder.keystore.accounting import RateLimitedLog, VerdictCounters
from packet_forwarder.keystore.index import Candidate, SessionIndex
from packet_forwarder.keystore.store import KeyStore
from packet_forwarder.lorawan import (
    MAX_FCNT_GAP,
    DataFrame,
    FCntVerdict,
    JoinRequest,
    LoRaWANFormatError,
    Proprietary,
    RejoinRequest,
    parse,
    reconstruct_fcnt,
    verify_data_uplink_10,
    verify_data_uplink_11_f,
    verify_join_request,
    verify_rejoin_request,
)

log = structlog.get_logger(__name__)

Action = Literal["forward", "drop"]
UnknownAction = Literal["forward", "drop", "netid_allowlist"]
JoinAction = Literal["forward", "joineui_allowlist"]
ReplayAction = Literal["drop", "flag"]

_NWKID_BITS: Final = (6, 6, 9, 11, 12, 13, 15, 17)
"""NwkID length per DevAddr/NetID type (LoRaWAN Backend Interfaces, as ChirpStack v4)."""


def devaddr_network(dev_addr: bytes) -> tuple[int, int] | None:
    """(NetID type, NwkID) a DevAddr (MSB first) belongs to; None for the invalid 0xFF
    prefix. The type is the number of leading 1 bits; the NwkID follows the 0 bit."""
    value = int.from_bytes(dev_addr, "big")
    kind = 0
    while kind < 8 and value & (0x8000_0000 >> kind):
        kind += 1
    if kind == 8:
        return None
    bits = _NWKID_BITS[kind]
    return kind, (value >> (32 - (kind + 1) - bits)) & ((1 << bits) - 1)


def netid_network(net_id: int) -> tuple[int, int]:
    """(type, NwkID) of a 24-bit NetID: its type is the top 3 bits, its NwkID the low
    bits that DevAddrs carry."""
    if not 0 <= net_id <= 0xFF_FFFF:
        raise ValueError(f"NetID {net_id:#x} does not fit 24 bits")
    kind = net_id >> 21
    return kind, net_id & ((1 << _NWKID_BITS[kind]) - 1)


@dataclass(frozen=True, slots=True)
class EdgePolicy:
    """What to do with each class of frame. Defaults forward everything a network server
    might want except frames proven bad (MIC) or replayed, and malformed ones.

    ``invalid`` covers frames that do not parse as LoRaWAN and downlink-type frames heard
    on the uplink. ``netid_allowlist`` holds 24-bit NetIDs; ``joineui_allowlist`` hex EUIs.
    """

    known_valid: Action = "forward"
    bad_mic: Action = "drop"
    unknown_devaddr: UnknownAction = "forward"
    netid_allowlist: tuple[int, ...] = ()
    join_request: JoinAction = "forward"
    joineui_allowlist: tuple[str, ...] = ()
    rejoin_request: Action = "forward"
    proprietary: Action = "forward"
    replay: ReplayAction = "drop"
    invalid: Action = "drop"
    max_retransmissions: int = 15

    def __post_init__(self) -> None:
        choices: dict[str, tuple[str, ...]] = {
            "known_valid": ("forward", "drop"), "bad_mic": ("forward", "drop"),
            "unknown_devaddr": ("forward", "drop", "netid_allowlist"),
            "join_request": ("forward", "joineui_allowlist"),
            "rejoin_request": ("forward", "drop"), "proprietary": ("forward", "drop"),
            "replay": ("drop", "flag"), "invalid": ("forward", "drop"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"edge policy {name}: must be one of {', '.join(allowed)}")
        for net_id in self.netid_allowlist:
            netid_network(net_id)
        for eui in self.joineui_allowlist:
            if len(eui) != 16 or eui != eui.lower() or not _is_hex(eui):
                raise ValueError(f"edge policy joineui_allowlist: {eui!r} is not 16 lowercase hex")
        if not 0 <= self.max_retransmissions <= 255:
            raise ValueError("edge policy max_retransmissions: must be within 0..255")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> EdgePolicy:
        """Build from a config table: NetIDs as hex text ("00001a") or ints, EUIs as hex in
        any case with optional separators. Unknown keys raise ValueError naming them."""
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(raw) - known)
        if extra:
            raise ValueError(f"edge policy: unknown key(s) {', '.join(extra)}")
        values = dict(raw)
        if "netid_allowlist" in values:
            values["netid_allowlist"] = tuple(_netid(v) for v in values["netid_allowlist"])
        if "joineui_allowlist" in values:
            values["joineui_allowlist"] = tuple(
                str(v).replace(":", "").replace("-", "").lower()
                for v in values["joineui_allowlist"]
            )
        return cls(**values)


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _netid(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _is_hex(value.strip()) and len(value.strip()) == 6:
        return int(value.strip(), 16)
    raise ValueError(f"edge policy netid_allowlist: {value!r} is not a 6-hex-digit NetID")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision on one frame. ``reason`` is a stable label (a counter key); ``flags``
    mark forwarded frames worth attention (``replay``, ``retransmission``, ``fcnt_gap``,
    ``fcnt_stale``, ``bad_mic``). ``dev_eui`` is set once a session or join names it."""

    forward: bool
    reason: str
    dev_addr: str = ""
    dev_eui: str = ""
    fcnt32: int | None = None
    flags: frozenset[str] = field(default_factory=frozenset)
    device: str = ""
    """The buffer's ordering key (``lorawan.device_key``), from the parse already done."""


_NO_FLAGS: Final[frozenset[str]] = frozenset()


class EdgeFilter:
    """The per-frame policy stage. ``store`` None: no keys, policy on classes only.

    Call ``check`` on the event loop; ``flush``/``reload_if_changed``/``close`` in an
    executor (they touch the disk), never concurrently with each other.
    """

    def __init__(
        self,
        policy: EdgePolicy,
        store: KeyStore | None = None,
        *,
        now: Callable[[], float] = time.monotonic,
        logger: Any = None,
        max_tracked_devices: int = 1024,
        log_interval_s: float = 60.0,
    ) -> None:
        self.policy = policy
        self.store = store
        self.index = SessionIndex()
        self.counters = VerdictCounters(max_tracked_devices)
        self._log = logger if logger is not None else log
        self._drop_log = RateLimitedLog(
            self._log, "edge_drop", now, interval_s=log_interval_s, max_keys=max_tracked_devices
        )
        self._allowed_nets = frozenset(netid_network(n) for n in policy.netid_allowlist)
        self._allowed_joins = frozenset(bytes.fromhex(e) for e in policy.joineui_allowlist)
        self.flush_failures = 0
        if store is not None:
            loaded = store.load()
            self.index.replace_all(loaded, stale=store.unclean_shutdown)
            if store.unclean_shutdown:
                self._log.warning(
                    "keystore_unclean_shutdown", sessions=len(loaded.sessions),
                    note="frame counters may be one flush window old; first frames flagged",
                )

    @classmethod
    def open(
        cls, policy: EdgePolicy, store_path: Path, key_file: Path, **kwargs: Any
    ) -> EdgeFilter:
        """Open the store (daemon role: tracks clean shutdown) and load it. Blocking."""
        return cls(policy, KeyStore(store_path, key_file, track_shutdown=True), **kwargs)

    # -- per frame (event loop) --------------------------------------------------------

    def check(self, phy: bytes) -> Verdict:
        """Classify one received PHYPayload; never raises for radio input."""
        try:
            frame = parse(phy)
        except LoRaWANFormatError as exc:
            return self._decide(self.policy.invalid == "forward", "invalid_" + exc.reason, "")
        if type(frame) is DataFrame:
            if not frame.uplink:
                return self._decide(self.policy.invalid == "forward", "not_uplink", "")
            return self._check_data(frame, frame.raw)
        if type(frame) is JoinRequest:
            return self._check_join(frame)
        if type(frame) is RejoinRequest:
            return self._check_rejoin(frame)
        if type(frame) is Proprietary:
            return self._decide(self.policy.proprietary == "forward", "proprietary", "")
        return self._decide(self.policy.invalid == "forward", "not_uplink", "")

    def _check_data(self, frame: DataFrame, phy: bytes) -> Verdict:
        cands = self.index.lookup(frame.dev_addr)
        addr = frame.dev_addr.hex()
        if not cands:
            return self._unknown(frame.dev_addr, addr, frame.fcnt16)
        replayed: tuple[Candidate, int] | None = None
        for cand in cands:
            chk = reconstruct_fcnt(frame.fcnt16, cand.last_fcnt, MAX_FCNT_GAP)
            if chk.verdict is FCntVerdict.EXHAUSTED:
                continue
            if cand.is_11:
                valid = verify_data_uplink_11_f(phy, cand.mic_key, chk.fcnt)
            else:
                valid = verify_data_uplink_10(phy, cand.mic_key, chk.fcnt)
            if not valid:
                continue
            if chk.verdict is FCntVerdict.REPLAY:
                replayed = (cand, chk.fcnt)
                continue
            return self._accept(cand, addr, chk.fcnt, chk.verdict is FCntVerdict.GAP)
        if replayed is not None:
            return self._replay(*replayed, addr)
        forward = self.policy.bad_mic == "forward"
        return self._decide(forward, "bad_mic", addr, log_fcnt=frame.fcnt16,
                            flags=frozenset({"bad_mic"}) if forward else _NO_FLAGS)

    def _accept(self, cand: Candidate, addr: str, fcnt: int, gap: bool) -> Verdict:
        flags = _NO_FLAGS
        if gap or cand.stale:
            flags = frozenset(f for f, on in (("fcnt_gap", gap), ("fcnt_stale", cand.stale)) if on)
        self.index.accept(cand, fcnt)
        forward = self.policy.known_valid == "forward"
        return self._decide(forward, "known_valid", addr, cand.dev_eui, fcnt, flags)

    def _replay(self, cand: Candidate, fcnt: int, addr: str) -> Verdict:
        if fcnt == cand.last_fcnt and cand.repeats < self.policy.max_retransmissions:
            cand.repeats += 1
            return self._decide(True, "known_valid", addr, cand.dev_eui, fcnt,
                                frozenset({"retransmission"}))
        forward = self.policy.replay == "flag"
        return self._decide(forward, "replay", addr, cand.dev_eui, fcnt,
                            frozenset({"replay"}) if forward else _NO_FLAGS)

    def _unknown(self, dev_addr: bytes, addr: str, fcnt16: int) -> Verdict:
        mode = self.policy.unknown_devaddr
        if mode == "netid_allowlist":
            allowed = devaddr_network(dev_addr) in self._allowed_nets
            reason = "netid_allowed" if allowed else "netid_not_allowed"
            return self._decide(allowed, reason, addr, log_fcnt=fcnt16)
        return self._decide(mode == "forward", "unknown_devaddr", addr, log_fcnt=fcnt16)

    def _check_join(self, frame: JoinRequest) -> Verdict:
        device = "deveui:" + frame.dev_eui.hex()
        if self.policy.join_request == "joineui_allowlist" and (
            frame.join_eui not in self._allowed_joins
        ):
            return self._decide(False, "joineui_not_allowed", device, frame.dev_eui.hex())
        root = self.index.root(frame.dev_eui.hex())
        if root is None:
            return self._decide(True, "join_request", device, frame.dev_eui.hex())
        if verify_join_request(frame.raw, root.join_key):
            return self._decide(True, "join_request_valid", device, frame.dev_eui.hex())
        return self._decide(self.policy.bad_mic == "forward", "bad_mic", device,
                            frame.dev_eui.hex())

    def _check_rejoin(self, frame: RejoinRequest) -> Verdict:
        dev_eui = frame.dev_eui.hex()
        device = "deveui:" + dev_eui
        if self.policy.rejoin_request == "drop":
            return self._decide(False, "rejoin_request", device, dev_eui)
        if frame.rejoin_type == 1:
            root = self.index.root(dev_eui)
            key = None if root is None else root.js_int_key
        else:
            cand = self.index.session(dev_eui)
            key = cand.s_key if cand is not None and cand.is_11 else None
        if key is None:
            return self._decide(True, "rejoin_request", device, dev_eui)
        if verify_rejoin_request(frame.raw, key):
            return self._decide(True, "rejoin_request_valid", device, dev_eui)
        return self._decide(self.policy.bad_mic == "forward", "bad_mic", device, dev_eui)

    def _decide(
        self,
        forward: bool,
        reason: str,
        device: str,
        dev_eui: str = "",
        fcnt: int | None = None,
        flags: frozenset[str] = _NO_FLAGS,
        *,
        log_fcnt: int | None = None,
    ) -> Verdict:
        """Count (and for a drop, maybe log) the verdict, then return it. ``log_fcnt``:
        the 16-bit counter as sent, logged when no 32-bit value could be trusted."""
        if forward:
            self.counters.count_forward(reason, flags)
        else:
            self.counters.count_drop(reason, device)
            self._log_drop(reason, device, fcnt if fcnt is not None else log_fcnt)
        dev_addr = "" if device.startswith("deveui:") else device
        return Verdict(forward, reason, dev_addr, dev_eui, fcnt, flags, device)

    def _log_drop(self, reason: str, device: str, fcnt: int | None) -> None:
        if device.startswith("deveui:"):
            self._drop_log.emit(reason, device, dev_eui=device[7:], fcnt=fcnt)
        else:
            self._drop_log.emit(reason, device, dev_addr=device, fcnt=fcnt)

    # -- housekeeping (executor) -------------------------------------------------------

    def flush(self) -> int:
        """Write every counter that moved since the last flush in ONE transaction, after
        picking up changes another process (``keys import``) committed. Blocking: run it
        in an executor every few seconds. A failed write is retried at the next call."""
        if self.store is None:
            return 0
        self.reload_if_changed()
        batch = self.index.take_dirty()
        try:
            return self.store.save_fcnts(batch)
        except Exception:
            self.index.restore_dirty(batch)
            self.flush_failures += 1
            raise

    def reload_if_changed(self) -> bool:
        """Reload the index when the file changed under us (the CLI wrote to it)."""
        if self.store is None or not self.store.changed_elsewhere():
            return False
        loaded = self.store.load()
        self.index.replace_all(loaded)
        self._log.info("keystore_reloaded", sessions=len(loaded.sessions),
                       root_keys=len(loaded.roots), rejected=len(loaded.rejected))
        return True

    def close(self) -> None:
        """Final flush and clean-shutdown mark. Blocking."""
        if self.store is None:
            return
        try:
            self.store.save_fcnts(self.index.take_dirty())
        finally:
            self.store.close()

    def stats(self) -> dict[str, object]:
        """Counts for stats and ``status``: reasons, flags, top dropping devices. No keys."""
        snap = self.counters.snapshot()
        snap["sessions"] = self.index.session_count
        snap["root_keys"] = self.index.root_count
        snap["drop_logs_suppressed"] = self._drop_log.suppressed_total
        snap["flush_failures"] = self.flush_failures
        return snap

    def __repr__(self) -> str:
        return f"EdgeFilter(sessions={self.index.session_count}, policy={self.policy!r})"
