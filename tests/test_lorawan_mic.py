"""MICs and payload crypto against published examples, plus tamper and round-trip tests."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packet_forwarder.lorawan import (
    CmacKey,
    DataFields,
    DataFrame,
    LoRaWANFormatError,
    LoRaWANKeyError,
    SessionKeys10,
    SessionKeys11,
    build_data_downlink,
    build_data_uplink_10,
    build_data_uplink_11,
    build_join_request,
    build_rejoin_request,
    data_uplink_mic_10,
    decrypt_frm_payload,
    decrypt_join_accept,
    derive_js_int_key,
    derive_session_keys_10,
    derive_session_keys_11,
    encrypt_fopts_11,
    join_request_mic,
    parse,
    prepare_key,
    verify_data_downlink,
    verify_data_uplink_10,
    verify_data_uplink_11,
    verify_data_uplink_11_f,
    verify_join_request,
    verify_rejoin_request,
)

ONES = bytes([1] * 16)
TWOS = bytes([2] * 16)
# LoRaWAN 1.1 session keys used by the brocaar/lorawan (ChirpStack) unit tests,
# phypayload_test.go TestPHYPayloadMACPayloadLoRaWAN11 (ConfFCnt 1, TxDr 2, TxCh 3).
S_NWK = TWOS
F_NWK = bytes([2] * 15 + [3])
NWK_ENC = bytes([2] * 15 + [4])


# --- Known answers -------------------------------------------------------------------


def test_lora_packet_readme_uplink() -> None:
    # github.com/anthonykirby/lora-packet README: NwkSKey 44024241..., AppSKey ec925802...
    phy = bytes.fromhex("40F17DBE4900020001954378762B11FF0D")
    nwk_s_key = bytes.fromhex("44024241ed4ce9a68c6a8bc055233fd3")
    app_s_key = bytes.fromhex("ec925802ae430ca77fd3dd73cb2cc588")
    assert data_uplink_mic_10(phy, nwk_s_key, 2).hex() == "2b11ff0d"
    assert verify_data_uplink_10(phy, CmacKey(nwk_s_key), 2)
    frame = parse(phy)
    assert isinstance(frame, DataFrame)
    assert decrypt_frm_payload(app_s_key, frame.frm_payload, frame.dev_addr, 2, uplink=True) == (
        b"test"
    )


def test_chirpstack_lorawan_10_uplink_and_join_request() -> None:
    # brocaar/lorawan phypayload_test.go: data "QAQDAgGAAQABppRkJhXWw7WC" (NwkSKey 02..,
    # AppSKey 01.., "hello") and join-request "AAQDAgEEAwIBBQQDAgUEAwItEGqZDhI=" (AppKey 01..).
    phy = base64.b64decode("QAQDAgGAAQABppRkJhXWw7WC")
    assert verify_data_uplink_10(phy, TWOS, 1)
    frame = parse(phy)
    assert isinstance(frame, DataFrame)
    assert decrypt_frm_payload(ONES, frame.frm_payload, frame.dev_addr, 1, uplink=True) == b"hello"
    join = base64.b64decode("AAQDAgEEAwIBBQQDAgUEAwItEGqZDhI=")
    assert verify_join_request(join, ONES)
    assert join_request_mic(join, ONES).hex() == "6a990e12"


def test_chirpstack_lorawan_11_uplinks() -> None:
    # brocaar/lorawan TestPHYPayloadMACPayloadLoRaWAN11: "hello" uplink without and with ACK.
    plain = bytes([64, 4, 3, 2, 1, 128, 1, 0, 1, 166, 148, 100, 38, 21, 118, 18, 54, 106])
    acked = bytes([64, 4, 3, 2, 1, 160, 1, 0, 1, 166, 148, 100, 38, 21, 248, 66, 196, 185])
    for phy in (plain, acked):
        assert verify_data_uplink_11(phy, F_NWK, S_NWK, 1, conf_fcnt=1, tx_dr=2, tx_ch=3)
        assert verify_data_uplink_11_f(phy, F_NWK, 1)
    # ConfFCnt enters B1 only with the ACK bit: the acked frame fails with another one.
    assert not verify_data_uplink_11(acked, F_NWK, S_NWK, 1, conf_fcnt=2, tx_dr=2, tx_ch=3)
    assert verify_data_uplink_11(plain, F_NWK, S_NWK, 1, conf_fcnt=2, tx_dr=2, tx_ch=3)
    assert not verify_data_uplink_11(plain, F_NWK, S_NWK, 1, conf_fcnt=1, tx_dr=2, tx_ch=4)


def test_chirpstack_lorawan_11_downlinks_and_fopts() -> None:
    # Same source: LinkCheckAns (02 07 01) in FOpts, encrypted (NFCntDown) and in clear.
    enc = bytes([96, 4, 3, 2, 1, 3, 0, 0, 223, 180, 241, 226, 79, 31, 159])
    clear = bytes([96, 4, 3, 2, 1, 3, 0, 0, 2, 7, 1, 1, 119, 112, 30, 163])
    assert verify_data_downlink(enc, S_NWK, 0, conf_fcnt=1)
    assert verify_data_downlink(clear, S_NWK, 0, conf_fcnt=1)
    frame = parse(enc)
    assert isinstance(frame, DataFrame)
    fopts = encrypt_fopts_11(NWK_ENC, frame.fopts, frame.dev_addr, 0, uplink=False)
    assert fopts.hex() == "020701"


def test_10_downlink_verifies_with_its_counter() -> None:
    # A 1.0 downlink verifies with the NwkSKey and its own counter (B0 with Dir = 1);
    # lora-packet cross-checks the block layout in test_lorawan_interop.
    keys = SessionKeys10(nwk_s_key=TWOS, app_s_key=ONES)
    phy = build_data_downlink(
        DataFields(dev_addr=b"\x01\x02\x03\x04", fcnt=7, fport=3, payload=b"x"), keys
    )
    assert verify_data_downlink(phy, TWOS, 7)
    assert not verify_data_downlink(phy, TWOS, 0x1_0007)  # wrong upper half of FCnt
    # The lower 16 bits always come from the frame: a caller's stale low half is harmless.
    assert verify_data_downlink(phy, TWOS, 8)


def test_chirpstack_rejoin_requests() -> None:
    # brocaar/lorawan TestPHYPayloadRejoinRequest02 / ...1, all-zero key.
    type2 = bytes([192, 2, 3, 2, 1, 8, 7, 6, 5, 4, 3, 2, 1, 219, 0, 60, 134, 66, 174])
    type1 = bytes([192, 1, 8, 7, 6, 5, 4, 3, 2, 1, 16, 15, 14, 13, 12, 11, 10, 9, 219, 0])
    type1 += bytes([234, 195, 16, 114])
    assert verify_rejoin_request(type2, bytes(16))
    assert verify_rejoin_request(type1, bytes(16))
    built2 = build_rejoin_request(
        rejoin_type=2,
        net_id=b"\x01\x02\x03",
        dev_eui=bytes(range(1, 9)),
        rj_count=219,
        key=bytes(16),
    )
    assert built2 == type2


def test_chirpstack_join_accept_decrypts_to_known_fields() -> None:
    # brocaar/lorawan TestPHYPayloadJoinAccept: AppKey 00112233..., MIC 43485bbc.
    app_key = bytes.fromhex("00112233445566778899aabbccddeeff")
    clear = decrypt_join_accept(bytes.fromhex("20493eeb51fba2116f810edb3742975142"), app_key)
    # The source prints the fields most-significant byte first; they travel reversed.
    assert clear[1:4][::-1] == bytes([87, 11, 199])  # AppNonce
    assert clear[4:7][::-1] == bytes([34, 17, 1])  # NetID
    assert clear[7:11][::-1] == bytes([2, 3, 25, 128])  # DevAddr
    assert clear[-4:].hex() == "43485bbc"
    assert CmacKey(app_key).cmac(clear[:-4])[:4] == clear[-4:]


def test_chirpstack_example_encodings() -> None:
    # brocaar/lorawan ExampleNewPHYPayload / _joinRequest outputs.
    nwk = bytes(range(1, 17))
    app = bytes(range(16, 0, -1))
    up = build_data_uplink_10(
        DataFields(
            dev_addr=b"\x01\x02\x03\x04",
            fcnt=0,
            fport=10,
            payload=b"\x01\x02\x03\x04",
            confirmed=True,
        ),
        SessionKeys10(nwk_s_key=nwk, app_s_key=app),
    )
    assert list(up) == [128, 4, 3, 2, 1, 0, 0, 0, 10, 226, 100, 212, 247, 181, 106, 14, 117]
    join = build_join_request(
        join_eui=bytes([1] * 8), dev_eui=bytes([2] * 8), dev_nonce=0x0303, key=nwk
    )
    assert list(join) == [0] + [1] * 8 + [2] * 8 + [3, 3, 9, 185, 123, 50]


# --- Tamper: one flipped bit anywhere breaks the MIC ------------------------------------


def flips(phy: bytes) -> list[bytes]:
    out = []
    for index in range(len(phy)):
        for bit in range(8):
            tampered = bytearray(phy)
            tampered[index] ^= 1 << bit
            out.append(bytes(tampered))
    return out


def rejects(check: Callable[[bytes], bool], phy: bytes) -> bool:
    try:
        return not check(phy)
    except LoRaWANFormatError:
        return True


KEYS11 = SessionKeys11(
    f_nwk_s_int_key=F_NWK, s_nwk_s_int_key=S_NWK, nwk_s_enc_key=NWK_ENC, app_s_key=ONES
)
FIELDS = DataFields(
    dev_addr=b"\x26\x01\x1f\x2a",
    fcnt=0x0001_0203,
    fport=9,
    payload=b"temperature=21.5",
    fopts=b"\x03\x07",
    ack=True,
    adr=True,
)

TAMPER_CASES: list[tuple[str, bytes, Callable[[bytes], bool]]] = [
    (
        "up10",
        build_data_uplink_10(FIELDS, SessionKeys10(nwk_s_key=TWOS, app_s_key=ONES)),
        lambda p: verify_data_uplink_10(p, CmacKey(TWOS), 0x0001_0203),
    ),
    (
        "up11",
        build_data_uplink_11(FIELDS, KEYS11, conf_fcnt=5, tx_dr=3, tx_ch=2),
        lambda p: verify_data_uplink_11(
            p, F_NWK, S_NWK, 0x0001_0203, conf_fcnt=5, tx_dr=3, tx_ch=2
        ),
    ),
    (
        "down10",
        build_data_downlink(FIELDS, SessionKeys10(nwk_s_key=TWOS, app_s_key=ONES)),
        lambda p: verify_data_downlink(p, TWOS, 0x0001_0203),
    ),
    (
        "down11",
        build_data_downlink(FIELDS, KEYS11, conf_fcnt=77),
        lambda p: verify_data_downlink(p, S_NWK, 0x0001_0203, conf_fcnt=77),
    ),
    (
        "join",
        build_join_request(join_eui=bytes(8), dev_eui=bytes(range(8)), dev_nonce=9, key=ONES),
        lambda p: verify_join_request(p, ONES),
    ),
    (
        "rejoin0",
        build_rejoin_request(
            rejoin_type=0,
            net_id=b"\x00\x00\x13",
            dev_eui=bytes(range(8)),
            rj_count=1,
            key=S_NWK,
        ),
        lambda p: verify_rejoin_request(p, S_NWK),
    ),
    (
        "rejoin1",
        build_rejoin_request(
            rejoin_type=1, join_eui=bytes(8), dev_eui=bytes(range(8)), rj_count=1, key=ONES
        ),
        lambda p: verify_rejoin_request(p, ONES),
    ),
]


@pytest.mark.parametrize(("name", "phy", "check"), TAMPER_CASES, ids=[c[0] for c in TAMPER_CASES])
def test_every_single_bit_flip_fails_the_check(
    name: str, phy: bytes, check: Callable[[bytes], bool]
) -> None:
    assert check(phy), f"{name}: genuine frame must verify"
    bad = [t.hex() for t in flips(phy) if not rejects(check, t)]
    assert bad == []


def test_11_f_half_check_rejects_flips_outside_the_s_half() -> None:
    phy = build_data_uplink_11(FIELDS, KEYS11, conf_fcnt=5, tx_dr=3, tx_ch=2)
    n = len(phy) - 4
    for tampered in flips(phy[:n]):
        assert rejects(lambda p: verify_data_uplink_11_f(p, F_NWK, 0x0001_0203), tampered + phy[n:])
    # The S half (MIC bytes 0..1) is not covered by this weaker check, by design.
    assert verify_data_uplink_11_f(phy[:n] + bytes([phy[n] ^ 1]) + phy[n + 1 :], F_NWK, 0x0001_0203)


def test_wrong_counter_high_bits_fail() -> None:
    phy = TAMPER_CASES[0][1]
    assert verify_data_uplink_10(phy, TWOS, 0x0001_0203)
    assert not verify_data_uplink_10(phy, TWOS, 0x0000_0203)
    assert not verify_data_uplink_10(phy, TWOS, 0x0002_0203)


# --- Round trips and key derivation ----------------------------------------------------


@settings(max_examples=200)
@given(
    dev_addr=st.binary(min_size=4, max_size=4),
    fcnt=st.integers(0, 0xFFFF_FFFF),
    fport=st.one_of(st.none(), st.integers(0, 255)),
    payload=st.binary(max_size=100),
    fopts=st.binary(max_size=15),
    v11=st.booleans(),
)
def test_built_uplinks_parse_decrypt_and_verify(
    dev_addr: bytes, fcnt: int, fport: int | None, payload: bytes, fopts: bytes, v11: bool
) -> None:
    if fport is None:
        payload = b""
    if fport == 0:
        fopts = b""
    fields = DataFields(dev_addr=dev_addr, fcnt=fcnt, fport=fport, payload=payload, fopts=fopts)
    if v11:
        phy = build_data_uplink_11(fields, KEYS11, tx_dr=1, tx_ch=4)
        assert verify_data_uplink_11(phy, F_NWK, S_NWK, fcnt, tx_dr=1, tx_ch=4)
        assert verify_data_uplink_11_f(phy, prepare_key(F_NWK), fcnt)
        payload_key = NWK_ENC if fport == 0 else ONES
    else:
        phy = build_data_uplink_10(fields, SessionKeys10(nwk_s_key=TWOS, app_s_key=ONES))
        assert verify_data_uplink_10(phy, prepare_key(TWOS), fcnt)
        payload_key = TWOS if fport == 0 else ONES
    frame = parse(phy)
    assert isinstance(frame, DataFrame)
    assert frame.dev_addr == dev_addr and frame.fcnt16 == fcnt & 0xFFFF and frame.fport == fport
    clear = decrypt_frm_payload(payload_key, frame.frm_payload, dev_addr, fcnt, uplink=True)
    assert clear == payload
    if v11:
        assert encrypt_fopts_11(NWK_ENC, frame.fopts, dev_addr, fcnt, uplink=True) == fopts
    else:
        assert frame.fopts == fopts


def test_session_keys_10_drive_a_verifiable_session() -> None:
    app_key = bytes.fromhex("b6b53f4a168a7a88bdf7ea135ce9cfca")
    keys = derive_session_keys_10(app_key, app_nonce=0x123456, net_id=b"\x00\x00\x13", dev_nonce=7)
    assert keys.nwk_s_key != keys.app_s_key
    again = derive_session_keys_10(app_key, app_nonce=0x123456, net_id=b"\x00\x00\x13", dev_nonce=8)
    assert again.nwk_s_key != keys.nwk_s_key
    phy = build_data_uplink_10(DataFields(dev_addr=b"\x01\x02\x03\x04", fcnt=1, fport=1), keys)
    assert verify_data_uplink_10(phy, keys.nwk_s_key, 1)
    assert "b6b5" not in repr(keys) and keys.nwk_s_key.hex() not in repr(keys)


def test_session_keys_11_are_distinct_and_js_int_key_signs_rejoin1() -> None:
    keys = derive_session_keys_11(TWOS, ONES, join_nonce=1, join_eui=bytes(range(8)), dev_nonce=2)
    assert (
        len({keys.f_nwk_s_int_key, keys.s_nwk_s_int_key, keys.nwk_s_enc_key, keys.app_s_key}) == 4
    )
    js_int = derive_js_int_key(TWOS, bytes(range(8)))
    phy = build_rejoin_request(
        rejoin_type=1, join_eui=bytes(8), dev_eui=bytes(range(8)), rj_count=3, key=js_int
    )
    assert verify_rejoin_request(phy, js_int)
    assert not verify_rejoin_request(phy, TWOS)


# --- Misuse gives typed errors ------------------------------------------------------------


def test_bad_keys_and_wrong_frame_kinds() -> None:
    with pytest.raises(LoRaWANKeyError):
        CmacKey(b"short")
    assert "redacted" in repr(CmacKey(ONES))
    join = TAMPER_CASES[4][1]
    with pytest.raises(LoRaWANFormatError) as caught:
        verify_data_uplink_10(join, ONES, 0)
    assert caught.value.reason == "wrong_mtype"
    down = TAMPER_CASES[2][1]
    with pytest.raises(LoRaWANFormatError) as caught:
        verify_data_uplink_10(down, ONES, 0)
    assert caught.value.reason == "wrong_mtype"
    with pytest.raises(LoRaWANFormatError):
        verify_join_request(down, ONES)
    with pytest.raises(LoRaWANFormatError):
        verify_rejoin_request(join, ONES)
    with pytest.raises(LoRaWANFormatError):
        verify_data_uplink_10(b"\x40\x01", ONES, 0)
    with pytest.raises(ValueError):
        verify_data_uplink_10(TAMPER_CASES[0][1], ONES, 1 << 32)
