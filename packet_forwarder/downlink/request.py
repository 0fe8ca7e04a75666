"""Turn a ``command/down`` payload into typed TX requests, or salvage its id when it is garbage.

ChirpStack waits for an ack before it considers a downlink handled, so even a
payload that does not decode is answered when its ``downlink_id`` can be read:
:func:`salvage` reads the top-level fields of a broken protobuf (or a JSON object)
as far as they go.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from chirpstack_api.gw import gw_pb2

from hal.types import Modulation, TxPacket, TxTiming
from packet_forwarder.downlink.airtime import FSK_DEFAULT_PREAMBLE_BYTES

_U32 = 0xFFFFFFFF
_CODE_RATES = {
    gw_pb2.CodeRate.CR_4_5: "4/5", gw_pb2.CodeRate.CR_4_6: "4/6",
    gw_pb2.CodeRate.CR_4_7: "4/7", gw_pb2.CodeRate.CR_4_8: "4/8",
}
DEFAULT_LORA_PREAMBLE = 8
"""What a zero (unset) preamble means, as in the reference HAL (STD_LORA_PREAMBLE)."""
_DOWNLINK_ID_FIELD = 3
_ITEMS_FIELD = 5

TimingKind = Literal["immediately", "delay", "gps_epoch"]


class ItemError(ValueError):
    """A downlink item that cannot be turned into a TX packet (answered INTERNAL_ERROR)."""


@dataclass(frozen=True, slots=True)
class ItemRequest:
    """One decoded item: the packet (start time not yet known) and how to time it."""

    packet: TxPacket
    power_eirp_dbm: int
    timing: TimingKind
    delay_us: int = 0
    gps_time_us: int = 0
    context: bytes = b""


def _duration_us(seconds: int, nanos: int) -> int:
    return seconds * 1_000_000 + nanos // 1000


def _packet(item: gw_pb2.DownlinkFrameItem, conducted_dbm: int) -> TxPacket:
    info = item.tx_info
    kind = info.modulation.WhichOneof("parameters")
    if kind == "lora":
        lora = info.modulation.lora
        code_rate = _CODE_RATES.get(lora.code_rate) or lora.code_rate_legacy or "4/5"
        if code_rate not in _CODE_RATES.values():
            raise ItemError(f"unsupported coding rate {code_rate!r}")
        return TxPacket(
            payload=item.phy_payload, frequency_hz=info.frequency, power_dbm=conducted_dbm,
            modulation=Modulation.LORA, spreading_factor=lora.spreading_factor,
            bandwidth_hz=lora.bandwidth, code_rate=code_rate,
            invert_polarity=lora.polarization_inversion,
            preamble=lora.preamble or DEFAULT_LORA_PREAMBLE,
            no_crc=lora.no_crc, rf_chain=0)
    if kind == "fsk":
        fsk = info.modulation.fsk
        return TxPacket(
            payload=item.phy_payload, frequency_hz=info.frequency, power_dbm=conducted_dbm,
            modulation=Modulation.FSK, spreading_factor=0, bandwidth_hz=0, code_rate="",
            preamble=FSK_DEFAULT_PREAMBLE_BYTES, no_crc=False, datarate_bps=fsk.datarate,
            fdev_hz=fsk.frequency_deviation)
    raise ItemError(f"unsupported modulation {kind or 'none'}")


def parse_item(item: gw_pb2.DownlinkFrameItem, antenna_gain_dbi: float) -> ItemRequest:
    """Decode one item; the chip's power is the requested EIRP minus the antenna gain."""
    if not item.HasField("tx_info"):
        raise ItemError("item has no tx_info")
    info = item.tx_info
    if not item.phy_payload:
        raise ItemError("empty phy_payload")
    conducted = math.floor(info.power - antenna_gain_dbi + 1e-9)
    packet = _packet(item, conducted)
    which = info.timing.WhichOneof("parameters")
    if which == "immediately":
        return ItemRequest(packet, info.power, "immediately", context=info.context)
    if which == "delay":
        d = info.timing.delay.delay
        delay_us = _duration_us(d.seconds, d.nanos)
        if delay_us < 0:
            raise ItemError(f"negative delay {delay_us} µs")
        return ItemRequest(packet, info.power, "delay", delay_us=delay_us, context=info.context)
    if which == "gps_epoch":
        t = info.timing.gps_epoch.time_since_gps_epoch
        return ItemRequest(packet, info.power, "gps_epoch",
                           gps_time_us=_duration_us(t.seconds, t.nanos), context=info.context)
    raise ItemError("item has no timing")


def with_start(request: ItemRequest, count_us: int) -> TxPacket:
    """The request's packet, timestamped to start at ``count_us``."""
    return replace(request.packet, count_us=count_us & _U32, timing=TxTiming.TIMESTAMPED)


@dataclass(frozen=True, slots=True)
class Salvaged:
    """What could be read from an undecodable frame."""

    downlink_id: int | None
    item_count: int


def salvage(payload: bytes) -> Salvaged:
    """Best-effort ``downlink_id`` and item count of a payload that failed to decode."""
    if b"gatewayId" in payload or payload.lstrip()[:1] == b"{":
        found = _salvage_json(payload)
        if found.downlink_id is not None:
            return found
    return _salvage_protobuf(payload)


_JSON_ID = re.compile(rb'"downlink_?[iI]d"\s*:\s*"?(\d{1,10})"?\s*[,}]')


def _salvage_json(payload: bytes) -> Salvaged:
    try:
        doc: Any = json.loads(payload.decode("utf-8", errors="replace"))
    except ValueError:
        return Salvaged(None, 0)
    except RecursionError:
        # well-formed as far as it goes but nested too deep to parse: read the id as text
        found = _JSON_ID.search(payload)
        value = int(found.group(1)) if found else -1
        return Salvaged(value if 0 <= value <= _U32 else None, 0)
    if not isinstance(doc, dict):
        return Salvaged(None, 0)
    raw_id = doc.get("downlinkId", doc.get("downlink_id"))
    downlink_id = None
    if isinstance(raw_id, int | str) and not isinstance(raw_id, bool):
        try:
            value = int(raw_id)
        except ValueError:
            value = -1
        downlink_id = value if 0 <= value <= _U32 else None
    items = doc.get("items")
    return Salvaged(downlink_id, len(items) if isinstance(items, list) else 0)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def _salvage_protobuf(payload: bytes) -> Salvaged:
    downlink_id: int | None = None
    items, pos = 0, 0
    try:
        while pos < len(payload):
            key, pos = _varint(payload, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = _varint(payload, pos)
                if number == _DOWNLINK_ID_FIELD:
                    downlink_id = value & _U32
            elif wire == 2:
                length, pos = _varint(payload, pos)
                pos += length
                if pos > len(payload):
                    break
                items += number == _ITEMS_FIELD
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            else:
                break
    except ValueError:
        pass
    return Salvaged(downlink_id, items)
