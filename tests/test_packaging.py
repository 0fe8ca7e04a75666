"""Package helpers and the SD image recipe, checked without a Raspberry Pi.

The package build and the chroot install run in ``.ci/package-check`` (minutes,
needs root and debootstrap); here: the maintainer-script helpers on real files,
the default configuration, the image templates, and shellcheck.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from gateway.config import load_config

REPO = Path(__file__).resolve().parents[1]
DEBIAN = REPO / "packaging" / "debian"
SHELL_SCRIPTS = [REPO / ".ci" / "package-check", REPO / "packaging" / "build-deb.sh",
                 REPO / "hardware" / "image" / "build-image.sh",
                 *(DEBIAN / n for n in ("postinst", "prerm", "postrm", "enable-spi",
                                        "import-boot-config"))]

PI_CONFIG = """# For more options and information see the documentation
#dtparam=i2c_arm=on
#dtparam=spi=on
dtparam=audio=on

[cm4]
otg_mode=1
"""


def run(args: list[str | Path], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False,
                          env={**os.environ, **env})


def test_enable_spi_appends_under_all_once(tmp_path: Path) -> None:
    cfg = tmp_path / "config.txt"
    cfg.write_text(PI_CONFIG)
    assert run([DEBIAN / "enable-spi", cfg]).returncode == 0
    once = cfg.read_text()
    assert run([DEBIAN / "enable-spi", cfg]).returncode == 0
    assert cfg.read_text() == once  # idempotent
    added = once[len(PI_CONFIG):].splitlines()
    assert added[added.index("[all]") + 2] == "dtparam=spi=on"  # not swallowed by [cm4]


def test_enable_spi_leaves_an_enabled_config_and_a_non_pi_alone(tmp_path: Path) -> None:
    cfg = tmp_path / "config.txt"
    cfg.write_text("dtparam=i2c_arm=on,spi=on\n")
    assert run([DEBIAN / "enable-spi", cfg]).returncode == 0
    assert cfg.read_text() == "dtparam=i2c_arm=on,spi=on\n"
    result = run([DEBIAN / "enable-spi", tmp_path / "absent.txt"])
    assert result.returncode == 0 and "nothing to do" in result.stdout


@pytest.fixture
def import_env(tmp_path: Path) -> dict[str, str]:
    launcher = tmp_path / "lora-gateway"
    launcher.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" -m gateway "$@"\n')
    launcher.chmod(0o755)
    (tmp_path / "boot").mkdir()
    return {"BOOT_CONFIG": str(tmp_path / "boot" / "gateway.toml"),
            "ETC_CONFIG": str(tmp_path / "etc" / "gateway.toml"),
            "STATE_DIR": str(tmp_path / "state"), "LORA_GATEWAY": str(launcher),
            "SERVICE_GROUP": "root"}


def test_boot_config_valid_is_installed_private_and_removed_from_boot(
        import_env: dict[str, str]) -> None:
    boot, etc = Path(import_env["BOOT_CONFIG"]), Path(import_env["ETC_CONFIG"])
    boot.write_bytes(b'[mqtt]\r\nserver = "mqtt://broker:1883"\r\npassword = "pw"\r\n')
    result = run([DEBIAN / "import-boot-config"], **import_env)
    assert result.returncode == 0, result.stderr
    assert not boot.exists()
    assert etc.read_text() == '[mqtt]\nserver = "mqtt://broker:1883"\npassword = "pw"\n'
    assert stat.S_IMODE(etc.stat().st_mode) == 0o640


def test_boot_config_invalid_is_kept_and_the_reason_written_twice(
        import_env: dict[str, str]) -> None:
    boot, etc = Path(import_env["BOOT_CONFIG"]), Path(import_env["ETC_CONFIG"])
    etc.parent.mkdir()
    etc.write_text("# the previous, working configuration\n")
    boot.write_text('[mqtt]\nmarshaler = "xml"\n')
    result = run([DEBIAN / "import-boot-config"], **import_env)
    assert result.returncode == 1
    assert boot.exists() and etc.read_text() == "# the previous, working configuration\n"
    reason = (Path(import_env["STATE_DIR"]) / "boot-config-error.txt").read_text()
    assert "mqtt.marshaler" in reason and str(boot) in reason
    assert "NOT installed" in (boot.parent / "gateway-config-error.txt").read_text()
    assert list(etc.parent.iterdir()) == [etc]  # no temporary file left behind


def test_packaged_default_configuration_validates() -> None:
    config = load_config(REPO / "packaging" / "gateway.toml")
    assert config.concentrator.backend == "sx1302"
    assert str(config.buffer.path).startswith("/var/lib/lora-gateway/")


def _render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render", REPO / "hardware/image/render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_templates_render_and_the_example_config_validates(tmp_path: Path) -> None:
    render = _render_module()
    written = render.render_all(tmp_path, {**render.DEFAULTS, "VERSION": "9.9.9",
                                           "MQTT_SERVER": "mqtts://cs.example:8883"})
    assert {p.name for p in written} == {"config.txt", "gateway.toml.example",
                                        "README-gateway.txt"}
    for path in written:
        assert "${" not in path.read_text()
    config = load_config(tmp_path / "gateway.toml.example")
    assert config.mqtt.server == "mqtts://cs.example:8883"
    lines = (tmp_path / "config.txt").read_text().splitlines()
    assert {"[all]", "dtparam=spi=on", "enable_uart=1"} <= set(lines)
    assert lines[0].startswith("# >>> lora-gateway 9.9.9") and lines[-1] == "# <<< lora-gateway"


def test_image_render_refuses_missing_and_unsafe_values(tmp_path: Path) -> None:
    render = _render_module()
    with pytest.raises(KeyError):
        render.render("${REGION} ${NOPE}", {"REGION": "EU868"})
    with pytest.raises(ValueError):
        render.render("${REGION}", {"REGION": 'EU868"\nbackend = "emulator'})
    result = run([sys.executable, REPO / "hardware/image/render.py", "--out", tmp_path,
                  "--set", "NOPE=1"])
    assert result.returncode == 2 and "KEY=VALUE" in result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck is not installed (.ci/package-check installs it)")
def test_shell_scripts_pass_shellcheck() -> None:
    result = run(["shellcheck", *SHELL_SCRIPTS])
    assert result.returncode == 0, result.stdout
