"""DevAddr / JoinEUI prefix filters: which server gets which uplink."""

from __future__ import annotations

import pytest

from packet_forwarder.routing import Prefix, PrefixError, RouteFilter


def data_up(dev_addr: int, confirmed: bool = False) -> bytes:
    return bytes(((4 if confirmed else 2) << 5,)) + dev_addr.to_bytes(4, "little") + bytes(8)


def join(join_eui: int) -> bytes:
    return b"\x00" + join_eui.to_bytes(8, "little") + bytes(8) + b"\x01\x02" + bytes(4)


SYNDICATE = RouteFilter.parse(["26011000/20"], ["70b3d57ed0000000/40"])


@pytest.mark.parametrize("phy, expected", [
    (data_up(0x26011FFF), True),
    (data_up(0x26010FFF), False),
    (data_up(0x26011000, confirmed=True), True),
    (join(0x70B3D57ED0001234), True),
    (join(0x70B3D57ED1001234), False),
    (b"\xc1" + b"x" * 20, True),  # proprietary: no field to filter on
    (b"\xc0" + bytes(4), True),  # rejoin type 0: no JoinEUI
    (b"\x40\x01", True),  # too short to read a DevAddr
    (b"", True),
])
def test_filter(phy: bytes, expected: bool) -> None:
    assert SYNDICATE.accepts(phy) is expected


def test_no_prefixes_accept_everything_and_one_kind_does_not_restrict_the_other() -> None:
    assert RouteFilter().accepts(data_up(1)) and RouteFilter().accepts(join(1))
    only_addr = RouteFilter.parse(["26000000/8"], [])
    assert not only_addr.accepts(data_up(0x27000000)) and only_addr.accepts(join(5))


def test_rejoin_type_1_uses_its_join_eui() -> None:
    phy = b"\xc0\x01" + (0x70B3D57ED0000001).to_bytes(8, "little") + bytes(12)
    assert SYNDICATE.accepts(phy)
    assert not SYNDICATE.accepts(b"\xc0\x01" + (1).to_bytes(8, "little") + bytes(12))


@pytest.mark.parametrize("text", ["2601100/20", "26011000/33", "zz011000/8", "26011000/x"])
def test_bad_prefixes_are_refused(text: str) -> None:
    with pytest.raises(PrefixError):
        Prefix.parse(text, 32)


def test_prefix_without_length_is_exact_and_prints_back() -> None:
    p = Prefix.parse("26011000", 32)
    assert p.matches(0x26011000) and not p.matches(0x26011001)
    assert str(Prefix.parse("26011000/20", 32)) == "26011000/20"

