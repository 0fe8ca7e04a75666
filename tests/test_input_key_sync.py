"""Issue 16 point 2: every malformed key sync message gets a refusal ack and one line."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.test_key_sync import GATEWAY, SECRET, Rig


def signed(body_text: str, *, v: object = 1, mac: str | None = None) -> bytes:
    digest = hmac.new(SECRET, body_text.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return json.dumps({"v": v, "body": body_text,
                       "hmac_sha256": digest.hexdigest() if mac is None else mac}).encode()


def body(**fields: Any) -> str:
    return json.dumps({"v": 1, "gateway_id": GATEWAY, "seq": 1, "ops": [], **fields})


NESTED = b'{"v": 1, "body": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
KEY_SYNC_SEEDS: dict[str, tuple[bytes, str]] = {
    "non_ascii_mac": (signed(body(), mac="é" * 64), "malformed"),
    "short_mac": (signed(body(), mac="ab"), "malformed"),
    "nested_envelope": (NESTED, "malformed"),
    "nested_body": (signed("[" * 30_000 + "]" * 30_000), "malformed"),
    "seq_2_63": (signed(body(seq=2**63)), "malformed"),
    "seq_huge": (signed(body(seq=10**30)), "malformed"),
    "seq_bool": (signed(body(seq=True)), "malformed"),
    "seq_float": (signed(body(seq=1.0)), "malformed"),
    "envelope_v_true": (signed(body(), v=True), "unsupported_version"),
    "envelope_v_float": (signed(body(), v=1.0), "unsupported_version"),
    "body_v_true": (signed(body(v=True)), "unsupported_version"),
    "gateway_id_list": (signed(body(gateway_id=[GATEWAY])), "malformed"),
    "lone_surrogate_body": (json.dumps({"v": 1, "body": "\ud800", "hmac_sha256": "0" * 64})
                            .encode(), "malformed"),
    "not_utf8": (b'{"v": 1, "body": "\xff\xfe"}', "malformed"),
    "huge_int_literal": (b'{"v": ' + b"1" * 5000 + b"}", "malformed"),
    "fcnt_superscript": (signed(body(ops=[{"op": "upsert", "dev_eui": "00" * 8,
                                           "dev_addr": "01020304", "mac_version": "1.0.3",
                                           "nwk_s_enc_key": "00" * 16,
                                           "f_cnt_up": "\u00b2"}])), "invalid_op"),
    "fcnt_5000_digits": (signed(body(ops=[{"op": "upsert", "dev_eui": "00" * 8,
                                           "dev_addr": "01020304", "mac_version": "1.0.3",
                                           "nwk_s_enc_key": "00" * 16,
                                           "f_cnt_up": "9" * 5000}])), "invalid_op"),
    "mac_version_object": (signed(body(ops=[{"op": "upsert", "dev_eui": "00" * 8,
                                             "dev_addr": "01020304", "mac_version": {"a": 1},
                                             "nwk_s_enc_key": "00" * 16}])), "invalid_op"),
}


@pytest.mark.parametrize("name", sorted(KEY_SYNC_SEEDS))
def test_malformed_key_sync_message_is_refused_in_one_line(name: str, tmp_path: Path) -> None:
    payload, code = KEY_SYNC_SEEDS[name]
    rig = Rig(tmp_path)
    with capture_logs() as logs:
        ack_raw, changes = rig.sync.handle(payload)
    ack = json.loads(ack_raw)
    assert (ack["status"], ack["error"], changes) == ("rejected", code, 0)
    assert len(logs) == 1 and logs[0]["event"] == "key_sync_rejected"
    assert all("\n" not in str(v) for v in logs[0].values())
    assert rig.edge.store is not None and rig.edge.store.sync_state()[0] == -1  # nothing applied


def test_seq_at_the_sqlite_limit_is_applied(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    ack, _ = rig.send(2**63 - 1, [])
    assert ack["status"] == "applied" and ack["seq"] == 2**63 - 1


def test_an_unexpected_handler_error_is_still_acked_in_one_line(tmp_path: Path) -> None:
    rig = Rig(tmp_path)

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom\nsecond line")

    rig.sync._authenticate = broken  # type: ignore[method-assign]
    with capture_logs() as logs:
        ack = json.loads(rig.sync.handle(b"{}")[0])
    assert (ack["status"], ack["error"]) == ("rejected", "internal_error")
    assert len(logs) == 1
