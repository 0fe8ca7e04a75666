"""The SX1302's AGC and ARB firmware images: found in a directory, size- and hash-checked.

The images are Semtech's (Revised BSD, distributed with their reference driver)
and are never part of this repository: the gateway image installs them as files,
and the driver refuses to load anything whose SHA-256 is not on the allow-list.
A missing file is one clear error that names the file and what to install.

The default allow-list holds the SHA-256 of the images in Semtech's
``sx1302_hal`` release 2.1.0 (commit 4b42025d), computed from that release's
``agc_fw_sx1250.var`` and ``arb_fw.var`` arrays. Another release, or synthetic
images in tests, need their own list passed in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from hal.errors import FirmwareError
from hal.registers import MCU_FW_SIZE

DEFAULT_FIRMWARE_DIR = Path("/var/lib/lora-gateway/firmware")
"""Where ``lora-gateway firmware install`` writes them when the configuration names no folder."""
AGC_SX1250_FILE = "sx1302_agc_sx1250.bin"
ARB_FILE = "sx1302_arb.bin"
SX1261_PATCH_FILE = "sx1261_pram.bin"
"""The SX1261 LBT/spectral-scan patch: the 386 words of ``pram[]`` in sx1302_hal 2.1.0's
libloragw/src/sx1261_pram.var, each stored big-endian (the order the reference writes
them to the chip, ``sx1261_load_pram``), 1,544 bytes."""
SX1261_PATCH_MAX = 4096
AGC_VERSION_SX1250 = 10
ARB_VERSION = 2
INSTALL_HINT = ("install the firmware with `sudo lora-gateway firmware install` "
                "(Semtech sx1302_hal 2.1.0 AGC/ARB images)")

KNOWN_SHA256: Mapping[str, frozenset[str]] = MappingProxyType({
    AGC_SX1250_FILE: frozenset({
        "8f612e878b946b8c7cc59a5fc27ad33bb18ab92ad6e291d873f5d6bb7daae0d4",  # sx1302_hal 2.1.0
    }),
    ARB_FILE: frozenset({
        "a6f542395e29cd258917f5948d1067ab18e3cf08ce5ee250e2caa08539f80fd0",  # sx1302_hal 2.1.0
    }),
    SX1261_PATCH_FILE: frozenset({
        "2f1a728415a38298d07b77ebb1b54c9b9cdfe21fd830bf842d79d73f23b99074",  # sx1302_hal 2.1.0
    }),
})


@dataclass(frozen=True, slots=True)
class FirmwareImages:
    """The two images the bring-up loads, and the versions their handshakes must report."""

    agc: bytes
    arb: bytes
    agc_version: int = AGC_VERSION_SX1250
    arb_version: int = ARB_VERSION

    def __post_init__(self) -> None:
        for label, image in (("AGC", self.agc), ("ARB", self.arb)):
            if len(image) != MCU_FW_SIZE:
                raise FirmwareError(f"{label} image is {len(image)} bytes, expected {MCU_FW_SIZE}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_image(directory: Path, name: str, allowed: frozenset[str],
                size: int | None = MCU_FW_SIZE) -> bytes:
    path = directory / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FirmwareError(f"firmware file {path} is missing — {INSTALL_HINT}") from None
    except OSError as exc:
        raise FirmwareError(f"cannot read firmware file {path}: {exc}") from exc
    if size is not None and len(data) != size:
        raise FirmwareError(f"firmware file {path} is {len(data)} bytes, expected {size} "
                            f"— {INSTALL_HINT}")
    digest = sha256_hex(data)
    if digest not in allowed:
        raise FirmwareError(f"firmware file {path} has SHA-256 {digest}, which is not on the "
                            f"allow-list ({', '.join(sorted(allowed)) or 'empty'}) — "
                            f"{INSTALL_HINT}")
    return data


def load_firmware(directory: Path,
                  allowed_sha256: Mapping[str, frozenset[str]] = KNOWN_SHA256) -> FirmwareImages:
    """Both images from ``directory``; raises :class:`FirmwareError` naming what is wrong."""
    if not directory.is_dir():
        raise FirmwareError(f"firmware directory {directory} does not exist — {INSTALL_HINT}")
    return FirmwareImages(
        agc=_read_image(directory, AGC_SX1250_FILE, allowed_sha256.get(AGC_SX1250_FILE,
                                                                       frozenset())),
        arb=_read_image(directory, ARB_FILE, allowed_sha256.get(ARB_FILE, frozenset())),
    )


def load_sx1261_patch(directory: Path,
                      allowed_sha256: Mapping[str, frozenset[str]] = KNOWN_SHA256) -> bytes:
    """The SX1261 patch from ``directory``, hash-checked like the AGC/ARB images."""
    if not directory.is_dir():
        raise FirmwareError(f"firmware directory {directory} does not exist — {INSTALL_HINT}")
    data = _read_image(directory, SX1261_PATCH_FILE,
                       allowed_sha256.get(SX1261_PATCH_FILE, frozenset()), size=None)
    if not data or len(data) % 4 or len(data) > SX1261_PATCH_MAX:
        raise FirmwareError(f"firmware file {directory / SX1261_PATCH_FILE} is {len(data)} "
                            f"bytes: not whole 32-bit words up to {SX1261_PATCH_MAX}")
    return data
