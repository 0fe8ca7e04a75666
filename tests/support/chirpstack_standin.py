"""A ChirpStack v4 network server stand-in, written from ChirpStack's own source.

Each behaviour names the file of github.com/chirpstack/chirpstack it follows (paths
relative to that repository). It is not ChirpStack: it builds the same messages
and makes the same decisions as the gateway-facing parts of it, so a gateway that
works with it works with an unchanged ChirpStack. What it stands in for:

- ``chirpstack/src/gateway/backend/mqtt.rs``: subscribes to
  ``$share/<share_name>/<prefix>/gateway/+/event/+`` at the configured QoS (0 by
  default); a payload is JSON when it contains the text ``gatewayId``; commands go
  to a gateway in the encoding its last event used; ``region_config_id`` is added
  to the stats metadata before the stats are handled.
- ``chirpstack/src/uplink/stats.rs`` ``update_gateway_configuration``: a config is
  pushed only to gateways whose stats metadata has ``concentratord_version``, and
  only when metadata ``config_version`` differs from a hash of the stats interval
  and the region's gateway channels. (ChirpStack hashes with Rust's
  ``DefaultHasher``; the stand-in uses SHA-256: only equality matters.) Per-
  modulation counts are mapped to data rates as ``per_modultation_to_per_dr`` does.
- ``chirpstack/src/downlink/data.rs`` ``set_tx_info_for_rx1`` / ``set_tx_info_for_rx2``:
  class A items (RX1 then RX2 for ``rx_window = 0``, RX2 only for ``rx_window = 2``)
  with the region's default EIRP (``downlink_tx_power = -1``), timing ``delay``
  1 s / 2 s and the uplink's context; class C is the RX2 item with ``immediately``.
- ``chirpstack/src/downlink/join.rs``: the same two items with the join-accept delays
  (5 s / 6 s).
- ``chirpstack/src/downlink/multicast.rs``: one item; class B is ``gps_epoch``.
- ``chirpstack/src/downlink/tx_ack.rs``: the first OK item is the one sent; without
  one, the last item's status is the outcome.

Region facts come from lrwn (``lrwn/src/region/*.rs``: ``get_downlink_tx_power_eirp``,
RX1 frequency and data-rate rules, defaults) and ChirpStack's shipped
``chirpstack/configuration/region_*.toml`` (RX2, ping slots, gateway channels).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from chirpstack_api.gw import gw_pb2
from google.protobuf import json_format
from google.protobuf.message import Message
from paho.mqtt.enums import CallbackAPIVersion

SHARE_NAME = "chirpstack"
JOIN_ACCEPT_DELAY1_S = 5   # lrwn region defaults: join_accept_delay1 / 2
JOIN_ACCEPT_DELAY2_S = 6
RX1_DELAY_S = 1            # region_*.toml rx1_delay = 1; RX2 is rx1_delay + 1


@dataclass(frozen=True)
class DataRate:
    spreading_factor: int
    bandwidth_hz: int


@dataclass(frozen=True)
class GatewayChannel:
    """One ``[[regions.gateway.channels]]`` entry of a ChirpStack region file."""

    frequency_hz: int
    bandwidth_hz: int
    spreading_factors: tuple[int, ...]
    fsk_bitrate: int = 0
    """Set for an FSK channel (``modulation = "FSK"``, ``datarate``)."""


@dataclass(frozen=True)
class RegionDefaults:
    """What ChirpStack uses for one region with its shipped configuration."""

    gateway_region: str
    """The gateway's name for the region (``[concentrator] region``)."""
    prefix: str
    """``topic_prefix`` of ChirpStack's region file."""
    data_rates: dict[int, DataRate]
    uplink_dr: int
    """The data rate the test's device sends at (SF7/125 kHz)."""
    rx1_hz: Callable[[int], int]
    """RX1 frequency for an uplink frequency (lrwn ``get_rx1_frequency_for_uplink_frequency``)."""
    rx1_dr: Callable[[int], int]
    """RX1 data rate at rx1_dr_offset 0 (lrwn ``get_rx1_data_rate_index``)."""
    rx2_hz: int
    rx2_dr: int
    eirp: Callable[[int], int]
    """lrwn ``get_downlink_tx_power_eirp``."""
    ping_slot_hz: int
    ping_slot_dr: int
    channels: tuple[GatewayChannel, ...]
    """What ``command/config`` carries (the region file's gateway channels)."""

    def dr_of(self, sf: int, bw: int, *, uplink: bool = True) -> int | None:
        """lrwn ``get_data_rate_index``: US915/AU915 uplinks are DR0-6, downlinks DR8-13."""
        found = [i for i, d in self.data_rates.items()
                 if (d.spreading_factor, d.bandwidth_hz) == (sf, bw)]
        split = [i for i in found if (i < 8) == uplink]
        return (split or found or [None])[0]


