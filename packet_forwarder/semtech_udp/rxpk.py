"""A stored ChirpStack ``UplinkFrame`` as one ``rxpk`` object (PROTOCOL.TXT §4).

The buffer keeps every uplink as a serialised ``UplinkFrame`` whatever the server
protocol, so a frame is stored once and rendered per server at send time. Field
formats follow the table of §4 and the reference forwarder's printf formats
(``lora_pkt_fwd.c``): ``time`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, ``freq`` in MHz
with Hz precision, ``lsnr`` with 0.1 dB precision, ``data`` base64 padded.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from chirpstack_api.gw import gw_pb2

from packet_forwarder.chirpstack import parse_context

_CODE_RATES = {
    gw_pb2.CodeRate.CR_4_5: "4/5", gw_pb2.CodeRate.CR_4_6: "4/6",
    gw_pb2.CodeRate.CR_4_7: "4/7", gw_pb2.CodeRate.CR_4_8: "4/8",
}
_STAT = {gw_pb2.CRCStatus.CRC_OK: 1, gw_pb2.CRCStatus.BAD_CRC: -1, gw_pb2.CRCStatus.NO_CRC: 0}


class RxpkError(ValueError):
    """The stored frame lacks what an ``rxpk`` needs (no modulation)."""


def compact_time(unix_ns: int) -> str:
    """ISO 8601 'compact' UTC time with microseconds, as ``rxpk.time`` wants it."""
    stamp = dt.datetime.fromtimestamp(unix_ns // 1000 / 1e6, tz=dt.UTC)
    stamp = stamp.replace(microsecond=(unix_ns // 1000) % 1_000_000)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rxpk_from_uplink(frame: gw_pb2.UplinkFrame, gw_time_ns: int | None) -> dict[str, Any]:
    """The ``rxpk`` for one frame; ``gw_time_ns`` None leaves ``time`` out (clock not trusted).

    ``tmst`` is the concentrator counter at the end of reception, the first word
    of the context this gateway wrote; ``tmms`` appears only with a GPS time.
    """
    info, tx = frame.rx_info, frame.tx_info
    ctx = parse_context(info.context)
    out: dict[str, Any] = {}
    if gw_time_ns is not None:
        out["time"] = compact_time(gw_time_ns)
    if info.HasField("time_since_gps_epoch"):
        out["tmms"] = info.time_since_gps_epoch.ToMilliseconds()
    out["tmst"] = ctx.count_us if ctx is not None else int.from_bytes(info.context[:4] or b"\0")
    out.update(chan=info.channel, rfch=info.rf_chain, freq=round(tx.frequency / 1e6, 6),
               stat=_STAT.get(info.crc_status, 0))
    kind = tx.modulation.WhichOneof("parameters")
    if kind == "lora":
        lora = tx.modulation.lora
        out.update(modu="LORA", datr=f"SF{lora.spreading_factor}BW{lora.bandwidth // 1000}",
                   codr=_CODE_RATES.get(lora.code_rate, "OFF"))
    elif kind == "fsk":
        out.update(modu="FSK", datr=tx.modulation.fsk.datarate)
    else:
        raise RxpkError(f"uplink {info.uplink_id} has no LoRa or FSK modulation")
    out["rssi"] = info.rssi
    if kind == "lora":
        out["lsnr"] = round(info.snr, 1)
    out.update(size=len(frame.phy_payload),
               data=base64.b64encode(frame.phy_payload).decode("ascii"))
    return out
