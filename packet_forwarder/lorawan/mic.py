"""LoRaWAN message integrity codes (MIC), 1.0.x and 1.1, for every message the gateway sees.

The gateway checks each uplink's MIC before it spends backhaul on it, so this is on the
hot path: a key is prepared once (``CmacKey``: the AES key schedule and CMAC subkeys live
in a template that is cloned per message, which is several times cheaper than building a
CMAC from the key each time) and the MIC functions work straight on the raw PHYPayload,
building the 16-byte B0/B1 block with one ``struct.pack``.

All functions take the whole PHYPayload (MIC included) and compute over ``phy[:-4]``.
``fcnt`` is the 32-bit counter as rebuilt by ``fcnt.reconstruct_fcnt``: its upper 16 bits
extend the 16 the frame carries (the lower 16 are always read from the frame itself).
They raise ``LoRaWANFormatError`` when the bytes are not the kind of frame asked for
(too short, other message type) and ``LoRaWANKeyError`` for a key that is not 16 bytes;
a MIC that does not match is a ``False`` from ``verify_*``, never an exception.
"""

from __future__ import annotations

import struct
from hmac import compare_digest
from typing import Final

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

from packet_forwarder.lorawan.errors import LoRaWANFormatError, LoRaWANKeyError
from packet_forwarder.lorawan.frames import (
    DATA_MIN_LEN,
    JOIN_REQUEST_LEN,
    MAX_PHY_PAYLOAD,
    MIC_LEN,
    REJOIN_02_LEN,
    REJOIN_1_LEN,
    MType,
    to_bytes,
)

KEY_LEN: Final = 16
_MAX_FCNT: Final = 0xFFFF_FFFF
_UP: Final = 0
_DOWN: Final = 1
_ACK_BIT: Final = 0x20

_BLOCK = struct.Struct("<BHBBB4s2sHBB")
"""B0/B1: 0x49 | ConfFCnt(2) | TxDr/0 | TxCh/0 | Dir | DevAddr(4) | FCnt(4) | 0 | len(msg).

DevAddr and the low half of FCnt are copied from the frame as sent; only the high 16 bits
of FCnt come from the caller, so the block always matches the counter the frame carries.
"""

_B0_UP_HEAD: Final = bytes((0x49, 0, 0, 0, 0, _UP))
"""0x49, ConfFCnt 0, TxDr 0, TxCh 0, Dir up: the same for every 1.0 uplink B0 (and 1.1 B0)."""

_B0_UP_TAIL: Final = struct.Struct("<HBB")
"""FCnt high half, 0x00, len(msg): the last four bytes of an uplink B0."""

_B0_UP_TAIL_LOW: Final = tuple(_B0_UP_TAIL.pack(0, 0, n) for n in range(256))
"""The tail for a counter below 65,536 (nearly every device), looked up instead of packed."""

_DATA_UP_HDR: Final = frozenset({MType.UNCONFIRMED_DATA_UP << 5, MType.CONFIRMED_DATA_UP << 5})
_DATA_DOWN_HDR: Final = frozenset(
    {MType.UNCONFIRMED_DATA_DOWN << 5, MType.CONFIRMED_DATA_DOWN << 5}
)


class CmacKey:
    """An AES-128 key made ready for CMAC: build once per session key, reuse per frame.

    Immutable in use (the template is only ever cloned), so one instance may be shared by
    threads. ``repr`` never shows the key.
    """

    __slots__ = ("_template", "_uplink")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_LEN:
            raise LoRaWANKeyError("an AES-128 key must be 16 bytes")
        self._template = cmac.CMAC(algorithms.AES(bytes(key)))
        self._uplink = self._template.copy()
        """The template after the six bytes every uplink B0 block starts with (see
        ``_B0_UP_HEAD``): the hot path then hashes only what differs per frame."""
        self._uplink.update(_B0_UP_HEAD)

    def cmac(self, data: bytes) -> bytes:
        """The full 16-byte AES-CMAC of ``data``."""
        mac = self._template.copy()
        mac.update(data)
        return mac.finalize()

    def __repr__(self) -> str:
        return "CmacKey(<redacted>)"


KeyLike = bytes | CmacKey
"""A raw 16-byte key (prepared on each call: fine for tests) or a prepared ``CmacKey``."""


def prepare_key(key: KeyLike) -> CmacKey:
    """Return ``key`` as a ``CmacKey`` (no-op when it already is one)."""
    return key if isinstance(key, CmacKey) else CmacKey(key)


def _check_data(phy: bytes, allowed: frozenset[int], what: str) -> bytes:
    raw = to_bytes(phy)
    if len(raw) < DATA_MIN_LEN:
        raise LoRaWANFormatError("too_short", f"{what} of {len(raw)} bytes")
    if len(raw) > MAX_PHY_PAYLOAD:
        raise LoRaWANFormatError("too_long", f"{what} of {len(raw)} bytes")
    if raw[0] & 0xE3 not in allowed:
        raise LoRaWANFormatError("wrong_mtype", f"MHDR 0x{raw[0]:02x} is not a {what}")
    return raw


