"""Parsing of every LoRaWAN message type, every rejection reason, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packet_forwarder.lorawan import (
    FORMAT_REASONS,
    DataFrame,
    JoinAccept,
    JoinRequest,
    LoRaWANFormatError,
    MType,
    Proprietary,
    RejoinRequest,
    device_key,
    parse,
)

# Frame from the lora-packet README (github.com/anthonykirby/lora-packet): an unconfirmed
# uplink from DevAddr 49BE7DF1, FCnt 2, FPort 1, encrypted "test".
README_UPLINK = bytes.fromhex("40F17DBE4900020001954378762B11FF0D")


def data_frame(
    mhdr: int = 0x40, fctrl: int = 0x00, fopts: bytes = b"", tail: bytes = b"\x01abc"
) -> bytes:
    """DevAddr 26011F2A (sent reversed), FCnt 0x0102, then FOpts, FPort/payload, MIC."""
    return (
        bytes([mhdr])
        + bytes.fromhex("2a1f0126")
        + bytes([fctrl | len(fopts)])
        + b"\x02\x01"
        + fopts
        + tail
        + b"MIC!"
    )


def reason_of(phy: object) -> str:
    with pytest.raises(LoRaWANFormatError) as caught:
        parse(phy)  # type: ignore[arg-type]
    return caught.value.reason


def test_readme_uplink_fields() -> None:
    frame = parse(README_UPLINK)
    assert isinstance(frame, DataFrame)
    assert frame.mhdr.mtype is MType.UNCONFIRMED_DATA_UP
    assert frame.uplink and not frame.confirmed
    assert frame.dev_addr.hex() == "49be7df1"
    assert frame.fcnt16 == 2
    assert frame.fport == 1
    assert frame.frm_payload.hex() == "95437876"
    assert frame.mic.hex() == "2b11ff0d"
    assert frame.fopts == b""


def test_uplink_fctrl_bits_and_fopts() -> None:
    frame = parse(data_frame(mhdr=0x80, fctrl=0xF0, fopts=b"\x02\x03"))
    assert isinstance(frame, DataFrame)
    assert frame.confirmed and frame.uplink
    c = frame.fctrl
    assert (c.adr, c.adr_ack_req, c.ack, c.class_b, c.f_pending) == (True, True, True, True, False)
    assert c.fopts_len == 2
    assert frame.fopts == b"\x02\x03"
    assert frame.fcnt16 == 0x0102
    assert frame.fport == 1 and frame.frm_payload == b"abc"
    assert frame.device_key == "26011f2a"


def test_downlink_bit4_is_fpending_and_bit6_is_rfu() -> None:
    frame = parse(data_frame(mhdr=0xA0, fctrl=0x50))
    assert isinstance(frame, DataFrame)
    assert frame.mhdr.mtype is MType.CONFIRMED_DATA_DOWN and not frame.uplink
    assert frame.fctrl.f_pending and not frame.fctrl.class_b
    assert not frame.fctrl.adr_ack_req


def test_data_frame_without_port_or_payload() -> None:
    frame = parse(data_frame(fopts=b"\x02", tail=b""))
    assert isinstance(frame, DataFrame)
    assert frame.fport is None and frame.frm_payload == b""
    assert frame.fopts == b"\x02"


def test_port_without_payload_is_accepted() -> None:
    frame = parse(data_frame(tail=b"\x07"))
    assert isinstance(frame, DataFrame)
    assert frame.fport == 7 and frame.frm_payload == b""


def test_fport0_with_mac_commands_in_payload() -> None:
    frame = parse(data_frame(tail=b"\x00\x02"))
    assert isinstance(frame, DataFrame)
    assert frame.fport == 0 and frame.frm_payload == b"\x02"


def test_join_request_fields() -> None:
    # From the brocaar/lorawan unit tests (base64 "AAQDAgEEAwIBBQQDAgUEAwItEGqZDhI=").
    phy = bytes.fromhex("00040302010403020105040302050403022d106a990e12")
    frame = parse(phy)
    assert isinstance(frame, JoinRequest)
    assert frame.join_eui.hex() == "0102030401020304"
    assert frame.dev_eui.hex() == "0203040502030405"
    assert frame.dev_nonce == 4141
    assert frame.mic.hex() == "6a990e12"
    assert frame.device_key == "deveui:0203040502030405"


def test_rejoin_type_2_and_type_1_fields() -> None:
    # Layouts from the brocaar/lorawan rejoin-request tests.
    type2 = parse(bytes([192, 2, 3, 2, 1, 8, 7, 6, 5, 4, 3, 2, 1, 219, 0, 60, 134, 66, 174]))
    assert isinstance(type2, RejoinRequest)
    assert type2.rejoin_type == 2 and type2.net_id is not None and type2.join_eui is None
    assert type2.net_id.hex() == "010203"
    assert type2.dev_eui.hex() == "0102030405060708"
    assert type2.rj_count == 219
    type1 = parse(
        bytes([192, 1, 8, 7, 6, 5, 4, 3, 2, 1, 16, 15, 14, 13, 12, 11, 10, 9, 219, 0])
        + bytes([234, 195, 16, 114])
    )
    assert isinstance(type1, RejoinRequest)
    assert type1.rejoin_type == 1 and type1.net_id is None and type1.join_eui is not None
    assert type1.join_eui.hex() == "0102030405060708"
    assert type1.dev_eui.hex() == "090a0b0c0d0e0f10"
    assert type1.device_key == "deveui:090a0b0c0d0e0f10"


@pytest.mark.parametrize("size", [17, 33])
def test_join_accept_is_opaque(size: int) -> None:
    frame = parse(b"\x20" + bytes(range(size - 1)))
    assert isinstance(frame, JoinAccept)
    assert frame.encrypted == bytes(range(size - 1))
    assert frame.device_key == ""


def test_proprietary_keeps_everything_after_mhdr() -> None:
    frame = parse(b"\xe0vendor")
    assert isinstance(frame, Proprietary)
    assert frame.payload == b"vendor" and frame.device_key == ""


def test_mhdr_rfu_bits_are_kept_not_enforced() -> None:
    frame = parse(bytes([0x40 | 0x1C]) + README_UPLINK[1:])
    assert frame.mhdr.rfu == 7


def test_bytes_like_input_is_accepted() -> None:
    assert parse(bytearray(README_UPLINK)) == parse(README_UPLINK)
    assert parse(memoryview(README_UPLINK)) == parse(README_UPLINK)


@pytest.mark.parametrize(
    ("phy", "reason"),
    [
        ("not bytes", "not_bytes"),
        (None, "not_bytes"),
        (b"", "empty"),
        (b"\x40" + bytes(255), "too_long"),
        (b"\x41" + README_UPLINK[1:], "bad_major"),
        (b"\x43" + README_UPLINK[1:], "bad_major"),
        (README_UPLINK[:11], "too_short"),
        (b"\x40\x01\x02\x03\x04\x05\x00\x00MIC!", "fopts_overrun"),
        (data_frame(fopts=b"\x02\x03", tail=b"\x00\x02"), "fopts_with_fport0"),
        (b"\x00" + bytes(21), "bad_length"),
        (b"\x00" + bytes(23), "bad_length"),
        (b"\x20" + bytes(20), "bad_length"),
        (b"\xc0", "too_short"),
        (b"\xc0\x03" + bytes(17), "rfu_rejoin_type"),
        (b"\xc0\x00" + bytes(18), "bad_length"),
        (b"\xc0\x01" + bytes(17), "bad_length"),
    ],
)
def test_malformed_frames_raise_the_typed_error(phy: object, reason: str) -> None:
    assert reason_of(phy) == reason
    assert reason in FORMAT_REASONS


def test_fopts_len_exactly_filling_the_frame_is_fine() -> None:
    frame = parse(b"\x40\x01\x02\x03\x04\x03\x00\x00" + b"abc" + b"MIC!")
    assert isinstance(frame, DataFrame)
    assert frame.fopts == b"abc" and frame.fport is None


def test_error_carries_reason_and_detail() -> None:
    with pytest.raises(LoRaWANFormatError) as caught:
        parse(b"\x20" + bytes(3))
    assert caught.value.reason == "bad_length"
    assert "4 bytes" in caught.value.detail


def test_device_key_for_each_kind() -> None:
    assert device_key(data_frame()) == "26011f2a"
    assert device_key(README_UPLINK) == "49be7df1"
    join = bytes.fromhex("00040302010403020105040302050403022d106a990e12")
    assert device_key(join) == "deveui:0203040502030405"
    assert device_key(b"\xe0abc") == ""
    assert device_key(b"\x20" + bytes(16)) == ""
    assert device_key(b"") == ""
    assert device_key(README_UPLINK[:5]) == ""
    assert device_key(None) == ""  # type: ignore[arg-type]


@given(st.binary(max_size=300))
def test_parser_never_raises_anything_but_the_typed_error(phy: bytes) -> None:
    try:
        frame = parse(phy)
    except LoRaWANFormatError as err:
        assert err.reason in FORMAT_REASONS
        assert device_key(phy) == ""
    else:
        assert frame.raw == phy
        assert device_key(phy) == frame.device_key


@given(
    mhdr=st.sampled_from([0x40, 0x60, 0x80, 0xA0]),
    fctrl=st.integers(0, 0xFF),
    body=st.binary(max_size=40),
)
def test_data_frames_reassemble_to_their_bytes(mhdr: int, fctrl: int, body: bytes) -> None:
    phy = bytes([mhdr]) + b"\x01\x02\x03\x04" + bytes([fctrl]) + b"\x05\x06" + body
    try:
        frame = parse(phy)
    except LoRaWANFormatError:
        return
    assert isinstance(frame, DataFrame)
    port = b"" if frame.fport is None else bytes([frame.fport])
    rebuilt = (
        phy[:1]
        + frame.dev_addr[::-1]
        + bytes([frame.fctrl.byte])
        + frame.fcnt16.to_bytes(2, "little")
        + frame.fopts
        + port
        + frame.frm_payload
        + frame.mic
    )
    assert rebuilt == phy
    assert len(frame.fopts) == frame.fctrl.fopts_len
    assert not (frame.fport == 0 and frame.fopts)
