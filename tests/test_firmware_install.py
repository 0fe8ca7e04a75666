"""``lora-gateway firmware install`` from a local archive: synthetic images, their own allow-list.

The archive is built here in the layout of Semtech's sx1302_hal release (C arrays
in ``.var`` files); Semtech's images are never in the repository.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from gateway import firmware_install
from gateway.firmware_install import (
    LICENSE_FILE,
    SX1261_PRAM_FILE,
    FirmwareInstallError,
    install_firmware,
    parse_var_array,
)
from hal.firmware import AGC_SX1250_FILE, ARB_FILE, load_firmware, sha256_hex
from tests.support.firmware import AGC, ALLOWED, ARB, synthetic_image

_PRAM_BYTES = synthetic_image(b"pram", 3 * 386)
PRAM_WORDS = [int.from_bytes(_PRAM_BYTES[i:i + 3], "big") for i in range(0, len(_PRAM_BYTES), 3)]
PRAM = b"".join(w.to_bytes(4, "big") for w in PRAM_WORDS)



def _var_u8(name: str, data: bytes) -> str:
    rows = [", ".join(f"0x{b:02X}" for b in data[i:i + 16]) for i in range(0, len(data), 16)]
    return f"static uint8_t {name}[{len(data)}] = {{ \n" + ", \n".join(rows) + "\n};\n"


def _var_u32(name: str, words: list[int]) -> str:
    body = ",\n".join(f"0x{w:x}" for w in words)
    return (f"/* patch */\nconst uint32_t {name}[] = {{\n{body}\n}};\n\n"
            f"#define PRAM_COUNT {len(words)}\n")


def _release(agc: bytes = AGC, arb: bytes = ARB, *, fmt: str = "tar") -> bytes:
    files = {
        "sx1302_hal-2.1.0/libloragw/src/agc_fw_sx1250.var": _var_u8("agc_firmware_sx1250", agc),
        "sx1302_hal-2.1.0/libloragw/src/arb_fw.var": _var_u8("arb_firmware", arb),
        "sx1302_hal-2.1.0/libloragw/src/sx1261_pram.var": _var_u32("pram", PRAM_WORDS),
        "sx1302_hal-2.1.0/README.md": "not firmware\n",
        "sx1302_hal-2.1.0/LICENSE.TXT": "Revised BSD License (synthetic)\n",
    }
    buf = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buf, "w") as z:
            for name, text in files.items():
                z.writestr(name, text)
    else:
        with tarfile.open(fileobj=buf, mode="w:gz") as t:
            for name, text in files.items():
                raw = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(raw)
                t.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    path = tmp_path / "sx1302_hal-2.1.0.tar.gz"
    path.write_bytes(_release())
    return path


def test_allow_listed_images_are_written_and_the_driver_loads_them(
        archive: Path, tmp_path: Path) -> None:
    target = tmp_path / "state" / "firmware"
    result = install_firmware(target, archive=archive, allowed=ALLOWED)
    assert sorted(p.name for p in result.written) == sorted([AGC_SX1250_FILE, ARB_FILE,
                                                             LICENSE_FILE])
    assert "Revised BSD" in (target / LICENSE_FILE).read_text()
    images = load_firmware(target, ALLOWED)
    assert (images.agc, images.arb) == (AGC, ARB)
    assert (target / AGC_SX1250_FILE).stat().st_mode & 0o777 == 0o644
    assert result.skipped and SX1261_PRAM_FILE in result.skipped[0]  # no entry: optional


def test_a_zip_archive_works_too(tmp_path: Path) -> None:
    path = tmp_path / "release.zip"
    path.write_bytes(_release(fmt="zip"))
    install_firmware(tmp_path / "fw", archive=path, allowed=ALLOWED)
    assert (tmp_path / "fw" / ARB_FILE).read_bytes() == ARB


def test_the_sx1261_patch_is_installed_when_the_allow_list_names_it(
        archive: Path, tmp_path: Path) -> None:
    allowed = {**ALLOWED, SX1261_PRAM_FILE: frozenset({sha256_hex(PRAM)})}
    result = install_firmware(tmp_path / "fw", archive=archive, allowed=allowed)
    assert result.skipped == ()
    assert (tmp_path / "fw" / SX1261_PRAM_FILE).read_bytes() == PRAM
    assert len(PRAM) == 386 * 4


def test_a_tampered_image_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    tampered = bytearray(ARB)
    tampered[4000] ^= 0x01
    path = tmp_path / "tampered.tar.gz"
    path.write_bytes(_release(arb=bytes(tampered)))
    target = tmp_path / "fw"
    with pytest.raises(FirmwareInstallError, match=r"arb_fw\.var .* not on the allow-list"):
        install_firmware(target, archive=path, allowed=ALLOWED)
    assert not target.exists()  # the good AGC image was not written either


def test_a_tampered_image_does_not_replace_installed_ones(archive: Path, tmp_path: Path) -> None:
    target = tmp_path / "fw"
    install_firmware(target, archive=archive, allowed=ALLOWED)
    path = tmp_path / "tampered.tar.gz"
    path.write_bytes(_release(agc=synthetic_image(b"evil")))
    with pytest.raises(FirmwareInstallError):
        install_firmware(target, archive=path, allowed=ALLOWED)
    assert (target / AGC_SX1250_FILE).read_bytes() == AGC


def test_an_archive_without_the_images_names_what_is_missing(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("other/README")
        t.addfile(info, io.BytesIO(b""))
    path = tmp_path / "other.tar.gz"
    path.write_bytes(buf.getvalue())
    with pytest.raises(FirmwareInstallError, match=r"no agc_fw_sx1250\.var"):
        install_firmware(tmp_path / "fw", archive=path, allowed=ALLOWED)


def test_not_an_archive_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.tar.gz"
    path.write_bytes(b"<html>404</html>")
    with pytest.raises(FirmwareInstallError, match="not a readable"):
        install_firmware(tmp_path / "fw", archive=path, allowed=ALLOWED)


def test_the_default_allow_list_refuses_synthetic_images(archive: Path, tmp_path: Path) -> None:
    with pytest.raises(FirmwareInstallError, match="not on the allow-list"):
        install_firmware(tmp_path / "fw", archive=archive)


def test_var_parser_handles_comments_and_rejects_junk() -> None:
    text = "/* x[2] = {9,9} */ static uint8_t a[3] = { 0x01, 2, // two\n 0x03 };"
    assert parse_var_array(text, "a", 1) == b"\x01\x02\x03"
    with pytest.raises(FirmwareInstallError, match="not an integer"):
        parse_var_array("uint8_t a[1] = { zz };", "a", 1)
    with pytest.raises(FirmwareInstallError, match="does not fit"):
        parse_var_array("uint8_t a[1] = { 0x100 };", "a", 1)


def test_cli_installs_into_the_configured_firmware_dir(archive: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.cli import main

    config = tmp_path / "gateway.toml"
    config.write_text('[concentrator]\nfirmware_dir = "fw-here"\n')
    monkeypatch.setattr(firmware_install.hal_firmware, "KNOWN_SHA256", ALLOWED)
    assert main(["firmware", "install", "--archive", str(archive), "-c", str(config)]) == 0
    assert (tmp_path / "fw-here" / ARB_FILE).read_bytes() == ARB


def test_cli_refuses_a_tampered_archive_with_status_1(tmp_path: Path) -> None:
    path = tmp_path / "t.tar.gz"
    path.write_bytes(_release(agc=synthetic_image(b"evil")))
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "firmware", "install", "--archive", str(path),
         "--dir", str(tmp_path / "fw")], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "not on the allow-list" in proc.stderr
    assert not (tmp_path / "fw").exists()