def _check_fcnt(fcnt: int) -> None:
    if not 0 <= fcnt <= _MAX_FCNT:
        raise ValueError(f"FCnt {fcnt} is not a 32-bit counter")


def _conf_fcnt(raw: bytes, conf_fcnt: int) -> int:
    """ConfFCnt counts only when the frame acknowledges something (ACK bit); else 0."""
    return (conf_fcnt & 0xFFFF) if raw[5] & _ACK_BIT else 0


def data_uplink_mic_10(phy: bytes, nwk_s_key: KeyLike, fcnt: int) -> bytes:
    """LoRaWAN 1.0.x uplink MIC: CMAC(NwkSKey, B0 | msg)[0:4] with the 32-bit FCntUp."""
    raw = _check_data(phy, _DATA_UP_HDR, "data uplink")
    _check_fcnt(fcnt)
    n = len(raw) - MIC_LEN
    b0 = _BLOCK.pack(0x49, 0, 0, 0, _UP, raw[1:5], raw[6:8], fcnt >> 16, 0, n)
    return prepare_key(nwk_s_key).cmac(b0 + raw[:n])[:MIC_LEN]


def data_uplink_mic_11(
    phy: bytes,
    f_nwk_s_int_key: KeyLike,
    s_nwk_s_int_key: KeyLike,
    fcnt: int,
    *,
    conf_fcnt: int = 0,
    tx_dr: int = 0,
    tx_ch: int = 0,
) -> bytes:
    """LoRaWAN 1.1 uplink MIC: CMAC(SNwkSIntKey, B1|msg)[0:2] | CMAC(FNwkSIntKey, B0|msg)[0:2].

    ``conf_fcnt`` is the FCnt of the confirmed downlink this frame acknowledges; it only
    enters B1 when the ACK bit is set. ``tx_dr``/``tx_ch``: data rate and channel index
    of this uplink.
    """
    raw = _check_data(phy, _DATA_UP_HDR, "data uplink")
    _check_fcnt(fcnt)
    if not (0 <= tx_dr <= 0xFF and 0 <= tx_ch <= 0xFF):
        raise ValueError(f"TxDr {tx_dr} / TxCh {tx_ch} must each fit one byte")
    n = len(raw) - MIC_LEN
    msg = raw[:n]
    addr = raw[1:5]
    ctr = raw[6:8]
    b0 = _BLOCK.pack(0x49, 0, 0, 0, _UP, addr, ctr, fcnt >> 16, 0, n)
    b1 = _BLOCK.pack(
        0x49, _conf_fcnt(raw, conf_fcnt), tx_dr, tx_ch, _UP, addr, ctr, fcnt >> 16, 0, n
    )
    cmac_f = prepare_key(f_nwk_s_int_key).cmac(b0 + msg)
    cmac_s = prepare_key(s_nwk_s_int_key).cmac(b1 + msg)
    return cmac_s[:2] + cmac_f[:2]


def data_downlink_mic(
    phy: bytes, key: KeyLike, fcnt: int, *, conf_fcnt: int | None = None
) -> bytes:
    """Downlink MIC: CMAC(key, B0 | msg)[0:4], Dir = 1.

    1.0.x: ``key`` is the NwkSKey and ``conf_fcnt`` is None. 1.1: ``key`` is the
    SNwkSIntKey and ``conf_fcnt`` the FCnt of the confirmed uplink being acknowledged
    (used only when the ACK bit is set). ``fcnt`` is NFCntDown or AFCntDown.
    """
    raw = _check_data(phy, _DATA_DOWN_HDR, "data downlink")
    _check_fcnt(fcnt)
    n = len(raw) - MIC_LEN
    conf = 0 if conf_fcnt is None else _conf_fcnt(raw, conf_fcnt)
    b0 = _BLOCK.pack(0x49, conf, 0, 0, _DOWN, raw[1:5], raw[6:8], fcnt >> 16, 0, n)
    return prepare_key(key).cmac(b0 + raw[:n])[:MIC_LEN]


def join_request_mic(phy: bytes, key: KeyLike) -> bytes:
    """Join-request MIC: CMAC(AppKey (1.0) / NwkKey (1.1), MHDR|JoinEUI|DevEUI|DevNonce)."""
    raw = to_bytes(phy)
    if len(raw) != JOIN_REQUEST_LEN:
        raise LoRaWANFormatError("bad_length", f"join-request of {len(raw)} bytes")
    if raw[0] & 0xE3 != MType.JOIN_REQUEST << 5:
        raise LoRaWANFormatError("wrong_mtype", f"MHDR 0x{raw[0]:02x} is not a join-request")
    return prepare_key(key).cmac(raw[:-MIC_LEN])[:MIC_LEN]


