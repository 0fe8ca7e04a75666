"""GPS receiver messages: NMEA RMC/GGA and u-blox UBX NAV-TIMEGPS, split out of a byte stream.

The receiver talks 9600 8N1 and mixes NMEA text lines with binary UBX frames;
:class:`GpsStreamParser` takes whatever bytes arrived, returns the complete and
valid messages, keeps partial ones for the next call and skips garbage. A bad
checksum or an unparsable sentence is counted and dropped, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

UBX_SYNC = b"\xb5\x62"
UBX_NAV, UBX_NAV_TIMEGPS = 0x01, 0x20
UBX_CFG, UBX_CFG_MSG = 0x06, 0x01
NAV_TIMEGPS_LEN = 16
MAX_BUFFER = 4096
MAX_NMEA = 120
SECONDS_PER_WEEK = 604_800


@dataclass(frozen=True, slots=True)
class Rmc:
    """Recommended minimum data: UTC time and date, position, validity."""

    utc: datetime | None
    valid: bool
    latitude: float | None
    longitude: float | None


@dataclass(frozen=True, slots=True)
class Gga:
    """Fix data: quality (0 = no fix), satellites used, position and altitude."""

    fix_quality: int
    satellites: int
    latitude: float | None
    longitude: float | None
    altitude_m: float | None


@dataclass(frozen=True, slots=True)
class NavTimeGps:
    """UBX NAV-TIMEGPS: GPS time of the navigation epoch (the last PPS edge)."""

    itow_ms: int
    ftow_ns: int
    week: int
    leap_s: int
    valid: bool
    """Time of week and week number both valid."""

    @property
    def gps_ns(self) -> int:
        """Nanoseconds since the GPS epoch (6 January 1980), leap seconds not counted."""
        return (self.week * SECONDS_PER_WEEK * 1000 + self.itow_ms) * 1_000_000 + self.ftow_ns


GpsMessage = Rmc | Gga | NavTimeGps


def ubx_checksum(body: bytes) -> bytes:
    """8-bit Fletcher over class, id, length and payload."""
    a = b = 0
    for byte in body:
        a = (a + byte) & 0xFF
        b = (b + a) & 0xFF
    return bytes((a, b))


def ubx_frame(cls: int, msg_id: int, payload: bytes) -> bytes:
    body = bytes((cls, msg_id)) + len(payload).to_bytes(2, "little") + payload
    return UBX_SYNC + body + ubx_checksum(body)


def enable_nav_timegps() -> bytes:
    """CFG-MSG asking for NAV-TIMEGPS once per navigation solution (the receiver needs it)."""
    return ubx_frame(UBX_CFG, UBX_CFG_MSG, bytes((UBX_NAV, UBX_NAV_TIMEGPS, 1)))


def nmea_checksum(body: str) -> str:
    value = 0
    for char in body:
        value ^= ord(char)
    return f"{value:02X}"


def _coordinate(value: str, hemisphere: str, degree_digits: int) -> float | None:
    if not value or hemisphere not in "NSEW" or not hemisphere:
        return None
    degrees = int(value[:degree_digits])
    minutes = float(value[degree_digits:])
    sign = -1.0 if hemisphere in "SW" else 1.0
    return sign * (degrees + minutes / 60.0)


def _utc(time_text: str, date_text: str) -> datetime | None:
    if len(time_text) < 6 or len(date_text) != 6:
        return None
    micro = round(float("0" + time_text[6:]) * 1e6) if len(time_text) > 6 else 0
    return datetime(2000 + int(date_text[4:6]), int(date_text[2:4]), int(date_text[0:2]),
                    int(time_text[0:2]), int(time_text[2:4]), int(time_text[4:6]), micro,
                    tzinfo=UTC)


def parse_nmea(line: str) -> Rmc | Gga | None:
    """An RMC or GGA sentence (any talker); None for other sentences. Raises ValueError."""
    if not line.startswith("$") or "*" not in line:
        raise ValueError("not an NMEA sentence")
    body, _, checksum = line[1:].partition("*")
    if nmea_checksum(body) != checksum.strip().upper():
        raise ValueError("NMEA checksum mismatch")
    fields = body.split(",")
    kind = fields[0][2:]
    if kind == "RMC" and len(fields) >= 10:
        return Rmc(utc=_utc(fields[1], fields[9]), valid=fields[2] == "A",
                   latitude=_coordinate(fields[3], fields[4], 2),
                   longitude=_coordinate(fields[5], fields[6], 3))
    if kind == "GGA" and len(fields) >= 10:
        return Gga(fix_quality=int(fields[6] or 0), satellites=int(fields[7] or 0),
                   latitude=_coordinate(fields[2], fields[3], 2),
                   longitude=_coordinate(fields[4], fields[5], 3),
                   altitude_m=float(fields[9]) if fields[9] else None)
    return None


def parse_nav_timegps(payload: bytes) -> NavTimeGps:
    if len(payload) != NAV_TIMEGPS_LEN:
        raise ValueError(f"NAV-TIMEGPS payload of {len(payload)} bytes")
    return NavTimeGps(
        itow_ms=int.from_bytes(payload[0:4], "little"),
        ftow_ns=int.from_bytes(payload[4:8], "little", signed=True),
        week=int.from_bytes(payload[8:10], "little", signed=True),
        leap_s=int.from_bytes(payload[10:11], "little", signed=True),
        valid=payload[11] & 0x03 == 0x03,
    )


@dataclass(slots=True)
class GpsStreamParser:
    """Feed bytes in, get messages out; ``errors`` counts what was dropped and why."""

    errors: dict[str, int] = field(default_factory=dict)
    _buf: bytearray = field(default_factory=bytearray)

    def _drop(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1

    def feed(self, data: bytes) -> list[GpsMessage]:
        self._buf += data
        out: list[GpsMessage] = []
        while self._buf:
            starts = [i for i in (self._buf.find(b"$"), self._buf.find(UBX_SYNC)) if i >= 0]
            if not starts:
                self._buf.clear()
                break
            del self._buf[:min(starts)]
            done = self._take_ubx(out) if self._buf[:2] == UBX_SYNC else self._take_nmea(out)
            if not done:
                break
        if len(self._buf) > MAX_BUFFER:
            self._drop("overflow")
            self._buf.clear()
        return out

    def _take_nmea(self, out: list[GpsMessage]) -> bool:
        end = self._buf.find(b"\n")
        if end < 0:
            if len(self._buf) > MAX_NMEA:
                self._drop("nmea_too_long")
                del self._buf[:1]
                return True
            return False
        raw = bytes(self._buf[:end]).rstrip(b"\r")
        del self._buf[:end + 1]
        try:
            message = parse_nmea(raw.decode("ascii"))
        except (ValueError, UnicodeDecodeError, IndexError):
            self._drop("nmea_invalid")
            return True
        if message is not None:
            out.append(message)
        return True

    def _take_ubx(self, out: list[GpsMessage]) -> bool:
        if len(self._buf) < 6:
            return False
        size = 6 + int.from_bytes(self._buf[4:6], "little") + 2
        if size > MAX_BUFFER:
            self._drop("ubx_invalid")
            del self._buf[:2]
            return True
        if len(self._buf) < size:
            return False
        frame = bytes(self._buf[:size])
        if ubx_checksum(frame[2:-2]) != frame[-2:]:
            self._drop("ubx_checksum")
            del self._buf[:2]  # resynchronise on the next sync pattern
            return True
        del self._buf[:size]
        if frame[2] == UBX_NAV and frame[3] == UBX_NAV_TIMEGPS:
            try:
                out.append(parse_nav_timegps(frame[6:-2]))
            except ValueError:
                self._drop("ubx_invalid")
        return True
