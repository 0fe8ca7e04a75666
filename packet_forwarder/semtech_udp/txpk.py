"""A PULL_RESP ``txpk`` (PROTOCOL.TXT §6) as the ``DownlinkFrame`` the downlink handler decides.

One downlink path decides every request, whatever server sent it: same region
rules, duty-cycle budget and just-in-time queue. So a ``txpk`` is translated, not
handled separately:

* ``imme`` → immediately; ``tmst`` → a delay after the counter reading ``now``,
  with ``now`` as the context, so the handler computes exactly ``tmst`` as the
  start; ``tmms`` → GPS epoch time (refused GPS_UNLOCKED without GPS).
* ``powe`` is treated as EIRP like ChirpStack's ``power`` (the reference forwarder
  also subtracts the antenna gain from it); ``rfch`` is not used: the radio picks
  its TX chain.
* Mandatory fields and parse rules follow the reference forwarder's PULL_RESP
  parser (``lora_pkt_fwd.c``): ``codr`` accepts "2/3" and "1/2" as 4/6 and 4/8.

The handler's status becomes ``txpk_ack.error`` with the names listed in §6;
statuses the v2 protocol has no name for are mapped as the reference does for its
full queue (COLLISION_PACKET) or given their own name.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from chirpstack_api.gw import gw_pb2

from packet_forwarder.chirpstack import make_context
from packet_forwarder.downlink.clock import RadioNow
from packet_forwarder.downlink.status import TxStatus

_U32 = 0xFFFFFFFF
_DATR = re.compile(r"SF(\d{1,2})BW(\d{3})")
_CODE_RATES = {
    "4/5": gw_pb2.CodeRate.CR_4_5, "4/6": gw_pb2.CodeRate.CR_4_6,
    "2/3": gw_pb2.CodeRate.CR_4_6, "4/7": gw_pb2.CodeRate.CR_4_7,
    "4/8": gw_pb2.CodeRate.CR_4_8, "1/2": gw_pb2.CodeRate.CR_4_8,
}
_ERRORS = {
    TxStatus.OK: "NONE",
    TxStatus.TOO_LATE: "TOO_LATE",
    TxStatus.TOO_EARLY: "TOO_EARLY",
    TxStatus.COLLISION_PACKET: "COLLISION_PACKET",
    TxStatus.COLLISION_BEACON: "COLLISION_BEACON",
    TxStatus.TX_FREQ: "TX_FREQ",
    TxStatus.TX_POWER: "TX_POWER",
    TxStatus.GPS_UNLOCKED: "GPS_UNLOCKED",
    TxStatus.QUEUE_FULL: "COLLISION_PACKET",  # as lora_pkt_fwd.c does for JIT_ERROR_FULL
    TxStatus.DUTY_CYCLE_OVERFLOW: "DUTY_CYCLE_OVERFLOW",
}


class TxpkError(ValueError):
    """A ``txpk`` that cannot be transmitted as written (logged; no TX_ACK, as the reference)."""


def txpk_ack(status: TxStatus) -> dict[str, Any]:
    """The TX_ACK JSON object for a handler status (NONE spelled out for success)."""
    return {"txpk_ack": {"error": _ERRORS.get(status, "UNKNOWN")}}


def downlink_from_txpk(body: dict[str, Any], *, now: RadioNow | None, gateway_id: str,
                       downlink_id: int, default_power_dbm: int) -> gw_pb2.DownlinkFrame:
    """The one-item ``DownlinkFrame`` that asks for exactly what ``txpk`` asks.

    Anything a server can write that does not fit (NaN, 1e300 MHz, a power below
    the protobuf's range) raises :class:`TxpkError`, never another exception.
    """
    try:
        return _frame(body, now, gateway_id, downlink_id, default_power_dbm)
    except (ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, TxpkError):
            raise
        raise TxpkError(f"txpk value out of range: {exc}") from None


def _frame(body: dict[str, Any], now: RadioNow | None, gateway_id: str, downlink_id: int,
           default_power_dbm: int) -> gw_pb2.DownlinkFrame:
    txpk = body.get("txpk")
    if not isinstance(txpk, dict):
        raise TxpkError("PULL_RESP without a txpk object")
    item = gw_pb2.DownlinkFrameItem(phy_payload=_payload(txpk))
    info = item.tx_info
    info.frequency = round(_number(txpk, "freq") * 1e6)
    info.power = int(_number(txpk, "powe")) if "powe" in txpk else default_power_dbm
    _modulation(txpk, info)
    _timing(txpk, info, now)
    return gw_pb2.DownlinkFrame(downlink_id=downlink_id & _U32, gateway_id=gateway_id,
                                items=[item])


def _number(txpk: dict[str, Any], key: str) -> float:
    value = txpk.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TxpkError(f"txpk.{key} missing or not a number: {value!r}")
    if not 0 <= value < 1e15:  # also refuses NaN and infinities
        raise TxpkError(f"txpk.{key} out of range: {value!r}")
    return float(value)


def _flag(txpk: dict[str, Any], key: str) -> bool:
    value = txpk.get(key, False)
    if not isinstance(value, bool):
        raise TxpkError(f"txpk.{key} is not a boolean: {value!r}")
    return value


def _payload(txpk: dict[str, Any]) -> bytes:
    data = txpk.get("data")
    if not isinstance(data, str):
        raise TxpkError("txpk.data missing or not a string")
    try:
        payload = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TxpkError(f"txpk.data is not base64: {exc}") from None
    if "size" in txpk and _number(txpk, "size") != len(payload):
        raise TxpkError(f"txpk.size {txpk['size']} but data holds {len(payload)} B")
    if not payload:
        raise TxpkError("txpk.data is empty")
    return payload


def _modulation(txpk: dict[str, Any], info: gw_pb2.DownlinkTxInfo) -> None:
    modu = txpk.get("modu")
    if modu == "LORA":
        datr = txpk.get("datr")
        match = _DATR.fullmatch(datr) if isinstance(datr, str) else None
        if match is None:
            raise TxpkError(f"txpk.datr {datr!r} is not like SF7BW125")
        codr = txpk.get("codr")
        if codr not in _CODE_RATES:
            raise TxpkError(f"txpk.codr {codr!r} is not a LoRa coding rate")
        lora = info.modulation.lora
        lora.spreading_factor = int(match.group(1))
        lora.bandwidth = int(match.group(2)) * 1000
        lora.code_rate = _CODE_RATES[codr]
        lora.polarization_inversion = _flag(txpk, "ipol")
        lora.no_crc = _flag(txpk, "ncrc")
        if "prea" in txpk:
            lora.preamble = int(_number(txpk, "prea"))
    elif modu == "FSK":
        fsk = info.modulation.fsk
        fsk.datarate = int(_number(txpk, "datr"))
        fsk.frequency_deviation = int(_number(txpk, "fdev"))
    else:
        raise TxpkError(f"txpk.modu {modu!r} is not LORA or FSK")


def _timing(txpk: dict[str, Any], info: gw_pb2.DownlinkTxInfo, now: RadioNow | None) -> None:
    if _flag(txpk, "imme"):
        info.timing.immediately.SetInParent()
        return
    if "tmst" in txpk:
        tmst = int(_number(txpk, "tmst"))
        if tmst > _U32:
            raise TxpkError(f"txpk.tmst {tmst} does not fit in 32 bits")
        if now is None:  # the handler answers "concentrator not running"
            info.context = make_context(tmst, 0, 0)
            info.timing.delay.delay.FromMicroseconds(0)
            return
        lead = (tmst - now.count_us) & _U32
        if lead >= 1 << 31:  # in the past: a zero delay is refused TOO_LATE by the handler
            lead = 0
        info.context = make_context(now.count_us, now.session_id, now.wraps)
        info.timing.delay.delay.FromMicroseconds(lead)
        return
    if "tmms" in txpk:
        info.timing.gps_epoch.time_since_gps_epoch.FromMilliseconds(int(_number(txpk, "tmms")))
        return
    raise TxpkError("txpk has none of imme, tmst, tmms")