def rejoin_request_mic(phy: bytes, key: KeyLike) -> bytes:
    """Rejoin-request MIC: CMAC(key, MHDR | fields)[0:4].

    ``key`` is the SNwkSIntKey for types 0 and 2, the JSIntKey for type 1.
    """
    raw = to_bytes(phy)
    if len(raw) < 2 or raw[0] & 0xE3 != MType.REJOIN_REQUEST << 5:
        raise LoRaWANFormatError("wrong_mtype", "not a rejoin-request")
    expected = {0: REJOIN_02_LEN, 1: REJOIN_1_LEN, 2: REJOIN_02_LEN}.get(raw[1])
    if expected is None:
        raise LoRaWANFormatError("rfu_rejoin_type", f"rejoin type {raw[1]}")
    if len(raw) != expected:
        raise LoRaWANFormatError("bad_length", f"rejoin-request of {len(raw)} bytes")
    return prepare_key(key).cmac(raw[:-MIC_LEN])[:MIC_LEN]


def _same(phy: bytes, mic: bytes) -> bool:
    return compare_digest(to_bytes(phy)[-MIC_LEN:], mic)


def verify_data_uplink_10(phy: bytes, nwk_s_key: KeyLike, fcnt: int) -> bool:
    """True when the 1.0.x uplink MIC matches for this 32-bit FCntUp.

    The hot path of the gateway: for plain ``bytes`` and a prepared ``CmacKey`` it runs
    inline (one clone, one update); anything else goes through the checked path, which
    raises the typed errors.
    """
    n = len(phy) - MIC_LEN if type(phy) is bytes else -1
    if (
        type(nwk_s_key) is CmacKey
        and DATA_MIN_LEN - MIC_LEN <= n <= MAX_PHY_PAYLOAD - MIC_LEN
        and phy[0] & 0xE3 in _DATA_UP_HDR
        and 0 <= fcnt <= _MAX_FCNT
    ):
        high = fcnt >> 16
        tail = _B0_UP_TAIL_LOW[n] if high == 0 else _B0_UP_TAIL.pack(high, 0, n)
        mac = nwk_s_key._uplink.copy()
        mac.update(phy[1:5] + phy[6:8] + tail + phy[:n])
        return compare_digest(mac.finalize()[:MIC_LEN], phy[n:])
    return _same(phy, data_uplink_mic_10(phy, nwk_s_key, fcnt))


def verify_data_uplink_11(
    phy: bytes,
    f_nwk_s_int_key: KeyLike,
    s_nwk_s_int_key: KeyLike,
    fcnt: int,
    *,
    conf_fcnt: int = 0,
    tx_dr: int = 0,
    tx_ch: int = 0,
) -> bool:
    """True when the full 1.1 uplink MIC (both halves) matches."""
    mic = data_uplink_mic_11(
        phy, f_nwk_s_int_key, s_nwk_s_int_key, fcnt, conf_fcnt=conf_fcnt, tx_dr=tx_dr, tx_ch=tx_ch
    )
    return _same(phy, mic)


def verify_data_uplink_11_f(phy: bytes, f_nwk_s_int_key: KeyLike, fcnt: int) -> bool:
    """Check only the FNwkSIntKey half (MIC bytes 2..3) of a 1.1 uplink.

    For a verifier that lacks the SNwkSIntKey or the TxDr/TxCh the device used (as a
    forwarding network server does): a 16-bit check, weaker but free of those inputs.
    """
    raw = _check_data(phy, _DATA_UP_HDR, "data uplink")
    _check_fcnt(fcnt)
    n = len(raw) - MIC_LEN
    mac = prepare_key(f_nwk_s_int_key)._uplink.copy()
    mac.update(raw[1:5] + raw[6:8] + _B0_UP_TAIL.pack(fcnt >> 16, 0, n) + raw[:n])
    return compare_digest(mac.finalize()[:2], raw[n + 2 :])


def verify_data_downlink(
    phy: bytes, key: KeyLike, fcnt: int, *, conf_fcnt: int | None = None
) -> bool:
    """True when the downlink MIC matches (see ``data_downlink_mic`` for the keys)."""
    return _same(phy, data_downlink_mic(phy, key, fcnt, conf_fcnt=conf_fcnt))


def verify_join_request(phy: bytes, key: KeyLike) -> bool:
    """True when the join-request MIC matches the AppKey (1.0) / NwkKey (1.1)."""
    return _same(phy, join_request_mic(phy, key))


def verify_rejoin_request(phy: bytes, key: KeyLike) -> bool:
    """True when the rejoin-request MIC matches (SNwkSIntKey for 0/2, JSIntKey for 1)."""
    return _same(phy, rejoin_request_mic(phy, key))
