"""ChirpStack v4 gateway messages: building, encoding and decoding them.

Pure functions over the ``chirpstack_api.gw`` protobuf classes, so the MQTT
adapter only moves bytes. Two rules shape this module:

* ``tx_info`` must serialise exactly like other ChirpStack gateways' for the same
  frame, because the server de-duplicates across gateways on those bytes; so it
  carries frequency and modulation parameters and nothing else.
* the server accepts protobuf or protobuf's JSON mapping and tells them apart by
  the text ``gatewayId``; we encode and decode by the same rule.
"""

from __future__ import annotations

import json
import struct
from typing import Final, NamedTuple, TypeVar

from chirpstack_api.gw import gw_pb2
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from hal.types import CrcStatus, Modulation, RxPacket

PROTOBUF: Final = "protobuf"
JSON: Final = "json"
MARSHALERS: Final = (PROTOBUF, JSON)

_U32_MAX = 0xFFFFFFFF
_CONTEXT = struct.Struct(">III")
_JSON_MARKER = b"gatewayId"

_CODE_RATES: Final = {
    "4/5": gw_pb2.CodeRate.CR_4_5,
    "4/6": gw_pb2.CodeRate.CR_4_6,
    "4/7": gw_pb2.CodeRate.CR_4_7,
    "4/8": gw_pb2.CodeRate.CR_4_8,
}
_CRC_STATUS: Final = {
    CrcStatus.NO_CRC: gw_pb2.CRCStatus.NO_CRC,
    CrcStatus.BAD_CRC: gw_pb2.CRCStatus.BAD_CRC,
    CrcStatus.CRC_OK: gw_pb2.CRCStatus.CRC_OK,
}

M = TypeVar("M", bound=Message)


class MessageDecodeError(ValueError):
    """A payload is neither a valid protobuf nor a valid JSON encoding of the expected message."""


class UnknownMarshalerError(ValueError):
    """The configured marshaler is not ``protobuf`` or ``json``."""


class Context(NamedTuple):
    """What the gateway packs into ``rx_info.context`` and gets back in downlinks."""

    count_us: int
    session_id: int
    wraps: int


def make_context(count_us: int, session_id: int, wraps: int) -> bytes:
    """12 bytes: counter, session id, wrap count (each u32 big-endian).

    The counter comes first so a server or tool that reads the first four bytes,
    as with other ChirpStack gateways, still sees the concentrator time. The
    session id and wrap count let a downlink answering a replayed (stale) uplink be
    recognised: the 32-bit counter alone repeats every ~71.6 minutes.
    """
    for name, value in (("count_us", count_us), ("session_id", session_id), ("wraps", wraps)):
        if not 0 <= value <= _U32_MAX:
            raise ValueError(f"{name}={value} does not fit in 32 bits")
    return _CONTEXT.pack(count_us, session_id, wraps)


def parse_context(context: bytes) -> Context | None:
    """The fields of a context this gateway made, None for any other length."""
    if len(context) != _CONTEXT.size:
        return None
    return Context(*_CONTEXT.unpack(context))


class TxInfoCache:
    """Prepared ``tx_info`` messages, one per (frequency, modulation parameters) heard.

    A gateway hears a handful of channels and data rates, so the same few ``tx_info``
    messages are built again and again: copying a prepared one costs a fraction of
    setting its nested fields one by one. Bounded: when ``max_entries`` different
    keys have been seen (odd frequency offsets, say) it starts over.
    """

    def __init__(self, max_entries: int = 256) -> None:
        self._prepared: dict[tuple[int, str, int, int, int, str], gw_pb2.UplinkTxInfo] = {}
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._prepared)

    def fill(self, tx: gw_pb2.UplinkTxInfo, rx: RxPacket) -> None:
        """Make ``tx`` what ``_fill_tx_info`` would make it for ``rx``."""
        key = (rx.frequency_hz, rx.modulation.value, rx.spreading_factor, rx.bandwidth_hz,
               rx.datarate_bps, rx.code_rate)
        prepared = self._prepared.get(key)
        if prepared is None:
            if len(self._prepared) >= self._max_entries:
                self._prepared.clear()
            prepared = self._prepared[key] = gw_pb2.UplinkTxInfo()
            _fill_tx_info(prepared, rx)
        tx.CopyFrom(prepared)


def build_uplink_frame(
    rx: RxPacket, *, gateway_id: str, uplink_id: int, gw_time_ns: int | None, context: bytes,
    fine_time_since_gps_epoch_ns: int | None = None, tx_infos: TxInfoCache | None = None,
) -> gw_pb2.UplinkFrame:
    """The ``UplinkFrame`` for one received packet; ``gw_time_ns`` None leaves gw_time out.

    ``fine_time_since_gps_epoch_ns`` (SX1303 with GPS lock) is what the network server's
    TDOA geolocation uses; None leaves it out. ``tx_infos`` (the radio loop keeps one)
    supplies ``tx_info`` from prepared messages; the result is the same without it.

    Runs for every frame: fields are set in place (no temporary messages copied in).
    """
    frame = gw_pb2.UplinkFrame(phy_payload=rx.payload)
    if tx_infos is not None:
        tx_infos.fill(frame.tx_info, rx)
    else:
        _fill_tx_info(frame.tx_info, rx)
    info = frame.rx_info
    info.gateway_id = gateway_id
    info.uplink_id = uplink_id & _U32_MAX
    if gw_time_ns is not None:
        info.gw_time.FromNanoseconds(gw_time_ns)
    if fine_time_since_gps_epoch_ns is not None:
        info.fine_time_since_gps_epoch.FromNanoseconds(fine_time_since_gps_epoch_ns)
    info.rssi = round(rx.rssi_dbm)
    info.snr = rx.snr_db
    info.channel = rx.if_chain
    info.rf_chain = rx.rf_chain
    info.crc_status = _CRC_STATUS[rx.crc_status]
    info.context = context
    return frame