def _same(freq: int) -> int:
    return freq


def _eu868_eirp(freq: int) -> int:
    # lrwn/src/region/eu868.rs get_downlink_tx_power_eirp
    if 863_000_000 <= freq < 869_200_000:
        return 16
    if 869_400_000 <= freq < 869_650_000:
        return 29
    return 16


def _grid_rx1(first_uplink_hz: int) -> Callable[[int], int]:
    # lrwn us915.rs / au915.rs: 923.3 MHz + (uplink channel % 8) × 600 kHz
    def rx1(freq: int) -> int:
        channel = (freq - first_uplink_hz) // 200_000
        return 923_300_000 + (channel % 8) * 600_000
    return rx1


_LORA_125 = {0: DataRate(12, 125_000), 1: DataRate(11, 125_000), 2: DataRate(10, 125_000),
             3: DataRate(9, 125_000), 4: DataRate(8, 125_000), 5: DataRate(7, 125_000)}
_DOWN_500 = {8: DataRate(12, 500_000), 9: DataRate(11, 500_000), 10: DataRate(10, 500_000),
             11: DataRate(9, 500_000), 12: DataRate(8, 500_000), 13: DataRate(7, 500_000)}
_SF7_12 = (7, 8, 9, 10, 11, 12)


def _channels(*freqs: int, sfs: tuple[int, ...] = _SF7_12,
              extra: tuple[GatewayChannel, ...] = ()) -> tuple[GatewayChannel, ...]:
    return (*(GatewayChannel(f, 125_000, sfs) for f in freqs), *extra)


REGIONS: dict[str, RegionDefaults] = {
    "EU868": RegionDefaults(
        "EU868", "eu868", _LORA_125, 5, _same, lambda dr: dr, 869_525_000, 0, _eu868_eirp,
        869_525_000, 3,
        _channels(868_100_000, 868_300_000, 868_500_000, 867_100_000, 867_300_000,
                  867_500_000, 867_700_000, 867_900_000,
                  extra=(GatewayChannel(868_300_000, 250_000, (7,)),
                         GatewayChannel(868_800_000, 125_000, (), fsk_bitrate=50_000)))),
    "US915": RegionDefaults(
        # region_us915_0.toml; RX1 DR = 10 + DR for DR0-3, DR13 for DR4
        "US915", "us915_0",
        {0: DataRate(10, 125_000), 1: DataRate(9, 125_000), 2: DataRate(8, 125_000),
         3: DataRate(7, 125_000), 4: DataRate(8, 500_000), **_DOWN_500},
        3, _grid_rx1(902_300_000), lambda dr: min(10 + dr, 13), 923_300_000, 8, lambda _f: 21,
        923_300_000, 8,
        _channels(*(902_300_000 + 200_000 * i for i in range(8)), sfs=(7, 8, 9, 10),
                  extra=(GatewayChannel(903_000_000, 500_000, (8,)),))),
    "AU915": RegionDefaults(
        # region_au915_0.toml; RX1 DR = 8 + DR for DR0-5, DR13 for DR6
        "AU915", "au915_0", {**_LORA_125, 6: DataRate(8, 500_000), **_DOWN_500},
        5, _grid_rx1(915_200_000), lambda dr: min(8 + dr, 13), 923_300_000, 8, lambda _f: 30,
        923_300_000, 8,
        _channels(*(915_200_000 + 200_000 * i for i in range(8)),
                  extra=(GatewayChannel(915_900_000, 500_000, (8,)),))),
    "AS923-1": RegionDefaults(
        "AS923-1", "as923", _LORA_125, 5, _same, lambda dr: dr, 923_200_000, 2, lambda _f: 16,
        923_400_000, 3, _channels(923_200_000, 923_400_000)),
    "IN865": RegionDefaults(
        "IN865", "in865", _LORA_125, 5, _same, lambda dr: dr, 866_550_000, 2, lambda _f: 30,
        866_550_000, 4, _channels(865_062_500, 865_402_500, 865_985_000)),
    "KR920": RegionDefaults(
        "KR920", "kr920", _LORA_125, 5, _same, lambda dr: dr, 921_900_000, 0, lambda _f: 23,
        923_100_000, 3, _channels(922_100_000, 922_300_000, 922_500_000)),
}


def ack_outcome(ack: gw_pb2.DownlinkTxAck) -> tuple[int | None, int]:
    """(index of the item sent or None, the status ChirpStack records) — ``tx_ack.rs``."""
    status = gw_pb2.TxAckStatus.IGNORED
    for i, item in enumerate(ack.items):
        status = item.status
        if item.status == gw_pb2.TxAckStatus.OK:
            return i, status
    return None, status


