"""The regression corpus of issue 16: every case the fuzzing campaign found, as raw inputs.

Each family is a dict name → payload, so the fuzz tests run every seed as is and also
mutate them, and the daemon test replays all of them at once over MQTT and the sockets.
"""

from __future__ import annotations

import json
from random import Random
from typing import Final

from chirpstack_api.gw import gw_pb2

from hal.types import COUNTER_MODULO
from packet_forwarder.chirpstack import make_context
from tests.support.gateway_proc import GATEWAY_ID
from tests.test_input_channel_plan import PLAN_SEEDS
from tests.test_input_key_sync import KEY_SYNC_SEEDS

GPS_START_US: Final = (1_400_000_000 - 4) * 1_000_000
DAY_US: Final = 86_400 * 1_000_000


def _frame(downlink_id: int, *, gps_us: int | None = None, preamble: int = 0,
           fsk: tuple[int, int] | None = None, items: int = 1) -> bytes:
    frame = gw_pb2.DownlinkFrame(downlink_id=downlink_id, gateway_id=GATEWAY_ID)
    for _ in range(items):
        item = frame.items.add(phy_payload=b"\x60" + bytes(12))
        tx = item.tx_info
        tx.frequency, tx.power = 869_525_000, 14
        if fsk is not None:
            tx.modulation.fsk.datarate, tx.modulation.fsk.frequency_deviation = fsk
        else:
            lora = tx.modulation.lora
            lora.spreading_factor, lora.bandwidth = 9, 125_000
            lora.code_rate = gw_pb2.CodeRate.CR_4_5
            lora.polarization_inversion, lora.preamble = True, preamble
        if gps_us is not None:
            tx.timing.gps_epoch.time_since_gps_epoch.FromMicroseconds(gps_us)
        else:
            tx.context = make_context(1_000_000, 1, 0)
            tx.timing.delay.delay.FromMicroseconds(1_000_000)
    return frame.SerializeToString()


DOWN_SEEDS: Final[dict[str, bytes]] = {
    "class_b_50_days_ahead": _frame(9001, gps_us=GPS_START_US + 50 * DAY_US),
    "class_b_before_epoch": _frame(9002, gps_us=-5_000_000),
    "class_b_one_period_back": _frame(9003, gps_us=GPS_START_US + 6_000_000 - COUNTER_MODULO),
    "preamble_70000": _frame(9004, preamble=70_000),
    "fsk_deviation_4ghz": _frame(9005, fsk=(50_000, 4_000_000_000)),
    "fsk_1_bps": _frame(9006, fsk=(1, 25_000)),
    "items_5000": _frame(9007, items=5000),
    "id_without_items": gw_pb2.DownlinkFrame(downlink_id=9008,
                                             gateway_id=GATEWAY_ID).SerializeToString(),
    "json_deep": b'{"gatewayId": "' + GATEWAY_ID.encode() + b'", "downlinkId": 9009, "items": '
                 + b"[" * 5_000 + b"]" * 5_000 + b"}",
}
"""``command/down`` payloads. Ids 9001..9009; 9008 has no items and is not acked."""

UNACKED_DOWN_IDS: Final = frozenset({9008})

UNKNOWN_COMMANDS: Final[dict[str, bytes]] = {
    f"unknown_{i}": b"x" * i for i in range(0, 64, 7)
}

INJECT_SEEDS: Final[dict[str, bytes]] = {
    "deep_list": b"[" * 50_000 + b"]" * 50_000,
    "deep_object": b'{"a":' * 3_000 + b"1" + b"}" * 3_000,
    "sf_missing": json.dumps({"phy_payload": "40011f2a2600010001a1b2c3d4",
                              "frequency": 868_100_000, "rssi": -60, "snr": 5}).encode(),
    "not_utf8": b"\xff\xfe{}",
    "nan_frequency": b'{"phy_payload": "40", "frequency": NaN, "sf": 7, "rssi": 1, "snr": 1}',
    "huge_int": b'{"phy_payload": "40", "frequency": ' + b"9" * 5000 + b"}",
    "cr_list": b'{"phy_payload": "40", "frequency": 868100000, "sf": 7, "rssi": 1, "snr": 1,'
               b' "cr": ["4/5"]}',
}

STATUS_SEEDS: Final[dict[str, bytes]] = {
    "deep_list": b"[" * 2_000 + b"]" * 2_000 + b"\n",
    "deep_object": b'{"a":' * 700 + b"1" + b"}" * 700 + b"\n",
    "not_json": b"status please\n",
    "too_long": b"x" * 10_000 + b"\n",
}

CONFIG_SEEDS: Final[dict[str, bytes]] = {
    "port_0": b'[mqtt]\nserver = "mqtt://127.0.0.1:0"\n',
    "port_99999": b'[mqtt]\nserver = "mqtt://127.0.0.1:99999"\n',
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",
    "nul_bytes": b"[mqtt]\x00\nserver = 1\n",
    "deep_inline_tables": b"a = " + b"{b = " * 2_000 + b"1" + b"}" * 2_000 + b"\n",
    "deep_arrays": b"a = " + b"[" * 3_000 + b"]" * 3_000 + b"\n",
}

KEYS_SEEDS: Final[dict[str, bytes]] = {name: seed for name, (seed, _) in KEY_SYNC_SEEDS.items()}
PLAN_PAYLOADS: Final[dict[str, bytes]] = {name: seed for name, (seed, _) in PLAN_SEEDS.items()}


def mutate(seed: bytes, rng: Random, edits: int = 4) -> bytes:
    """``seed`` with up to ``edits`` random byte flips, insertions, deletions or a cut tail
    (for the daemon test, which replays a fixed, seeded sample instead of Hypothesis)."""
    data = bytearray(seed)
    for _ in range(rng.randint(1, edits)):
        op, at = rng.choice(("flip", "insert", "delete", "cut")), rng.randint(0, len(data))
        if op == "insert":
            data[at:at] = bytes([rng.randint(0, 255)])
        elif data and op == "flip":
            data[at % len(data)] ^= 1 << rng.randint(0, 7)
        elif data and op == "delete":
            del data[at % len(data)]
        elif op == "cut":
            del data[at:]
    return bytes(data)
