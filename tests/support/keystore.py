"""Helpers shared by the key store, edge filter, key sync and keys CLI tests (no tests).

A ``Device`` is the device side: it holds keys, builds genuine uplinks with the
``lorawan.encode`` builders, and renders itself as an import row named as ChirpStack
names device-activation fields.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from packet_forwarder.keystore import DeviceSession, KeyStore, RootKey
from packet_forwarder.keystore.records import records_from_fields
from packet_forwarder.lorawan import (
    DataFields,
    SessionKeys10,
    SessionKeys11,
    build_data_uplink_10,
    build_data_uplink_11,
    build_join_request,
)


@dataclass
class Device:
    dev_eui: bytes
    dev_addr: bytes
    mac_version: str
    keys: SessionKeys10 | SessionKeys11
    root_key: bytes
    join_eui: bytes

    @property
    def eui_hex(self) -> str:
        return self.dev_eui.hex()

    @property
    def addr_hex(self) -> str:
        return self.dev_addr.hex()

    def secrets_hex(self) -> list[str]:
        if isinstance(self.keys, SessionKeys10):
            return [self.keys.nwk_s_key.hex(), self.keys.app_s_key.hex()]
        k = self.keys
        return [k.f_nwk_s_int_key.hex(), k.s_nwk_s_int_key.hex(), k.nwk_s_enc_key.hex(),
                k.app_s_key.hex()]

    def all_secret_hex(self) -> list[str]:
        return [*self.secrets_hex(), self.root_key.hex()]

    def row(self, f_cnt_up: int | None = None, *, with_root: bool = False) -> dict[str, object]:
        """An import row as ChirpStack names the fields (1.0.x: NwkSKey in all three)."""
        if isinstance(self.keys, SessionKeys10):
            nwk = self.keys.nwk_s_key.hex()
            enc, s_int, f_int, app = nwk, nwk, nwk, self.keys.app_s_key.hex()
        else:
            k = self.keys
            enc, s_int = k.nwk_s_enc_key.hex(), k.s_nwk_s_int_key.hex()
            f_int, app = k.f_nwk_s_int_key.hex(), k.app_s_key.hex()
        row: dict[str, object] = {
            "dev_eui": self.eui_hex, "dev_addr": self.addr_hex, "mac_version": self.mac_version,
            "nwk_s_enc_key": enc, "s_nwk_s_int_key": s_int, "f_nwk_s_int_key": f_int,
            "app_s_key": app,
        }
        if f_cnt_up is not None:
            row["f_cnt_up"] = f_cnt_up
        if with_root:
            row["nwk_key"] = self.root_key.hex()
            row["join_eui"] = self.join_eui.hex()
        return row

    def session(self, f_cnt_up: int | None = None) -> DeviceSession:
        session, _ = records_from_fields(self.row(f_cnt_up))
        assert session is not None
        return session

    def root(self) -> RootKey:
        _, root = records_from_fields(self.row(with_root=True))
        assert root is not None
        return root

    def uplink(self, fcnt: int, payload: bytes = b"\x01\x02\x03", fport: int = 1) -> bytes:
        fields = DataFields(dev_addr=self.dev_addr, fcnt=fcnt, fport=fport, payload=payload)
        if isinstance(self.keys, SessionKeys10):
            return build_data_uplink_10(fields, self.keys)
        return build_data_uplink_11(fields, self.keys, tx_dr=5, tx_ch=2)

    def join_request(self, dev_nonce: int = 1, key: bytes | None = None) -> bytes:
        return build_join_request(join_eui=self.join_eui, dev_eui=self.dev_eui,
                                  dev_nonce=dev_nonce, key=key or self.root_key)


def make_device(
    rng: random.Random, mac_version: str = "1.0.3", dev_addr: bytes | None = None
) -> Device:
    if mac_version.startswith("1.1"):
        keys: SessionKeys10 | SessionKeys11 = SessionKeys11(
            rng.randbytes(16), rng.randbytes(16), rng.randbytes(16), rng.randbytes(16))
    else:
        keys = SessionKeys10(rng.randbytes(16), rng.randbytes(16))
    addr = dev_addr if dev_addr is not None else bytes([0x26]) + rng.randbytes(3)
    return Device(rng.randbytes(8), addr, mac_version, keys, rng.randbytes(16), rng.randbytes(8))


def open_store(tmp_path: Path, *, track_shutdown: bool = False) -> KeyStore:
    return KeyStore(tmp_path / "keys.sqlite", tmp_path / "master.key",
                    track_shutdown=track_shutdown)