@dataclass
class _Seen:
    uplinks: list[gw_pb2.UplinkFrame] = field(default_factory=list)
    stats: list[gw_pb2.GatewayStats] = field(default_factory=list)
    acks: dict[int, gw_pb2.DownlinkTxAck] = field(default_factory=dict)
    configs_sent: list[gw_pb2.GatewayConfiguration] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class ChirpStackStandIn:
    """The gateway-facing side of one ChirpStack region, on a real broker."""

    def __init__(self, port: int, region: RegionDefaults, *, stats_interval_secs: int = 30,
                 qos: int = 0) -> None:
        self.region = region
        self.stats_interval_secs = stats_interval_secs
        self.qos = qos
        self.seen = _Seen()
        self._json: dict[str, bool] = {}
        self._cond = threading.Condition()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="chirpstack-standin",
                                   protocol=mqtt.MQTTv5)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port, keepalive=30)
        self._client.loop_start()

    # -- mqtt.rs ----------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        client.subscribe(f"$share/{SHARE_NAME}/{self.region.prefix}/gateway/+/event/+",
                         qos=self.qos)

    @staticmethod
    def _decode(payload: bytes, cls: type[Message], json: bool) -> Message:
        msg = cls()
        if json:
            json_format.Parse(payload.decode(), msg, ignore_unknown_fields=True)
        else:
            msg.ParseFromString(payload)
        return msg

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        json = b"gatewayId" in payload   # mqtt.rs payload_is_json
        try:
            if msg.topic.endswith("/up"):
                up = self._decode(payload, gw_pb2.UplinkFrame, json)
                assert isinstance(up, gw_pb2.UplinkFrame)
                self._json[up.rx_info.gateway_id] = json
                with self._cond:
                    self.seen.uplinks.append(up)
                    self._cond.notify_all()
            elif msg.topic.endswith("/stats"):
                stats = self._decode(payload, gw_pb2.GatewayStats, json)
                assert isinstance(stats, gw_pb2.GatewayStats)
                stats.metadata["region_config_id"] = self.region.prefix
                self._json[stats.gateway_id] = json
                self._update_gateway_configuration(stats)
                with self._cond:
                    self.seen.stats.append(stats)
                    self._cond.notify_all()
            elif msg.topic.endswith("/ack"):
                ack = self._decode(payload, gw_pb2.DownlinkTxAck, json)
                assert isinstance(ack, gw_pb2.DownlinkTxAck)
                self._json[ack.gateway_id] = json
                with self._cond:
                    self.seen.acks[ack.downlink_id] = ack
                    self._cond.notify_all()
        except Exception as exc:  # ChirpStack logs "Processing gateway event error" and goes on
            with self._cond:
                self.seen.errors.append(f"{msg.topic}: {exc!r}")

    def _publish(self, gateway_id: str, command: str, msg: Message) -> None:
        json = self._json.get(gateway_id, False)   # mqtt.rs gateway_is_json
        body = json_format.MessageToJson(msg).encode() if json else msg.SerializeToString()
        topic = f"{self.region.prefix}/gateway/{gateway_id}/command/{command}"
        self._client.publish(topic, body, qos=self.qos)

    # -- stats.rs ---------------------------------------------------------------------------

    def config_hash(self) -> str:
        text = repr((self.stats_interval_secs, self.region.channels))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _update_gateway_configuration(self, stats: gw_pb2.GatewayStats) -> None:
        if "concentratord_version" not in stats.metadata or not self.region.channels:
            return
        wanted = self.config_hash()
        if stats.metadata.get("config_version", "") == wanted:
            return
        conf = gw_pb2.GatewayConfiguration(gateway_id=stats.gateway_id, version=wanted)
        for c in self.region.channels:
            ch = conf.channels.add(frequency=c.frequency_hz)
            if c.fsk_bitrate:
                ch.modulation_legacy = 1  # common.Modulation.FSK
                ch.fsk_modulation_config.bandwidth_legacy = c.bandwidth_hz // 1000
                ch.fsk_modulation_config.bandwidth = c.bandwidth_hz
                ch.fsk_modulation_config.bitrate = c.fsk_bitrate
                continue
            ch.modulation_legacy = 0  # common.Modulation.LORA
            ch.lora_modulation_config.bandwidth_legacy = c.bandwidth_hz // 1000
            ch.lora_modulation_config.bandwidth = c.bandwidth_hz
            ch.lora_modulation_config.spreading_factors.extend(c.spreading_factors)
        conf.stats_interval.FromSeconds(self.stats_interval_secs)
        with self._cond:
            self.seen.configs_sent.append(conf)
        self._publish(stats.gateway_id, "config", conf)

    def per_dr(self, items: object, *, uplink: bool) -> dict[int, int]:
        """``per_modultation_to_per_dr``: counts whose modulation is no data rate are dropped."""
        out: dict[int, int] = {}
        for item in items:  # type: ignore[attr-defined]
            lora = item.modulation.lora
            if item.modulation.WhichOneof("parameters") != "lora":
                continue
            if lora.code_rate == gw_pb2.CodeRate.CR_UNDEFINED:
                continue   # lrwn compares the code rate too: no match without it
            dr = self.region.dr_of(lora.spreading_factor, lora.bandwidth, uplink=uplink)
            if dr is None:
                continue
            out[dr] = out.get(dr, 0) + item.count
        return out

    # -- downlink/data.rs, join.rs, multicast.rs --------------------------------------------

    def _item(self, frame: gw_pb2.DownlinkFrame, payload: bytes, freq: int, dr: int,
              context: bytes = b"") -> gw_pb2.DownlinkTxInfo:
        item = frame.items.add(phy_payload=payload)
        tx = item.tx_info
        tx.frequency, tx.power, tx.context = freq, self.region.eirp(freq), context
        rate = self.region.data_rates[dr]
        lora = tx.modulation.lora   # helpers::set_tx_info_data_rate
        lora.bandwidth, lora.spreading_factor = rate.bandwidth_hz, rate.spreading_factor
        lora.code_rate = gw_pb2.CodeRate.CR_4_5
        lora.polarization_inversion = True
        return tx

    def class_a(self, downlink_id: int, up: gw_pb2.UplinkFrame, payload: bytes, *,
                rx_window: int = 0, join: bool = False) -> gw_pb2.DownlinkFrame:
        """RX1 then RX2 (``rx_window`` 0), RX1 only (1) or RX2 only (2)."""
        frame = gw_pb2.DownlinkFrame(downlink_id=downlink_id, gateway_id=up.rx_info.gateway_id)
        d1, d2 = ((JOIN_ACCEPT_DELAY1_S, JOIN_ACCEPT_DELAY2_S) if join
                  else (RX1_DELAY_S, RX1_DELAY_S + 1))
        lora = up.tx_info.modulation.lora
        up_dr = self.region.dr_of(lora.spreading_factor, lora.bandwidth)
        assert up_dr is not None
        if rx_window in (0, 1):
            tx = self._item(frame, payload, self.region.rx1_hz(up.tx_info.frequency),
                            self.region.rx1_dr(up_dr), up.rx_info.context)
            tx.timing.delay.delay.FromSeconds(d1)
        if rx_window in (0, 2):
            tx = self._item(frame, payload, self.region.rx2_hz, self.region.rx2_dr,
                            up.rx_info.context)
            tx.timing.delay.delay.FromSeconds(d2)
        return frame

    def class_c(self, downlink_id: int, gateway_id: str, payload: bytes) -> gw_pb2.DownlinkFrame:
        frame = gw_pb2.DownlinkFrame(downlink_id=downlink_id, gateway_id=gateway_id)
        tx = self._item(frame, payload, self.region.rx2_hz, self.region.rx2_dr)
        tx.timing.immediately.SetInParent()
        return frame

    def class_b(self, downlink_id: int, gateway_id: str, payload: bytes,
                gps_time_us: int) -> gw_pb2.DownlinkFrame:
        frame = gw_pb2.DownlinkFrame(downlink_id=downlink_id, gateway_id=gateway_id)
        tx = self._item(frame, payload, self.region.ping_slot_hz, self.region.ping_slot_dr)
        tx.timing.gps_epoch.time_since_gps_epoch.FromMicroseconds(gps_time_us)
        return frame

    def send_downlink(self, frame: gw_pb2.DownlinkFrame) -> None:
        self._publish(frame.gateway_id, "down", frame)

    # -- waiting ----------------------------------------------------------------------------

    def wait(self, what: Callable[[_Seen], object], timeout_s: float = 15.0) -> object:
        """The first truthy ``what(seen)``; raises TimeoutError naming nothing found."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                found = what(self.seen)
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"stand-in waited {timeout_s} s; errors: {self.seen.errors}")
                self._cond.wait(left)

    def uplink(self, phy_payload: bytes) -> gw_pb2.UplinkFrame:
        found = self.wait(lambda s: next((u for u in s.uplinks
                                          if u.phy_payload == phy_payload), None))
        assert isinstance(found, gw_pb2.UplinkFrame)
        return found

    def ack(self, downlink_id: int) -> gw_pb2.DownlinkTxAck:
        found = self.wait(lambda s: s.acks.get(downlink_id))
        assert isinstance(found, gw_pb2.DownlinkTxAck)
        return found

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()
