"""``lora-gateway firmware install``: Semtech's AGC/ARB images from the sx1302_hal release.

The project never ships Semtech's firmware. The installer (or the image recipe,
at build time) runs this command once: it reads the sx1302_hal release archive
(a local file, or the public release archive downloaded over HTTPS), takes the
C arrays out of the ``.var`` source files, checks each image's SHA-256 against
the allow-list in :mod:`hal.firmware` and only then writes the binary files
into the configured ``concentrator.firmware_dir``. Nothing is written unless
every required image passed, so a tampered archive leaves the folder as it was.

Facts relied on (Lora-net/sx1302_hal, tag V2.1.0): the images are
``libloragw/src/agc_fw_sx1250.var`` (``uint8_t agc_firmware_sx1250[8192]``),
``libloragw/src/arb_fw.var`` (``uint8_t arb_firmware[8192]``) and the SX1261
patch ``libloragw/src/sx1261_pram.var`` (``uint32_t pram[]``, 386 words).
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hal import firmware as hal_firmware
from hal.firmware import DEFAULT_FIRMWARE_DIR

RELEASE_URL = "https://github.com/Lora-net/sx1302_hal/archive/refs/tags/V2.1.0.tar.gz"
__all__ = ["DEFAULT_FIRMWARE_DIR", "RELEASE_URL", "FirmwareInstallError", "install_firmware"]
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024
"""The 2.1.0 archive is ~2 MB; anything far larger is not the release."""
DOWNLOAD_TIMEOUT_S = 60.0

SX1261_PRAM_FILE = hal_firmware.SX1261_PATCH_FILE
"""The SX1261 patch (listen-before-talk, spectral scan): 386 big-endian 32-bit words."""


class FirmwareInstallError(Exception):
    """The archive cannot give allow-listed images; the message names what and why."""


@dataclass(frozen=True, slots=True)
class ImageSource:
    """One image: the ``.var`` file holding it, the array's name, and the file it becomes."""

    var_file: str
    array: str
    target: str
    word_bytes: int
    required: bool


SOURCES: tuple[ImageSource, ...] = (
    ImageSource("agc_fw_sx1250.var", "agc_firmware_sx1250", hal_firmware.AGC_SX1250_FILE, 1, True),
    ImageSource("arb_fw.var", "arb_firmware", hal_firmware.ARB_FILE, 1, True),
    ImageSource("sx1261_pram.var", "pram", SX1261_PRAM_FILE, 4, False),
)


@dataclass(frozen=True, slots=True)
class InstallResult:
    written: tuple[Path, ...]
    skipped: tuple[str, ...]
    """Optional images not installed, each with the reason."""


_ARRAY = re.compile(r"\b(?P<name>\w+)\s*\[[^\]]*\]\s*=\s*\{(?P<body>[^}]*)\}", re.S)
_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


def parse_var_array(text: str, array: str, word_bytes: int) -> bytes:
    """The named C array of integer literals as bytes (multi-byte words big-endian)."""
    cleaned = _COMMENTS.sub(" ", text)
    for match in _ARRAY.finditer(cleaned):
        if match.group("name") != array:
            continue
        out = bytearray()
        for token in (t.strip() for t in match.group("body").split(",")):
            if not token:
                continue
            try:
                value = int(token.rstrip("uUlL"), 0)
            except ValueError:
                raise FirmwareInstallError(
                    f"array {array}: {token!r} is not an integer literal") from None
            if not 0 <= value < 1 << (8 * word_bytes):
                raise FirmwareInstallError(f"array {array}: {token} does not fit "
                                           f"{word_bytes} byte(s)")
            out += value.to_bytes(word_bytes, "big")
        return bytes(out)
    raise FirmwareInstallError(f"no array named {array} in the file")


LICENSE_FILE = "LICENSE.sx1302_hal.txt"
"""Semtech's Revised BSD licence text, kept beside the images it covers (redistribution
in an SD image must carry it)."""


def _wanted(name: str) -> bool:
    """The ``.var`` sources and the release's top-level licence text."""
    return name.endswith(".var") or (name.count("/") <= 1 and name.endswith("/LICENSE.TXT"))


