"""Which network servers an uplink goes to: DevAddr and JoinEUI prefix filters.

A shared gateway serves several networks; each server names the device address
ranges (``dev_addr_prefixes``, e.g. ``"26011000/20"``) and join servers
(``join_eui_prefixes``, e.g. ``"70b3d57ed0000000/40"``) it wants. Empty means all.
Frames that carry neither field (proprietary frames, rejoin types 0 and 2, frames
too short to parse) go to every server: dropping them here would be a decision
only the network server can make. Field offsets are LoRaWAN 1.0.4 / 1.1 §4
(MHDR, FHDR) and §6.2.2 / §6.2.4 (join and rejoin requests); DevAddr and JoinEUI
travel little-endian.
"""

from __future__ import annotations

from dataclasses import dataclass

_JOIN_REQUEST, _UNCONFIRMED_UP, _CONFIRMED_UP, _REJOIN = 0, 2, 4, 6


class PrefixError(ValueError):
    """A prefix that is not ``HEX/BITS`` of the right width."""


@dataclass(frozen=True, slots=True)
class Prefix:
    value: int
    bits: int
    width: int

    @classmethod
    def parse(cls, text: str, width: int) -> Prefix:
        """``"26011000/20"`` (32-bit DevAddr) or ``"70b3d57ed0000000/40"`` (64-bit EUI)."""
        digits, _, bits_text = text.partition("/")
        try:
            value = int(digits, 16)
            bits = int(bits_text) if bits_text else width
        except ValueError:
            raise PrefixError(f"{text!r} is not HEX/BITS") from None
        if len(digits) != width // 4 or not 0 <= bits <= width:
            raise PrefixError(f"{text!r}: need {width // 4} hex digits and 0..{width} bits")
        return cls(value, bits, width)

    def matches(self, value: int) -> bool:
        shift = self.width - self.bits
        return (value >> shift) == (self.value >> shift)

    def __str__(self) -> str:
        return f"{self.value:0{self.width // 4}x}/{self.bits}"


@dataclass(frozen=True, slots=True)
class RouteFilter:
    dev_addr_prefixes: tuple[Prefix, ...] = ()
    join_eui_prefixes: tuple[Prefix, ...] = ()

    @classmethod
    def parse(cls, dev_addr: list[str] | tuple[str, ...],
              join_eui: list[str] | tuple[str, ...]) -> RouteFilter:
        return cls(tuple(Prefix.parse(p, 32) for p in dev_addr),
                   tuple(Prefix.parse(p, 64) for p in join_eui))

    def accepts(self, phy_payload: bytes) -> bool:
        """True when this server should get the frame (see the module docstring)."""
        kind = _key(phy_payload)
        if kind is None:
            return True
        field, value = kind
        prefixes = self.dev_addr_prefixes if field == "dev_addr" else self.join_eui_prefixes
        return not prefixes or any(p.matches(value) for p in prefixes)


def _key(phy: bytes) -> tuple[str, int] | None:
    if not phy:
        return None
    mtype = phy[0] >> 5
    if mtype in (_UNCONFIRMED_UP, _CONFIRMED_UP) and len(phy) >= 5:
        return "dev_addr", int.from_bytes(phy[1:5], "little")
    if mtype == _JOIN_REQUEST and len(phy) >= 9:
        return "join_eui", int.from_bytes(phy[1:9], "little")
    if mtype == _REJOIN and len(phy) >= 10 and phy[1] == 1:
        return "join_eui", int.from_bytes(phy[2:10], "little")
    return None
