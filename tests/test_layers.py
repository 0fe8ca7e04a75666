"""The layers depend downward only: a test that fails when a module imports upward.

Every ``import`` and ``from … import`` in the project's packages is read with ``ast``
(function-level imports included, since lazy imports are still dependencies). The
rules are the architecture of the README: the HAL, the board profiles, the buffer and
the shared floor never reach into the gateway; the protocol layer never reaches into
the chip's internals or the buffer; outside the simulator wing the gateway reaches the
radio only through the door (``hal.backends``), never the emulator or the concrete
driver.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gateway", "hal", "hardware", "buffer", "packet_forwarder", "common")


def imports_of(path: Path, root: Path = ROOT) -> Iterator[str]:
    """The absolute module names ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(paths: list[Path], forbidden: tuple[str, ...], root: Path = ROOT) -> list[str]:
    return [f"{p.relative_to(root)} imports {name}" for p in paths
            for name in imports_of(p, root) if any(under(name, f) for f in forbidden)]


def gateway_outside_sim() -> list[Path]:
    return [p for p in modules("gateway") if "sim" not in p.relative_to(ROOT / "gateway").parts]


@pytest.mark.parametrize("package", ["hal", "hardware", "buffer", "common"])
def test_lower_layers_never_import_the_gateway(package: str) -> None:
    assert violations(modules(package), ("gateway",)) == []


def test_common_floor_imports_nothing_of_the_project() -> None:
    assert violations(modules("common"), tuple(p for p in PACKAGES if p != "common")) == []


def test_buffer_knows_no_radio_and_no_protocol() -> None:
    assert violations(modules("buffer"), ("hal", "packet_forwarder", "hardware")) == []


def test_hal_never_imports_the_protocol_or_the_buffer() -> None:
    assert violations(modules("hal"), ("packet_forwarder", "buffer")) == []


def test_protocol_layer_stays_off_the_chip_internals_and_the_buffer() -> None:
    forbidden = ("hal.plan", "hal.errors", "hal.sx1302", "hal.emulator", "hal.backends",
                 "buffer", "gateway")
    assert violations(modules("packet_forwarder"), forbidden) == []


def test_gateway_reaches_the_radio_only_through_the_door() -> None:
    forbidden = ("hal.emulator", "hal.sx1302", "hal.backends.spi", "hal.backends.usb",
                 "hal.backends.emulated", "hal.backends.emulated_usb", "hal.backends._bundle")
    assert violations(gateway_outside_sim(), forbidden) == []


def test_only_the_wiring_and_the_commands_import_the_simulator_wing() -> None:
    allowed = {"daemon.py", "demo.py", "cli.py"}
    importers = [p for p in gateway_outside_sim() if p.name not in allowed]
    assert violations(importers, ("gateway.sim",)) == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The rule is only worth something if a violation is caught: plant one and look."""
    (tmp_path / "hal").mkdir()
    planted = tmp_path / "hal" / "planted.py"
    planted.write_text("def f() -> None:\n    from ..gateway import config\n"
                       "import hal.types\n")
    assert violations([planted], ("gateway",), root=tmp_path) == [
        "hal/planted.py imports gateway", "hal/planted.py imports gateway.config"]


def test_a_gateway_on_hardware_never_loads_the_emulator() -> None:
    """The daemon, the command and the hardware openers import no emulator module at all."""
    code = ("import sys, gateway.cli, gateway.daemon, gateway.doctor_hw, hal.backends.spi, "
            "hal.backends.usb\n"
            "print(sorted(m for m in sys.modules "
            "if m.startswith(('hal.emulator', 'gateway.sim'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
