"""Cross-check against an independent implementation: the npm package ``lora-packet``.

Thousands of random frames per message type and LoRaWAN version are built by our device
side, then both implementations compute the MIC, the verdict on the genuine frame and on
a copy with one random bit flipped, the decrypted payload and the derived keys.

Needs ``npm ci --prefix tests/interop``. Outside CI the test skips when that was not run;
with the ``CI`` environment variable set it fails instead, so CI cannot silently skip it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from packet_forwarder.lorawan import (
    DataFields,
    DataFrame,
    LoRaWANFormatError,
    SessionKeys10,
    SessionKeys11,
    build_data_downlink,
    build_data_uplink_10,
    build_data_uplink_11,
    build_join_request,
    build_rejoin_request,
    data_downlink_mic,
    data_uplink_mic_10,
    data_uplink_mic_11,
    decrypt_frm_payload,
    derive_js_int_key,
    derive_session_keys_10,
    derive_session_keys_11,
    encrypt_fopts_11,
    join_request_mic,
    parse,
    rejoin_request_mic,
)

INTEROP = Path(__file__).parent / "interop"
SCRIPT = INTEROP / "lorapacket_check.js"
FRAMES_PER_KIND = 1000
Ask = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def lora_packet() -> Ask:
    node = shutil.which("node")
    installed = (INTEROP / "node_modules" / "lora-packet").is_dir()
    if node is None or not installed:
        why = (
            "node is not on PATH"
            if node is None
            else "tests/interop/node_modules is absent: run `npm ci --prefix tests/interop`"
        )
        if os.environ.get("CI"):
            pytest.fail(f"lora-packet cross-check cannot run in CI: {why}")
        pytest.skip(f"lora-packet cross-check skipped: {why}")

    def ask(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        done = subprocess.run(
            [node, str(SCRIPT)],
            input="\n".join(json.dumps(r) for r in requests) + "\n",
            capture_output=True,
            text=True,
            cwd=INTEROP,
            timeout=240,
            check=True,
        )
        answers = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        assert len(answers) == len(requests), done.stderr
        return answers

    return ask


@dataclass(frozen=True)
class Case:
    """One frame, how lora-packet must be asked about it, and our own MIC function."""

    phy: bytes
    request: dict[str, Any]
    our_mic: Callable[[bytes], bytes]
    fields: DataFields | None = None
    payload_key: bytes | None = None
    fopts_key: bytes | None = None


def rand_key(rng: random.Random) -> bytes:
    return rng.randbytes(16)


def rand_fields(rng: random.Random) -> DataFields:
    fport = rng.choice([None, 0, *range(1, 256)])
    fopts = b"" if fport == 0 else rng.randbytes(rng.randint(0, 15))
    payload = b"" if fport is None else rng.randbytes(rng.randint(0, 180))
    return DataFields(
        dev_addr=rng.randbytes(4),
        fcnt=rng.choice([rng.randint(0, 0xFFFF), rng.randint(0, 0xFFFF_FFFF)]),
        fport=fport,
        payload=payload,
        fopts=fopts,
        confirmed=rng.random() < 0.5,
        adr=rng.random() < 0.5,
        adr_ack_req=rng.random() < 0.5,
        ack=rng.random() < 0.5,
        class_b_or_f_pending=rng.random() < 0.5,
    )


def case_up10(rng: random.Random) -> Case:
    keys = SessionKeys10(nwk_s_key=rand_key(rng), app_s_key=rand_key(rng))
    fields = rand_fields(rng)
    fcnt = fields.fcnt
    return Case(
        phy=build_data_uplink_10(fields, keys),
        request={"kind": "up10", "key": keys.nwk_s_key.hex(), "fcnt": fcnt},
        our_mic=lambda p: data_uplink_mic_10(p, keys.nwk_s_key, fcnt),
        fields=fields,
        payload_key=keys.nwk_s_key if fields.fport == 0 else keys.app_s_key,
    )


def rand_keys11(rng: random.Random) -> SessionKeys11:
    return SessionKeys11(
        f_nwk_s_int_key=rand_key(rng),
        s_nwk_s_int_key=rand_key(rng),
        nwk_s_enc_key=rand_key(rng),
        app_s_key=rand_key(rng),
    )


def case_up11(rng: random.Random) -> Case:
    keys = rand_keys11(rng)
    fields = rand_fields(rng)
    fcnt = fields.fcnt
    conf, dr, ch = rng.randint(0, 0xFFFF), rng.randint(0, 15), rng.randint(0, 255)
    return Case(
        phy=build_data_uplink_11(fields, keys, conf_fcnt=conf, tx_dr=dr, tx_ch=ch),
        request={
            "kind": "up11",
            "key": keys.f_nwk_s_int_key.hex(),
            "key2": keys.s_nwk_s_int_key.hex(),
            "fcnt": fcnt,
            "conf_fcnt": conf,
            "tx_dr": dr,
            "tx_ch": ch,
        },
        our_mic=lambda p: data_uplink_mic_11(
            p,
            keys.f_nwk_s_int_key,
            keys.s_nwk_s_int_key,
            fcnt,
            conf_fcnt=conf,
            tx_dr=dr,
            tx_ch=ch,
        ),
        fields=fields,
        payload_key=keys.nwk_s_enc_key if fields.fport == 0 else keys.app_s_key,
        fopts_key=keys.nwk_s_enc_key,
    )


def case_down10(rng: random.Random) -> Case:
    keys = SessionKeys10(nwk_s_key=rand_key(rng), app_s_key=rand_key(rng))
    fields = rand_fields(rng)
    fcnt = fields.fcnt
    return Case(
        phy=build_data_downlink(fields, keys),
        request={"kind": "down10", "key": keys.nwk_s_key.hex(), "fcnt": fcnt},
        our_mic=lambda p: data_downlink_mic(p, keys.nwk_s_key, fcnt),
        fields=fields,
        payload_key=keys.nwk_s_key if fields.fport == 0 else keys.app_s_key,
    )


def case_down11(rng: random.Random) -> Case:
    keys = rand_keys11(rng)
    fields = rand_fields(rng)
    fcnt, conf = fields.fcnt, rng.randint(0, 0xFFFF)
    return Case(
        phy=build_data_downlink(fields, keys, conf_fcnt=conf),
        request={
            "kind": "down11",
            "key": keys.s_nwk_s_int_key.hex(),
            "fcnt": fcnt,
            "conf_fcnt": conf,
        },
        our_mic=lambda p: data_downlink_mic(p, keys.s_nwk_s_int_key, fcnt, conf_fcnt=conf),
        fields=fields,
        payload_key=keys.nwk_s_enc_key if fields.fport == 0 else keys.app_s_key,
        fopts_key=keys.nwk_s_enc_key,
    )


def case_join(rng: random.Random) -> Case:
    key = rand_key(rng)  # AppKey (1.0) or NwkKey (1.1): the same computation
    phy = build_join_request(
        join_eui=rng.randbytes(8),
        dev_eui=rng.randbytes(8),
        dev_nonce=rng.randint(0, 0xFFFF),
        key=key,
    )
    return Case(
        phy=phy,
        request={"kind": "join", "key": key.hex()},
        our_mic=lambda p: join_request_mic(p, key),
    )


def case_rejoin(rejoin_type: int) -> Callable[[random.Random], Case]:
    def make(rng: random.Random) -> Case:
        key = rand_key(rng)  # SNwkSIntKey for 0/2, JSIntKey for 1
        phy = build_rejoin_request(
            rejoin_type=rejoin_type,
            net_id=rng.randbytes(3),
            join_eui=rng.randbytes(8),
            dev_eui=rng.randbytes(8),
            rj_count=rng.randint(0, 0xFFFF),
            key=key,
        )
        return Case(
            phy=phy,
            request={"kind": "rejoin", "key": key.hex()},
            our_mic=lambda p: rejoin_request_mic(p, key),
        )

    return make


MAKERS: dict[str, Callable[[random.Random], Case]] = {
    "up10": case_up10,
    "up11": case_up11,
    "down10": case_down10,
    "down11": case_down11,
    "join": case_join,
    "rejoin0": case_rejoin(0),
    "rejoin1": case_rejoin(1),
    "rejoin2": case_rejoin(2),
}


def flip_one_bit(rng: random.Random, phy: bytes) -> bytes:
    out = bytearray(phy)
    out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def ours(case: Case, phy: bytes) -> bytes | None:
    """Our MIC, or None when our side refuses the bytes as that kind of frame."""
    try:
        return case.our_mic(phy)
    except LoRaWANFormatError:
        return None


@pytest.mark.parametrize("kind", list(MAKERS))
def test_same_mic_and_verdicts_as_lora_packet(lora_packet: Ask, kind: str) -> None:
    rng = random.Random(f"interop-{kind}")
    cases = [MAKERS[kind](rng) for _ in range(FRAMES_PER_KIND)]
    tampered = [flip_one_bit(rng, c.phy) for c in cases]
    requests = [{"op": "mic", "phy": c.phy.hex(), **c.request} for c in cases]
    requests += [
        {"op": "mic", "phy": t.hex(), **c.request} for c, t in zip(cases, tampered, strict=True)
    ]
    answers = lora_packet(requests)
    genuine, flipped = answers[:FRAMES_PER_KIND], answers[FRAMES_PER_KIND:]
    compared = 0
    for case, bad, good_answer, bad_answer in zip(cases, tampered, genuine, flipped, strict=True):
        assert "error" not in good_answer, (case.phy.hex(), good_answer)
        assert good_answer["valid"] is True, case.phy.hex()
        assert good_answer["mic"] == case.phy[-4:].hex()
        our_bad = ours(case, bad)
        our_verdict = our_bad is not None and our_bad == bad[-4:]
        their_verdict = "error" not in bad_answer and bad_answer["valid"]
        assert our_verdict is False and their_verdict is False, bad.hex()
        if our_bad is not None and "error" not in bad_answer:
            assert bad_answer["mic"] == our_bad.hex(), bad.hex()
            compared += 1
    assert compared > FRAMES_PER_KIND // 2  # most flips still parse as the same kind


@pytest.mark.parametrize("kind", ["up10", "up11", "down10", "down11"])
def test_same_fields_and_plaintext_as_lora_packet(lora_packet: Ask, kind: str) -> None:
    rng = random.Random(f"plain-{kind}")
    cases = [MAKERS[kind](rng) for _ in range(FRAMES_PER_KIND)]
    requests: list[dict[str, Any]] = []
    for c in cases:
        assert c.fields is not None and c.payload_key is not None
        requests.append({"op": "mic", "phy": c.phy.hex(), **c.request})
        requests.append(
            {"op": "decrypt", "phy": c.phy.hex(), "key": c.payload_key.hex(), "fcnt": c.fields.fcnt}
        )
        if c.fopts_key is not None:
            requests.append(
                {"op": "fopts", "phy": c.phy.hex(), "key": c.fopts_key.hex(), "fcnt": c.fields.fcnt}
            )
    answers = iter(lora_packet(requests))
    for c in cases:
        assert c.fields is not None and c.payload_key is not None
        frame = parse(c.phy)
        assert isinstance(frame, DataFrame)
        theirs = next(answers)["fields"]
        assert theirs["dev_addr"] == frame.dev_addr.hex()
        assert theirs["fcnt16"] == frame.fcnt16
        assert theirs["fport"] == frame.fport
        assert theirs["fopts"] == frame.fopts.hex()
        assert theirs["frm_payload"] == frame.frm_payload.hex()
        assert theirs["ack"] == frame.fctrl.ack
        plain = decrypt_frm_payload(
            c.payload_key, frame.frm_payload, frame.dev_addr, c.fields.fcnt, uplink=frame.uplink
        )
        assert plain == c.fields.payload
        decrypted = next(answers)
        if frame.frm_payload:
            assert decrypted.get("plain") == plain.hex()
        if c.fopts_key is not None:
            fopts = next(answers)
            clear = encrypt_fopts_11(
                c.fopts_key,
                frame.fopts,
                frame.dev_addr,
                c.fields.fcnt,
                uplink=frame.uplink,
                a_fcnt_down=bool(frame.fport),
            )
            assert clear == c.fields.fopts
            if frame.fopts:
                assert fopts.get("plain") == clear.hex()


def test_same_derived_keys_as_lora_packet(lora_packet: Ask) -> None:
    rng = random.Random("derive")
    requests: list[dict[str, Any]] = []
    expected: list[dict[str, str]] = []
    for _ in range(300):
        app_key, nwk_key = rand_key(rng), rand_key(rng)
        nonce, dev_nonce = rng.randint(0, 0xFFFFFF), rng.randint(0, 0xFFFF)
        net_id, join_eui, dev_eui = rng.randbytes(3), rng.randbytes(8), rng.randbytes(8)
        k10 = derive_session_keys_10(app_key, app_nonce=nonce, net_id=net_id, dev_nonce=dev_nonce)
        k11 = derive_session_keys_11(
            nwk_key, app_key, join_nonce=nonce, join_eui=join_eui, dev_nonce=dev_nonce
        )
        requests.append(
            {
                "op": "derive10",
                "app_key": app_key.hex(),
                "app_nonce": nonce.to_bytes(3, "big").hex(),
                "net_id": net_id.hex(),
                "dev_nonce": dev_nonce.to_bytes(2, "big").hex(),
            }
        )
        expected.append({"NwkSKey": k10.nwk_s_key.hex(), "AppSKey": k10.app_s_key.hex()})
        requests.append(
            {
                "op": "derive11",
                "app_key": app_key.hex(),
                "nwk_key": nwk_key.hex(),
                "join_nonce": nonce.to_bytes(3, "big").hex(),
                "join_eui": join_eui.hex(),
                "dev_nonce": dev_nonce.to_bytes(2, "big").hex(),
            }
        )
        expected.append(
            {
                "FNwkSIntKey": k11.f_nwk_s_int_key.hex(),
                "SNwkSIntKey": k11.s_nwk_s_int_key.hex(),
                "NwkSEncKey": k11.nwk_s_enc_key.hex(),
                "AppSKey": k11.app_s_key.hex(),
            }
        )
        requests.append({"op": "js", "nwk_key": nwk_key.hex(), "dev_eui": dev_eui.hex()})
        expected.append({"JSIntKey": derive_js_int_key(nwk_key, dev_eui).hex()})
    for want, got in zip(expected, lora_packet(requests), strict=True):
        assert "error" not in got, got
        for name, value in want.items():
            assert got["keys"][name] == value, name