def _archive_members(data: bytes) -> dict[str, bytes]:
    """Basename → content of every ``.var`` file (and the licence) in a .tar.gz/.zip."""
    import tarfile  # imported here: every command imports this module, few unpack
    import zipfile

    found: dict[str, bytes] = {}
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for name in archive.namelist():
                if _wanted(name):
                    found.setdefault(name.rsplit("/", 1)[-1], archive.read(name))
        return found
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            for member in archive:
                if member.isfile() and _wanted(member.name):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        found.setdefault(member.name.rsplit("/", 1)[-1], handle.read())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise FirmwareInstallError(f"not a readable .tar.gz or .zip archive: {exc}") from exc
    return found


def read_archive(source: Path | None, url: str = RELEASE_URL) -> tuple[bytes, str]:
    """The archive's bytes and a label for messages: the local file, else a download."""
    if source is not None:
        try:
            return source.read_bytes(), str(source)
        except OSError as exc:
            raise FirmwareInstallError(f"cannot read {source}: {exc.strerror}") from exc
    import urllib.request  # imported here: ~3 MB (http, email) no other command needs

    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data: bytes = response.read(MAX_ARCHIVE_BYTES + 1)
    except OSError as exc:
        raise FirmwareInstallError(
            f"cannot download {url}: {exc} — without network, download the file elsewhere "
            "and pass it with --archive") from exc
    if len(data) > MAX_ARCHIVE_BYTES:
        raise FirmwareInstallError(f"{url} is larger than {MAX_ARCHIVE_BYTES} bytes")
    return data, url


def extract_images(data: bytes, label: str,
                   allowed: Mapping[str, frozenset[str]]) -> tuple[dict[str, bytes], list[str]]:
    """Every image checked against ``allowed``; optional ones without an entry are skipped.

    The release's licence text comes along (not hash-checked: it is not loaded anywhere).
    """
    members = _archive_members(data)
    images: dict[str, bytes] = {}
    skipped: list[str] = []
    for src in SOURCES:
        hashes = allowed.get(src.target)
        if not src.required and not hashes:
            skipped.append(f"{src.target}: no allow-list entry in this version")
            continue
        text = members.get(src.var_file)
        if text is None:
            if src.required:
                raise FirmwareInstallError(f"{label} holds no {src.var_file} — is it the "
                                           "sx1302_hal release archive?")
            skipped.append(f"{src.target}: {src.var_file} not in the archive")
            continue
        try:
            image = parse_var_array(text.decode("ascii", "replace"), src.array, src.word_bytes)
        except FirmwareInstallError as exc:
            raise FirmwareInstallError(f"{label}: {src.var_file}: {exc}") from None
        digest = hal_firmware.sha256_hex(image)
        if digest not in (hashes or frozenset()):
            raise FirmwareInstallError(
                f"{src.var_file} in {label} gives an image with SHA-256 {digest}, which is not "
                f"on the allow-list for {src.target} — refused, nothing written")
        images[src.target] = image
    if "LICENSE.TXT" in members:
        images[LICENSE_FILE] = members["LICENSE.TXT"]
    return images, skipped


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install_firmware(target_dir: Path, archive: Path | None = None, url: str = RELEASE_URL,
                     allowed: Mapping[str, frozenset[str]] | None = None) -> InstallResult:
    """Check every image first, then write them all; raises :class:`FirmwareInstallError`.

    ``allowed`` None: the allow-list of :mod:`hal.firmware` (the one the driver checks).
    """
    data, label = read_archive(archive, url)
    images, skipped = extract_images(
        data, label, hal_firmware.KNOWN_SHA256 if allowed is None else allowed)
    try:
        target_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        written = []
        for name, image in images.items():
            _write_atomically(target_dir / name, image)
            written.append(target_dir / name)
    except OSError as exc:
        raise FirmwareInstallError(f"cannot write into {target_dir}: {exc.strerror} "
                                   "(run it with sudo)") from exc
    return InstallResult(tuple(written), tuple(skipped))
