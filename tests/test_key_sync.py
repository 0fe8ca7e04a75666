"""Remote key sync: authenticated, versioned, idempotent, all-or-nothing messages."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from packet_forwarder.edge_filter import EdgeFilter, EdgePolicy
from packet_forwarder.key_sync import KeySync, sign_message
from tests.support.keystore import Device, make_device, open_store

SECRET = b"0123456789abcdef-shared-sync-secret"
GATEWAY = "0016c001ff10a235"


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.edge = EdgeFilter(EdgePolicy(unknown_devaddr="drop"), open_store(tmp_path))
        assert self.edge.store is not None
        self.sync = KeySync(self.edge.store, self.edge.index, gateway_id=GATEWAY, secret=SECRET)

    def send(self, seq: int, ops: list[dict[str, Any]], **body: Any) -> tuple[dict[str, Any], int]:
        message = {"v": 1, "gateway_id": GATEWAY, "seq": seq, "ops": ops, **body}
        ack, changes = self.sync.handle(sign_message(SECRET, message))
        return json.loads(ack), changes


def upsert(device: Device, f_cnt_up: int | None = None) -> dict[str, Any]:
    return {"op": "upsert", **device.row(f_cnt_up)}


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_good_message_applies_and_the_filter_sees_it(rig: Rig) -> None:
    rng = random.Random(3)
    a, b = make_device(rng), make_device(rng, "1.1.0")
    assert rig.edge.check(a.uplink(1)).reason == "unknown_devaddr"
    ack, changes = rig.send(1, [upsert(a, 5), upsert(b)])
    assert (ack["status"], ack["seq"], ack["changes"], ack["error"]) == ("applied", 1, 2, None)
    assert changes == 2
    assert rig.edge.check(a.uplink(5)).reason == "known_valid"
    assert rig.edge.check(a.uplink(4)).reason == "replay"  # f_cnt_up 5 = next expected
    assert rig.edge.check(b.uplink(0)).dev_eui == b.eui_hex
    ack, _ = rig.send(2, [{"op": "remove", "dev_eui": a.eui_hex}])
    assert ack["changes"] == 1
    assert rig.edge.check(a.uplink(6)).reason == "unknown_devaddr"


def test_applied_changes_survive_a_restart(rig: Rig, tmp_path: Path) -> None:
    a = make_device(random.Random(4))
    rig.send(10, [upsert(a)])
    rig.edge.close()
    reopened = EdgeFilter(EdgePolicy(), open_store(tmp_path))
    assert reopened.check(a.uplink(1)).reason == "known_valid"
    assert reopened.store is not None
    sync = KeySync(reopened.store, reopened.index, gateway_id=GATEWAY, secret=SECRET)
    stale = sign_message(SECRET, {"v": 1, "gateway_id": GATEWAY, "seq": 9, "ops": []})
    assert json.loads(sync.handle(stale)[0])["error"] == "stale_seq"


def test_redelivered_message_is_a_duplicate_and_changes_nothing(rig: Rig) -> None:
    a = make_device(random.Random(5))
    message = sign_message(SECRET, {"v": 1, "gateway_id": GATEWAY, "seq": 3, "ops": [upsert(a)]})
    assert rig.sync.handle(message)[1] == 1
    rig.edge.check(a.uplink(0))
    rig.edge.check(a.uplink(1))
    ack, changes = rig.sync.handle(message)
    assert (json.loads(ack)["status"], changes) == ("duplicate", 0)
    assert rig.edge.check(a.uplink(0)).reason == "replay"  # counters were not reset


def test_same_content_under_a_new_seq_is_idempotent(rig: Rig) -> None:
    a = make_device(random.Random(6))
    assert rig.send(1, [upsert(a, 10)])[1] == 1
    ack, changes = rig.send(2, [upsert(a, 10)])
    assert (ack["status"], changes) == ("applied", 0)
    assert rig.send(3, [{"op": "remove", "dev_eui": "00" * 8}])[1] == 0


def test_replayed_older_sequence_is_rejected(rig: Rig) -> None:
    a, b = make_device(random.Random(7)), make_device(random.Random(8))
    old = sign_message(SECRET, {"v": 1, "gateway_id": GATEWAY, "seq": 4, "ops": [upsert(a)]})
    rig.sync.handle(old)
    rig.send(5, [{"op": "remove", "dev_eui": a.eui_hex}])
    with capture_logs() as logs:
        ack, changes = rig.sync.handle(old)
    assert (json.loads(ack)["error"], changes) == ("stale_seq", 0)
    assert rig.edge.check(a.uplink(1)).reason == "unknown_devaddr"
    assert logs[0]["event"] == "key_sync_rejected"
    ack2, _ = rig.send(5, [upsert(b)])  # same seq, other content
    assert ack2["error"] == "seq_reused"


def test_bad_hmac_is_rejected_with_a_log_line_and_an_ack(rig: Rig) -> None:
    a = make_device(random.Random(9))
    forged = sign_message(b"not-the-shared-secret-at-all!!", {
        "v": 1, "gateway_id": GATEWAY, "seq": 1, "ops": [upsert(a)]})
    with capture_logs() as logs:
        ack, changes = rig.sync.handle(forged)
    decoded = json.loads(ack)
    assert (decoded["status"], decoded["error"], decoded["seq"], changes) == (
        "rejected", "bad_mac", None, 0)
    assert [e["reason"] for e in logs if e["event"] == "key_sync_rejected"] == ["bad_mac"]
    assert rig.edge.check(a.uplink(1)).reason == "unknown_devaddr"
    tampered = json.loads(sign_message(SECRET, {"v": 1, "gateway_id": GATEWAY, "seq": 1,
                                                "ops": []}))
    tampered["body"] = tampered["body"].replace('"seq":1', '"seq":2')
    assert json.loads(rig.sync.handle(json.dumps(tampered).encode())[0])["error"] == "bad_mac"


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"", "malformed"),
        (b"\xff\xfe", "malformed"),
        (b"[1, 2]", "malformed"),
        (b'{"v": 2, "body": "{}", "hmac_sha256": "00"}', "unsupported_version"),
        (b'{"v": 1, "body": 5, "hmac_sha256": "00"}', "malformed"),
        (b"{" * 300_000, "malformed"),
    ],
)
def test_malformed_envelopes(rig: Rig, payload: bytes, error: str) -> None:
    ack, changes = rig.sync.handle(payload)
    assert (json.loads(ack)["error"], changes) == (error, 0)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"v": 1, "gateway_id": GATEWAY, "seq": -1, "ops": []}, "malformed"),
        ({"v": 1, "gateway_id": GATEWAY, "seq": "1", "ops": []}, "malformed"),
        ({"v": 1, "gateway_id": "aa" * 8, "seq": 1, "ops": []}, "wrong_gateway"),
        ({"v": 1, "gateway_id": GATEWAY, "seq": 1, "ops": {}}, "malformed"),
        ({"v": 1, "gateway_id": GATEWAY, "seq": 1, "ops": [{"op": "explode"}]}, "invalid_op"),
        ({"v": 9, "gateway_id": GATEWAY, "seq": 1, "ops": []}, "unsupported_version"),
    ],
)
def test_authenticated_but_invalid_bodies(rig: Rig, body: dict[str, Any], error: str) -> None:
    ack, _ = rig.sync.handle(sign_message(SECRET, body))
    assert json.loads(ack)["error"] == error


def test_one_bad_op_rejects_the_whole_message(rig: Rig) -> None:
    rng = random.Random(10)
    good, bad = make_device(rng), make_device(rng)
    bad_op = upsert(bad)
    bad_op["f_nwk_s_int_key"] = "12" * 15
    ack, changes = rig.send(1, [upsert(good), bad_op])
    assert (ack["error"], changes) == ("invalid_op", 0)
    assert ack["detail"].startswith("ops[1] f_nwk_s_int_key")
    assert rig.edge.check(good.uplink(1)).reason == "unknown_devaddr"
    assert rig.send(1, [upsert(good)])[0]["status"] == "applied"  # seq not consumed


def test_acks_and_logs_never_carry_keys(rig: Rig) -> None:
    a = make_device(random.Random(12))
    bad_op = upsert(a)
    bad_op["nwk_s_enc_key"] = bad_op["nwk_s_enc_key"][:-2]
    with capture_logs() as logs:
        acks = [rig.send(1, [bad_op])[0], rig.send(1, [upsert(a)])[0]]
    text = json.dumps(acks) + repr(logs) + repr(rig.sync)
    for key_hex in [*a.secrets_hex(), bad_op["nwk_s_enc_key"], SECRET.hex(), SECRET.decode()]:
        assert key_hex not in text


def test_short_secret_is_refused(tmp_path: Path) -> None:
    edge = EdgeFilter(EdgePolicy(), open_store(tmp_path))
    assert edge.store is not None
    with pytest.raises(ValueError, match="at least 16 bytes"):
        KeySync(edge.store, edge.index, gateway_id=GATEWAY, secret=b"short")
