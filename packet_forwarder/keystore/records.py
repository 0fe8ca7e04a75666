"""Device sessions and root keys as the key store holds them, and their validation.

Field names follow ChirpStack's device activation (``dev_eui``, ``dev_addr``,
``nwk_s_enc_key``, ``s_nwk_s_int_key``, ``f_nwk_s_int_key``, ``app_s_key``, ``f_cnt_up``)
and device keys (``nwk_key``, ``app_key``), so an export from the network server imports
as is; camelCase spellings from ChirpStack's REST/JSON output (``devEui``) are accepted
too. Identifiers are kept as lowercase hex, most-significant byte first, the way
ChirpStack prints them. Key fields are excluded from ``repr`` and validation messages
never echo a key's value.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from packet_forwarder.keystore.errors import RecordError

MAC_VERSIONS: Final = ("1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4", "1.1.0")
_VERSION_ALIASES: Final = {
    **{v: v for v in MAC_VERSIONS},
    **{"lorawan_" + v.replace(".", "_"): v for v in MAC_VERSIONS},
    "1.1": "1.1.0",
}
"""Also ChirpStack's enum names (``LORAWAN_1_0_3``, compared lowercase)."""
KEY_HEX_LEN: Final = 32
FCNT_MAX: Final = 0xFFFF_FFFF
_HEX: Final = frozenset(string.hexdigits)


@dataclass(frozen=True, slots=True)
class DeviceSession:
    """One activated device: what the MIC check needs, plus the last accepted FCntUp.

    ``last_fcnt`` is the last 32-bit FCntUp accepted (None: none yet, so the next frame's
    16-bit counter is taken as is). ChirpStack's ``f_cnt_up`` is the NEXT expected value,
    hence ``last_fcnt = f_cnt_up - 1`` on import. For 1.0.x the three network keys are the
    same NwkSKey. ``app_s_key`` is kept only so the store can be a faithful copy; the
    gateway never needs it.
    """

    dev_eui: str
    dev_addr: str
    mac_version: str
    nwk_s_enc_key: bytes = field(repr=False)
    s_nwk_s_int_key: bytes = field(repr=False)
    f_nwk_s_int_key: bytes = field(repr=False)
    app_s_key: bytes | None = field(default=None, repr=False)
    last_fcnt: int | None = None

    @property
    def is_11(self) -> bool:
        return self.mac_version.startswith("1.1")

    def same_keys(self, other: DeviceSession) -> bool:
        """Same session (address, version and keys), whatever the counters say."""
        return (
            self.dev_addr == other.dev_addr
            and self.mac_version == other.mac_version
            and self.secrets() == other.secrets()
        )

    def secrets(self) -> bytes:
        """The key material packed for encryption: 48 bytes, or 64 with the AppSKey."""
        tail = self.app_s_key or b""
        return self.nwk_s_enc_key + self.s_nwk_s_int_key + self.f_nwk_s_int_key + tail


@dataclass(frozen=True, slots=True)
class RootKey:
    """A device's root keys, held at the edge only where the operator chooses.

    ``nwk_key`` signs join-requests: the NwkKey for 1.1 and, as in ChirpStack, the AppKey
    for 1.0.x devices. ``app_key`` (1.1 only, optional) is never used by the gateway.
    """

    dev_eui: str
    mac_version: str
    nwk_key: bytes = field(repr=False)
    join_eui: str | None = None
    app_key: bytes | None = field(default=None, repr=False)

    def secrets(self) -> bytes:
        return self.nwk_key + (self.app_key or b"")


def session_from_secrets(
    dev_eui: str, dev_addr: str, mac_version: str, blob: bytes, last_fcnt: int | None
) -> DeviceSession:
    """Rebuild a session from the packed form ``DeviceSession.secrets`` produced."""
    if len(blob) not in (48, 64):
        raise RecordError("secrets", f"{len(blob)} bytes of key material (want 48 or 64)")
    return DeviceSession(
        dev_eui=dev_eui,
        dev_addr=dev_addr,
        mac_version=mac_version,
        nwk_s_enc_key=blob[0:16],
        s_nwk_s_int_key=blob[16:32],
        f_nwk_s_int_key=blob[32:48],
        app_s_key=blob[48:64] or None,
        last_fcnt=last_fcnt,
    )


def root_from_secrets(
    dev_eui: str, mac_version: str, join_eui: str | None, blob: bytes
) -> RootKey:
    if len(blob) not in (16, 32):
        raise RecordError("secrets", f"{len(blob)} bytes of key material (want 16 or 32)")
    return RootKey(dev_eui, mac_version, blob[:16], join_eui, blob[16:32] or None)


def normalise_name(name: str) -> str:
    """``dev_eui``, ``devEui`` and ``DevEUI`` all mean the same column."""
    return name.replace("_", "").replace("-", "").strip().lower()


_FIELD_NAMES: Final = {
    normalise_name(n): n
    for n in (
        "dev_eui", "dev_addr", "mac_version", "nwk_s_enc_key", "s_nwk_s_int_key",
        "f_nwk_s_int_key", "app_s_key", "f_cnt_up", "join_eui", "nwk_key", "app_key",
    )
}
_NWK_KEYS: Final = ("nwk_s_enc_key", "s_nwk_s_int_key", "f_nwk_s_int_key")


