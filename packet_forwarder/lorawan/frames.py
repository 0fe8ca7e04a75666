"""Parse LoRaWAN PHYPayloads (1.0.x and 1.1) into frozen records.

The gateway parses every uplink before it spends backhaul on it: the DevAddr or DevEUI
orders the buffer and selects the keys for the MIC check. The parser is strict about
structure (lengths, major version, FOpts rules) because anything it lets through is
later trusted, and it never raises anything but ``LoRaWANFormatError``: radio input is
hostile by default.

Byte order: LoRaWAN sends every multi-byte field little-endian. The records hold
identifiers (DevAddr, EUIs, NetID) most-significant byte first, the way users, ChirpStack
and the LoRaWAN documents print them, and counters/nonces as ``int``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from packet_forwarder.lorawan.errors import LoRaWANFormatError

MAX_PHY_PAYLOAD: Final = 255
"""A LoRa packet carries at most 255 bytes, so a longer PHYPayload cannot be genuine."""
MIC_LEN: Final = 4
DATA_MIN_LEN: Final = 12
"""MHDR(1) + DevAddr(4) + FCtrl(1) + FCnt(2) + MIC(4): a data frame with nothing else."""
JOIN_REQUEST_LEN: Final = 23
REJOIN_02_LEN: Final = 19
REJOIN_1_LEN: Final = 24
JOIN_ACCEPT_LENS: Final = (17, 33)
"""MHDR + 16 encrypted bytes, or + 32 when a CFList is present."""
LORAWAN_R1: Final = 0


class MType(IntEnum):
    """Message type, the top three bits of the MHDR."""

    JOIN_REQUEST = 0
    JOIN_ACCEPT = 1
    UNCONFIRMED_DATA_UP = 2
    UNCONFIRMED_DATA_DOWN = 3
    CONFIRMED_DATA_UP = 4
    CONFIRMED_DATA_DOWN = 5
    REJOIN_REQUEST = 6
    PROPRIETARY = 7


DATA_UP: Final = frozenset({MType.UNCONFIRMED_DATA_UP, MType.CONFIRMED_DATA_UP})
DATA_DOWN: Final = frozenset({MType.UNCONFIRMED_DATA_DOWN, MType.CONFIRMED_DATA_DOWN})


@dataclass(frozen=True, slots=True)
class MHDR:
    """MAC header: message type, the RFU bits (kept, not enforced) and the major version."""

    mtype: MType
    major: int
    rfu: int


@dataclass(frozen=True, slots=True)
class FCtrl:
    """Frame control byte; bit 6 and bit 4 mean different things up and down.

    ``adr_ack_req`` and ``class_b`` are uplink bits (False on downlinks, where bit 6 is
    RFU); ``f_pending`` is the downlink meaning of bit 4 (False on uplinks).
    """

    byte: int
    adr: bool
    adr_ack_req: bool
    ack: bool
    class_b: bool
    f_pending: bool
    fopts_len: int


@dataclass(frozen=True, slots=True)
class DataFrame:
    """An (un)confirmed data uplink or downlink.

    ``fcnt16`` is the counter as sent (16 bits); see ``fcnt.reconstruct_fcnt`` for the
    32-bit value. ``fopts`` and ``frm_payload`` are as on air (encrypted where the version
    says so). ``fport`` is None when the frame carries neither port nor payload.
    """

    raw: bytes
    mhdr: MHDR
    dev_addr: bytes
    fctrl: FCtrl
    fcnt16: int
    fopts: bytes
    fport: int | None
    frm_payload: bytes
    mic: bytes

    @property
    def uplink(self) -> bool:
        return self.mhdr.mtype in DATA_UP

    @property
    def confirmed(self) -> bool:
        return self.mhdr.mtype in (MType.CONFIRMED_DATA_UP, MType.CONFIRMED_DATA_DOWN)

    @property
    def device_key(self) -> str:
        return self.dev_addr.hex()


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """Join-request: JoinEUI (AppEUI in 1.0), DevEUI, DevNonce."""

    raw: bytes
    mhdr: MHDR
    join_eui: bytes
    dev_eui: bytes
    dev_nonce: int
    mic: bytes

    @property
    def device_key(self) -> str:
        return "deveui:" + self.dev_eui.hex()


@dataclass(frozen=True, slots=True)
class RejoinRequest:
    """Rejoin-request (LoRaWAN 1.1).

    Types 0 and 2 carry ``net_id`` (``join_eui`` is None); type 1 carries ``join_eui``
    (``net_id`` is None). ``rj_count`` is RJcount0 for types 0/2, RJcount1 for type 1.
    """

    raw: bytes
    mhdr: MHDR
    rejoin_type: int
    net_id: bytes | None
    join_eui: bytes | None
    dev_eui: bytes
    rj_count: int
    mic: bytes

    @property
    def device_key(self) -> str:
        return "deveui:" + self.dev_eui.hex()


@dataclass(frozen=True, slots=True)
class JoinAccept:
    """Join-accept as seen by the gateway on downlink: encrypted with the device's root key,
    so everything after the MHDR (MIC included) is opaque here."""

    raw: bytes
    mhdr: MHDR
    encrypted: bytes

    @property
    def device_key(self) -> str:
        return ""


@dataclass(frozen=True, slots=True)
class Proprietary:
    """Proprietary frame: vendor format after the MHDR, so no MIC is split off."""

    raw: bytes
    mhdr: MHDR
    payload: bytes

    @property
    def device_key(self) -> str:
        return ""


Frame = DataFrame | JoinRequest | RejoinRequest | JoinAccept | Proprietary
BytesLike = bytes | bytearray | memoryview


def _msb_first(field: bytes) -> bytes:
    """LoRaWAN identifiers travel little-endian; records keep them as printed."""
    return field[::-1]


def to_bytes(phy: object) -> bytes:
    """Accept bytes-like input (a memoryview of the RX buffer, say) as plain bytes."""
    if isinstance(phy, bytes):
        return phy
    if isinstance(phy, bytearray | memoryview):
        return bytes(phy)
    raise LoRaWANFormatError("not_bytes", type(phy).__name__)


def parse_mhdr(raw: bytes) -> MHDR:
    """Check the envelope shared by every frame: length and major version."""
    if len(raw) == 0:
        raise LoRaWANFormatError("empty")
    if len(raw) > MAX_PHY_PAYLOAD:
        raise LoRaWANFormatError("too_long", f"{len(raw)} bytes")
    mhdr = _MHDRS[raw[0]]
    if mhdr is None:
        raise LoRaWANFormatError("bad_major", f"major {raw[0] & 0x03}")
    return mhdr


def parse(phy: BytesLike) -> Frame:
    """Parse one PHYPayload; raises ``LoRaWANFormatError`` (and nothing else) if malformed."""
    raw = to_bytes(phy)
    mhdr = parse_mhdr(raw)
    mtype = raw[0] >> 5  # a plain int: hashing/comparing IntEnum members is slower
    if 2 <= mtype <= 5:
        return _parse_data(raw, mhdr, uplink=not mtype & 1)
    if mtype == MType.JOIN_REQUEST:
        return _parse_join_request(raw, mhdr)
    if mtype == MType.REJOIN_REQUEST:
        return _parse_rejoin_request(raw, mhdr)
    if mtype == MType.JOIN_ACCEPT:
        if len(raw) not in JOIN_ACCEPT_LENS:
            raise LoRaWANFormatError("bad_length", f"join-accept of {len(raw)} bytes")
        return JoinAccept(raw=raw, mhdr=mhdr, encrypted=raw[1:])
    return Proprietary(raw=raw, mhdr=mhdr, payload=raw[1:])


def parse_fctrl(byte: int, *, uplink: bool) -> FCtrl:
    """Decode the FCtrl byte for the given direction (a precomputed record)."""
    return (_FCTRL_UP if uplink else _FCTRL_DOWN)[byte & 0xFF]


def _decode_fctrl(byte: int, uplink: bool) -> FCtrl:
    bit4 = bool(byte & 0x10)
    return FCtrl(
        byte=byte,
        adr=bool(byte & 0x80),
        adr_ack_req=uplink and bool(byte & 0x40),
        ack=bool(byte & 0x20),
        class_b=uplink and bit4,
        f_pending=(not uplink) and bit4,
        fopts_len=byte & 0x0F,
    )


def _decode_mhdr(byte: int) -> MHDR | None:
    major = byte & 0x03
    if major != LORAWAN_R1:
        return None
    return MHDR(mtype=MType(byte >> 5), major=major, rfu=(byte >> 2) & 0x07)


# Both headers are one byte and the records are immutable, so every possible value is
# decoded once at import: parsing then costs a tuple index instead of building records.
_MHDRS: Final = tuple(_decode_mhdr(b) for b in range(256))
_FCTRL_UP: Final = tuple(_decode_fctrl(b, True) for b in range(256))
_FCTRL_DOWN: Final = tuple(_decode_fctrl(b, False) for b in range(256))


def _parse_data(raw: bytes, mhdr: MHDR, *, uplink: bool) -> DataFrame:
    size = len(raw)
    if size < DATA_MIN_LEN:
        raise LoRaWANFormatError("too_short", f"data frame of {size} bytes")
    fctrl = (_FCTRL_UP if uplink else _FCTRL_DOWN)[raw[5]]
    end_fopts = 8 + fctrl.fopts_len
    end_payload = size - MIC_LEN
    if end_fopts > end_payload:
        raise LoRaWANFormatError(
            "fopts_overrun", f"FOptsLen {fctrl.fopts_len} with {end_payload - 8} bytes left"
        )
    fport: int | None = None
    if end_fopts < end_payload:
        fport = raw[end_fopts]
        if fport == 0 and fctrl.fopts_len:
            raise LoRaWANFormatError("fopts_with_fport0", f"FOptsLen {fctrl.fopts_len}")
    return DataFrame(
        raw=raw,
        mhdr=mhdr,
        dev_addr=raw[4:0:-1],  # on air little-endian; kept as printed
        fctrl=fctrl,
        fcnt16=raw[6] | (raw[7] << 8),
        fopts=raw[8:end_fopts],
        fport=fport,
        frm_payload=raw[end_fopts + 1 : end_payload] if fport is not None else b"",
        mic=raw[end_payload:],
    )


def _parse_join_request(raw: bytes, mhdr: MHDR) -> JoinRequest:
    if len(raw) != JOIN_REQUEST_LEN:
        raise LoRaWANFormatError("bad_length", f"join-request of {len(raw)} bytes")
    return JoinRequest(
        raw=raw,
        mhdr=mhdr,
        join_eui=_msb_first(raw[1:9]),
        dev_eui=_msb_first(raw[9:17]),
        dev_nonce=int.from_bytes(raw[17:19], "little"),
        mic=raw[19:23],
    )


def _parse_rejoin_request(raw: bytes, mhdr: MHDR) -> RejoinRequest:
    if len(raw) < 2:
        raise LoRaWANFormatError("too_short", "rejoin-request without a type")
    rejoin_type = raw[1]
    if rejoin_type > 2:
        raise LoRaWANFormatError("rfu_rejoin_type", f"rejoin type {rejoin_type}")
    expected = REJOIN_1_LEN if rejoin_type == 1 else REJOIN_02_LEN
    if len(raw) != expected:
        raise LoRaWANFormatError(
            "bad_length", f"rejoin-request type {rejoin_type} of {len(raw)} bytes"
        )
    if rejoin_type == 1:
        net_id, join_eui, rest = None, _msb_first(raw[2:10]), 10
    else:
        net_id, join_eui, rest = _msb_first(raw[2:5]), None, 5
    return RejoinRequest(
        raw=raw,
        mhdr=mhdr,
        rejoin_type=rejoin_type,
        net_id=net_id,
        join_eui=join_eui,
        dev_eui=_msb_first(raw[rest : rest + 8]),
        rj_count=int.from_bytes(raw[rest + 8 : rest + 10], "little"),
        mic=raw[-MIC_LEN:],
    )


def device_key(phy: BytesLike) -> str:
    """The buffer's per-device ordering key for a raw PHYPayload; never raises.

    Lowercase DevAddr hex (as printed, e.g. ``"26011f2a"``) for data frames,
    ``"deveui:<hex>"`` for join and rejoin requests, ``""`` (no ordering constraint)
    for join-accepts, proprietary frames and anything unparseable.
    """
    try:
        return parse(phy).device_key
    except LoRaWANFormatError:
        return ""
