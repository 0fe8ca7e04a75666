"""The device side of LoRaWAN: build frames a real end device would send.

The gateway never encrypts anything; this module exists so that tests, the demo's
virtual sensors and the benchmarks can produce genuine frames (encrypted payload,
correct MIC) without a radio. Everything follows the same byte rules as the parser:
identifiers are given most-significant byte first and sent little-endian.

Encryption is AES-128 in ECB over counter blocks (the LoRaWAN "A" blocks), i.e. a CTR
keystream, so one function both encrypts and decrypts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from packet_forwarder.lorawan.errors import LoRaWANKeyError
from packet_forwarder.lorawan.frames import MType
from packet_forwarder.lorawan.mic import (
    KEY_LEN,
    KeyLike,
    data_downlink_mic,
    data_uplink_mic_10,
    data_uplink_mic_11,
    join_request_mic,
    rejoin_request_mic,
)

_A_BLOCK = struct.Struct("<BBHBB4sIBB")
"""A_i: 0x01 | 0 | 0 | FCntId (FOpts 1.1) | Dir | DevAddr | FCnt(4) | 0 | i."""
_MAX_FOPTS: Final = 15
_MAX_FCNT: Final = 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class SessionKeys10:
    """LoRaWAN 1.0.x session keys."""

    nwk_s_key: bytes
    app_s_key: bytes

    def __repr__(self) -> str:
        return "SessionKeys10(<redacted>)"


@dataclass(frozen=True, slots=True)
class SessionKeys11:
    """LoRaWAN 1.1 session keys."""

    f_nwk_s_int_key: bytes
    s_nwk_s_int_key: bytes
    nwk_s_enc_key: bytes
    app_s_key: bytes

    def __repr__(self) -> str:
        return "SessionKeys11(<redacted>)"


def _raw_key(key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_LEN:
        raise LoRaWANKeyError("an AES-128 key must be 16 bytes")
    return bytes(key)


def _aes_ecb(key: bytes, blocks: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(_raw_key(key)), modes.ECB()).encryptor()
    return encryptor.update(blocks) + encryptor.finalize()


def _fixed(value: bytes, size: int, name: str) -> bytes:
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")
    return bytes(value)


def _xor(data: bytes, stream: bytes) -> bytes:
    """XOR ``data`` with the first ``len(data)`` bytes of the keystream."""
    size = len(data)
    mixed = int.from_bytes(data, "big") ^ int.from_bytes(stream[:size], "big")
    return mixed.to_bytes(size, "big")


def decrypt_frm_payload(
    key: bytes, payload: bytes, dev_addr: bytes, fcnt: int, *, uplink: bool
) -> bytes:
    """En- or decrypt an FRMPayload (the operation is its own inverse).

    ``key``: AppSKey for FPort > 0; NwkSKey (1.0) or NwkSEncKey (1.1) for FPort 0.
    ``dev_addr`` most-significant byte first, ``fcnt`` the full 32-bit counter.
    """
    if not 0 <= fcnt <= _MAX_FCNT:
        raise ValueError(f"FCnt {fcnt} is not a 32-bit counter")
    addr = _fixed(dev_addr, 4, "DevAddr")[::-1]
    direction = 0 if uplink else 1
    count = (len(payload) + 15) // 16
    blocks = b"".join(
        _A_BLOCK.pack(0x01, 0, 0, 0, direction, addr, fcnt, 0, i) for i in range(1, count + 1)
    )
    return _xor(payload, _aes_ecb(key, blocks)) if payload else b""


encrypt_frm_payload = decrypt_frm_payload
"""Same keystream both ways; the second name reads better at a call site that encrypts."""


def encrypt_fopts_11(
    nwk_s_enc_key: bytes,
    fopts: bytes,
    dev_addr: bytes,
    fcnt: int,
    *,
    uplink: bool,
    a_fcnt_down: bool = False,
) -> bytes:
    """En- or decrypt LoRaWAN 1.1 FOpts with the NwkSEncKey (1.1.1 / errata A block).

    ``a_fcnt_down`` is True for a downlink counted by AFCntDown (FPort > 0).
    """
    if len(fopts) > _MAX_FOPTS:
        raise ValueError(f"FOpts of {len(fopts)} bytes (at most {_MAX_FOPTS})")
    if not 0 <= fcnt <= _MAX_FCNT:
        raise ValueError(f"FCnt {fcnt} is not a 32-bit counter")
    addr = _fixed(dev_addr, 4, "DevAddr")[::-1]
    fcnt_id = 2 if (a_fcnt_down and not uplink) else 1
    block = _A_BLOCK.pack(0x01, 0, 0, fcnt_id, 0 if uplink else 1, addr, fcnt, 0, 1)
    return _xor(fopts, _aes_ecb(nwk_s_enc_key, block)) if fopts else b""


@dataclass(frozen=True, slots=True)
class DataFields:
    """The clear fields of a data frame, as a device (or network server) fills them in."""

    dev_addr: bytes
    fcnt: int
    fport: int | None = None
    payload: bytes = b""
    fopts: bytes = b""
    confirmed: bool = False
    adr: bool = False
    adr_ack_req: bool = False
    ack: bool = False
    class_b_or_f_pending: bool = False


def _assemble(fields: DataFields, *, uplink: bool, fopts: bytes, frm: bytes) -> bytes:
    """MHDR | FHDR | [FPort | FRMPayload] | 4 placeholder MIC bytes."""
    if len(fopts) > _MAX_FOPTS:
        raise ValueError(f"FOpts of {len(fopts)} bytes (at most {_MAX_FOPTS})")
    if fields.fport is None and fields.payload:
        raise ValueError("a payload needs an FPort")
    if fields.fport == 0 and fopts:
        raise ValueError("FPort 0 (MAC commands in the payload) forbids FOpts")
    if fields.fport is not None and not 0 <= fields.fport <= 0xFF:
        raise ValueError(f"FPort {fields.fport} does not fit one byte")
    if uplink:
        mtype = MType.CONFIRMED_DATA_UP if fields.confirmed else MType.UNCONFIRMED_DATA_UP
    else:
        mtype = MType.CONFIRMED_DATA_DOWN if fields.confirmed else MType.UNCONFIRMED_DATA_DOWN
    fctrl = (
        (0x80 if fields.adr else 0)
        | (0x40 if fields.adr_ack_req and uplink else 0)
        | (0x20 if fields.ack else 0)
        | (0x10 if fields.class_b_or_f_pending else 0)
        | len(fopts)
    )
    port = b"" if fields.fport is None else bytes([fields.fport])
    addr = _fixed(fields.dev_addr, 4, "DevAddr")[::-1]
    fhdr = addr + bytes([fctrl]) + (fields.fcnt & 0xFFFF).to_bytes(2, "little") + fopts
    return bytes([mtype << 5]) + fhdr + port + frm + b"\0\0\0\0"


def build_data_uplink_10(fields: DataFields, keys: SessionKeys10) -> bytes:
    """A LoRaWAN 1.0.x data uplink: payload encrypted, FOpts in clear, MIC set."""
    frm = _encrypt_payload(fields, keys.nwk_s_key, keys.app_s_key, uplink=True)
    frame = _assemble(fields, uplink=True, fopts=fields.fopts, frm=frm)
    return frame[:-4] + data_uplink_mic_10(frame, keys.nwk_s_key, fields.fcnt)


def build_data_uplink_11(
    fields: DataFields,
    keys: SessionKeys11,
    *,
    conf_fcnt: int = 0,
    tx_dr: int = 0,
    tx_ch: int = 0,
) -> bytes:
    """A LoRaWAN 1.1 data uplink: payload and FOpts encrypted, two-half MIC set."""
    frm = _encrypt_payload(fields, keys.nwk_s_enc_key, keys.app_s_key, uplink=True)
    fopts = encrypt_fopts_11(
        keys.nwk_s_enc_key, fields.fopts, fields.dev_addr, fields.fcnt, uplink=True
    )
    frame = _assemble(fields, uplink=True, fopts=fopts, frm=frm)
    mic = data_uplink_mic_11(
        frame,
        keys.f_nwk_s_int_key,
        keys.s_nwk_s_int_key,
        fields.fcnt,
        conf_fcnt=conf_fcnt,
        tx_dr=tx_dr,
        tx_ch=tx_ch,
    )
    return frame[:-4] + mic


def build_data_downlink(
    fields: DataFields, keys: SessionKeys10 | SessionKeys11, *, conf_fcnt: int = 0
) -> bytes:
    """A data downlink (what a network server sends), 1.0.x or 1.1 by the type of ``keys``.

    For 1.1, ``fields.fcnt`` is AFCntDown when FPort > 0, NFCntDown otherwise, and
    ``conf_fcnt`` is the FCnt of the confirmed uplink acknowledged (ACK set).
    """
    if isinstance(keys, SessionKeys10):
        frm = _encrypt_payload(fields, keys.nwk_s_key, keys.app_s_key, uplink=False)
        frame = _assemble(fields, uplink=False, fopts=fields.fopts, frm=frm)
        return frame[:-4] + data_downlink_mic(frame, keys.nwk_s_key, fields.fcnt)
    frm = _encrypt_payload(fields, keys.nwk_s_enc_key, keys.app_s_key, uplink=False)
    fopts = encrypt_fopts_11(
        keys.nwk_s_enc_key,
        fields.fopts,
        fields.dev_addr,
        fields.fcnt,
        uplink=False,
        a_fcnt_down=bool(fields.fport),
    )
    frame = _assemble(fields, uplink=False, fopts=fopts, frm=frm)
    mic = data_downlink_mic(frame, keys.s_nwk_s_int_key, fields.fcnt, conf_fcnt=conf_fcnt)
    return frame[:-4] + mic


def _encrypt_payload(fields: DataFields, nwk_key: bytes, app_key: bytes, *, uplink: bool) -> bytes:
    if fields.fport is None:
        return b""
    key = nwk_key if fields.fport == 0 else app_key
    return decrypt_frm_payload(key, fields.payload, fields.dev_addr, fields.fcnt, uplink=uplink)


def build_join_request(*, join_eui: bytes, dev_eui: bytes, dev_nonce: int, key: KeyLike) -> bytes:
    """A join-request signed with the AppKey (1.0) or NwkKey (1.1)."""
    body = (
        bytes([MType.JOIN_REQUEST << 5])
        + _fixed(join_eui, 8, "JoinEUI")[::-1]
        + _fixed(dev_eui, 8, "DevEUI")[::-1]
        + dev_nonce.to_bytes(2, "little")
    )
    return body + join_request_mic(body + b"\0\0\0\0", key)


def build_rejoin_request(
    *,
    rejoin_type: int,
    dev_eui: bytes,
    rj_count: int,
    key: KeyLike,
    net_id: bytes | None = None,
    join_eui: bytes | None = None,
) -> bytes:
    """A rejoin-request: type 0/2 need ``net_id`` and the SNwkSIntKey, type 1 needs
    ``join_eui`` and the JSIntKey."""
    if rejoin_type == 1:
        if join_eui is None:
            raise ValueError("a type 1 rejoin-request carries the JoinEUI")
        middle = _fixed(join_eui, 8, "JoinEUI")[::-1]
    elif rejoin_type in (0, 2):
        if net_id is None:
            raise ValueError("a type 0/2 rejoin-request carries the NetID")
        middle = _fixed(net_id, 3, "NetID")[::-1]
    else:
        raise ValueError(f"rejoin type {rejoin_type} is RFU")
    body = (
        bytes([MType.REJOIN_REQUEST << 5, rejoin_type])
        + middle
        + _fixed(dev_eui, 8, "DevEUI")[::-1]
        + rj_count.to_bytes(2, "little")
    )
    return body + rejoin_request_mic(body + b"\0\0\0\0", key)


def derive_session_keys_10(
    app_key: bytes, *, app_nonce: int, net_id: bytes, dev_nonce: int
) -> SessionKeys10:
    """1.0.x: NwkSKey/AppSKey = aes128_encrypt(AppKey, 0x01/0x02 | AppNonce | NetID |
    DevNonce | pad16), every field little-endian. ``net_id`` most-significant byte first."""
    tail = (
        app_nonce.to_bytes(3, "little")
        + _fixed(net_id, 3, "NetID")[::-1]
        + dev_nonce.to_bytes(2, "little")
    )
    return SessionKeys10(
        nwk_s_key=_aes_ecb(app_key, (b"\x01" + tail).ljust(16, b"\0")),
        app_s_key=_aes_ecb(app_key, (b"\x02" + tail).ljust(16, b"\0")),
    )


def derive_session_keys_11(
    nwk_key: bytes, app_key: bytes, *, join_nonce: int, join_eui: bytes, dev_nonce: int
) -> SessionKeys11:
    """1.1 (OptNeg set): network keys from the NwkKey, AppSKey from the AppKey, over
    prefix | JoinNonce | JoinEUI | DevNonce | pad16."""
    tail = (
        join_nonce.to_bytes(3, "little")
        + _fixed(join_eui, 8, "JoinEUI")[::-1]
        + dev_nonce.to_bytes(2, "little")
    )

    def derive(key: bytes, prefix: int) -> bytes:
        return _aes_ecb(key, (bytes([prefix]) + tail).ljust(16, b"\0"))

    return SessionKeys11(
        f_nwk_s_int_key=derive(nwk_key, 0x01),
        s_nwk_s_int_key=derive(nwk_key, 0x03),
        nwk_s_enc_key=derive(nwk_key, 0x04),
        app_s_key=derive(app_key, 0x02),
    )


def derive_js_int_key(nwk_key: bytes, dev_eui: bytes) -> bytes:
    """1.1 JSIntKey, which signs type 1 rejoin-requests.

    aes128_encrypt(NwkKey, 0x06 | DevEUI | pad16).
    """
    return _aes_ecb(nwk_key, (b"\x06" + _fixed(dev_eui, 8, "DevEUI")[::-1]).ljust(16, b"\0"))


def decrypt_join_accept(phy: bytes, key: bytes) -> bytes:
    """Decrypt a join-accept as the device does (AES *encrypt* of the body with the
    AppKey/NwkKey, the network having used AES decrypt): returns MHDR | clear body | MIC."""
    if len(phy) not in (17, 33):
        raise ValueError(f"join-accept of {len(phy)} bytes")
    return bytes(phy[:1]) + _aes_ecb(key, bytes(phy[1:]))