def _fill_tx_info(tx: gw_pb2.UplinkTxInfo, rx: RxPacket) -> None:
    """Frequency and modulation only: see the module docstring on de-duplication."""
    tx.frequency = rx.frequency_hz
    set_modulation(tx.modulation, rx.modulation.value, rx.spreading_factor, rx.bandwidth_hz,
                   rx.datarate_bps, rx.code_rate)


def set_modulation(target: gw_pb2.Modulation, modulation: str, spreading_factor: int,
                   bandwidth_hz: int, datarate_bps: int, code_rate: str) -> None:
    """Fill a ``gw.Modulation`` (uplink tx_info, per-modulation stats) from plain values.

    The code rate matters in stats: ChirpStack maps each per-modulation count to a
    data rate with lrwn ``get_data_rate_index``, which compares the code rate too
    (chirpstack ``src/uplink/stats.rs`` ``per_modultation_to_per_dr``).
    """
    if modulation == Modulation.LORA.value:
        target.lora.bandwidth = bandwidth_hz
        target.lora.spreading_factor = spreading_factor
        target.lora.code_rate = _CODE_RATES.get(code_rate, gw_pb2.CodeRate.CR_UNDEFINED)
    else:
        target.fsk.datarate = datarate_bps


def conn_state(gateway_id: str, online: bool) -> gw_pb2.ConnState:
    """The retained ``state/conn`` message (also the last will, with ``online`` False)."""
    state = gw_pb2.ConnState.State.ONLINE if online else gw_pb2.ConnState.State.OFFLINE
    return gw_pb2.ConnState(gateway_id=gateway_id, state=state)


def marshal(msg: Message, marshaler: str) -> bytes:
    """Encode as protobuf, or as protobuf's standard JSON mapping (camelCase) for ``json``."""
    if marshaler == PROTOBUF:
        return msg.SerializeToString()
    if marshaler == JSON:
        return json.dumps(json_format.MessageToDict(msg), separators=(",", ":")).encode()
    raise UnknownMarshalerError(f"unknown marshaler {marshaler!r}, expected one of {MARSHALERS}")


def unmarshal(payload: bytes, cls: type[M]) -> M:
    """Decode either encoding, telling them apart the way the ChirpStack server does.

    Unknown fields are ignored in both encodings. Any failure (bad protobuf, bad
    JSON, a known field of the wrong type, bad UTF-8) becomes
    ``MessageDecodeError`` so callers handle one exception type.
    """
    msg = cls()
    try:
        if _JSON_MARKER in payload:
            # Fields this version does not know are skipped, as ChirpStack's own readers
            # do (pbjson ``ignore_unknown_fields``; the gateway bridge's ``DiscardUnknown``):
            # a newer server must not make every command fail.
            json_format.Parse(payload.decode("utf-8"), msg, ignore_unknown_fields=True)
        else:
            msg.ParseFromString(payload)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, ValueError) as exc:
        raise MessageDecodeError(f"cannot decode {cls.__name__}: {exc}") from exc
    except RecursionError as exc:  # deeply nested input
        raise MessageDecodeError(f"cannot decode {cls.__name__}: nested too deeply") from exc
    return msg


def from_protobuf(payload: bytes, cls: type[M]) -> M:
    """Decode a payload known to be protobuf (e.g. a stored body), whatever bytes it holds."""
    msg = cls()
    try:
        msg.ParseFromString(payload)
    except (DecodeError, RecursionError) as exc:
        raise MessageDecodeError(f"cannot decode {cls.__name__}: {exc}") from exc
    return msg


def with_replay_metadata(body: bytes, hold_ms: int, clock_synced: bool) -> bytes:
    """A stored protobuf ``UplinkFrame`` marked as replayed from the buffer.

    The server hands ``rx_info.metadata`` to applications, so they can tell a late
    frame from a live one and how late it is; ``clock_synced=false`` warns that
    ``gw_time`` came from an unsynchronised clock.
    """
    return with_delivery_metadata(body, buffered=True, hold_ms=hold_ms,
                                  clock_synced=clock_synced)


def with_delivery_metadata(
    body: bytes, *, buffered: bool, hold_ms: int | None, clock_synced: bool,
    rewrite_gw_time: bool = False, gw_time_ns: int | None = None, corrected: bool = False,
) -> bytes:
    """A stored ``UplinkFrame`` with what the buffer knows about its timing at publish.

    ``rewrite_gw_time`` replaces ``gw_time`` with ``gw_time_ns`` or, when that is None,
    removes it: a receive time that cannot be trusted is left out rather than
    published wrong (a Pi without RTC would otherwise say 1970). ``corrected`` adds
    ``gw_time_corrected=true`` when the time was rebuilt from the boot clock after
    NTP synchronised. ``hold_ms`` None (unknown, e.g. held over a reboot without a
    synchronised clock) leaves ``hold_ms`` out.
    """
    frame = from_protobuf(body, gw_pb2.UplinkFrame)
    info = frame.rx_info
    metadata = info.metadata
    if buffered:
        metadata["buffered"] = "true"
        if hold_ms is not None:
            metadata["hold_ms"] = str(hold_ms)
    if not clock_synced:
        metadata["clock_synced"] = "false"
    if rewrite_gw_time:
        if gw_time_ns is None:
            info.ClearField("gw_time")
        else:
            info.gw_time.FromNanoseconds(gw_time_ns)
            if corrected:
                metadata["gw_time_corrected"] = "true"
    serialised: bytes = frame.SerializeToString()
    return serialised