def canonical_fields(raw: Mapping[str, object]) -> dict[str, object]:
    """Map input names to ours, drop unknown ones (ChirpStack adds ``n_f_cnt_down`` ...)
    and empty values (a blank CSV cell means "not given")."""
    out: dict[str, object] = {}
    for name, value in raw.items():
        known = _FIELD_NAMES.get(normalise_name(str(name)))
        if known is None or value is None or (isinstance(value, str) and not value.strip()):
            continue
        out[known] = value
    return out


def parse_hex(value: object, name: str, size: int, *, secret: bool = False) -> bytes:
    """``size`` bytes from hex text; separators ``:``/``-`` and a ``0x`` prefix allowed."""
    if not isinstance(value, str):
        raise RecordError(name, "must be a hex string")
    text = value.strip().replace(":", "").replace("-", "").removeprefix("0x")
    if len(text) != 2 * size or not _HEX.issuperset(text):
        shown = "" if secret else f", got {value.strip()[:40]!r}"
        raise RecordError(name, f"must be {2 * size} hex digits{shown}")
    return bytes.fromhex(text)


def parse_mac_version(value: object) -> str:
    if not isinstance(value, str):
        raise RecordError("mac_version", f"must be one of {', '.join(MAC_VERSIONS)}")
    text = value.strip().lower()
    version = _VERSION_ALIASES.get(text)
    if version is None:
        raise RecordError("mac_version",
                          f"{text[:20]!r} is not one of {', '.join(MAC_VERSIONS)}")
    return version


def parse_fcnt(value: object) -> int:
    """A 32-bit counter from an int or decimal text (bools are not counters)."""
    if isinstance(value, bool):
        raise RecordError("f_cnt_up", "must be an integer")
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdecimal() and len(text) <= 10):
            raise RecordError("f_cnt_up", f"must be an integer within 0..{FCNT_MAX}")
        value = int(text)
    if not isinstance(value, int) or not 0 <= value <= FCNT_MAX:
        raise RecordError("f_cnt_up", f"must be an integer within 0..{FCNT_MAX}")
    return value


def _network_keys(fields: Mapping[str, object], version: str) -> tuple[bytes, bytes, bytes]:
    """The three network session keys; for 1.0.x any of them may carry the NwkSKey alone."""
    given = {n: parse_hex(fields[n], n, 16, secret=True) for n in _NWK_KEYS if n in fields}
    if version.startswith("1.1"):
        for name in _NWK_KEYS:
            if name not in given:
                raise RecordError(name, "is required for LoRaWAN 1.1")
        return given[_NWK_KEYS[0]], given[_NWK_KEYS[1]], given[_NWK_KEYS[2]]
    if not given:
        raise RecordError("f_nwk_s_int_key", "the NwkSKey is required (any of the three fields)")
    if len(set(given.values())) > 1:
        raise RecordError(
            "nwk_s_enc_key", "for LoRaWAN 1.0.x the three network keys must all be the NwkSKey"
        )
    key = next(iter(given.values()))
    return key, key, key


def session_from_fields(fields: Mapping[str, object]) -> DeviceSession:
    """Validate one device-activation record (names already canonical)."""
    if "dev_eui" not in fields:
        raise RecordError("dev_eui", "is required")
    dev_eui = parse_hex(fields["dev_eui"], "dev_eui", 8).hex()
    if "dev_addr" not in fields:
        raise RecordError("dev_addr", "is required for a session")
    dev_addr = parse_hex(fields["dev_addr"], "dev_addr", 4).hex()
    if "mac_version" not in fields:
        raise RecordError("mac_version", "is required")
    version = parse_mac_version(fields["mac_version"])
    enc, s_int, f_int = _network_keys(fields, version)
    app = fields.get("app_s_key")
    next_fcnt = parse_fcnt(fields["f_cnt_up"]) if "f_cnt_up" in fields else 0
    return DeviceSession(
        dev_eui=dev_eui,
        dev_addr=dev_addr,
        mac_version=version,
        nwk_s_enc_key=enc,
        s_nwk_s_int_key=s_int,
        f_nwk_s_int_key=f_int,
        app_s_key=None if app is None else parse_hex(app, "app_s_key", 16, secret=True),
        last_fcnt=next_fcnt - 1 if next_fcnt > 0 else None,
    )


def root_from_fields(fields: Mapping[str, object]) -> RootKey:
    """Validate one root-key record (``dev_eui``, ``mac_version``, ``nwk_key`` ...)."""
    if "dev_eui" not in fields:
        raise RecordError("dev_eui", "is required")
    if "mac_version" not in fields:
        raise RecordError("mac_version", "is required")
    join_eui = fields.get("join_eui")
    app_key = fields.get("app_key")
    return RootKey(
        dev_eui=parse_hex(fields["dev_eui"], "dev_eui", 8).hex(),
        mac_version=parse_mac_version(fields["mac_version"]),
        nwk_key=parse_hex(fields.get("nwk_key"), "nwk_key", 16, secret=True),
        join_eui=None if join_eui is None else parse_hex(join_eui, "join_eui", 8).hex(),
        app_key=None if app_key is None else parse_hex(app_key, "app_key", 16, secret=True),
    )


def records_from_fields(
    raw: Mapping[str, object],
) -> tuple[DeviceSession | None, RootKey | None]:
    """One import row: a session when it has ``dev_addr``, root keys when it has
    ``nwk_key``, or both. A row with neither is an error."""
    fields = canonical_fields(raw)
    session = session_from_fields(fields) if "dev_addr" in fields else None
    root = root_from_fields(fields) if "nwk_key" in fields else None
    if session is None and root is None:
        raise RecordError("dev_addr", "a row needs dev_addr (a session) or nwk_key (root keys)")
    return session, root
