"""The installation half of ``lora-gateway doctor``: what the package and the unit decide.

These checks answer what an installer cannot see from the gateway's own log:
is the configuration file readable by whoever runs ``doctor`` (a normal user
needs ``sudo``), did the boot partition's ``gateway.toml`` get rejected at boot,
is the SX1302 firmware installed where the configuration points, and can the
service write its buffer (the unit's ``ProtectSystem=strict`` makes everything
outside its own folders read-only, and a buffer there would silently run from
memory only).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path

from gateway.config import Config, ConfigError
from gateway.doctor_result import CheckResult, fail, ok, warn
from gateway.service_paths import SERVICE_WRITABLE_DIRS, STATE_DIR, service_writable
from hal.errors import FirmwareError
from hal.firmware import load_firmware, load_sx1261_patch
from hardware.board import BoardError, get_board

SERVICE_USER = "lora-gateway"
BOOT_CONFIG_ERROR = STATE_DIR / "boot-config-error.txt"
"""Written by the package's import-boot-config when the boot partition's file was refused."""
FIRMWARE_BACKENDS = frozenset({"sx1302", "sx1302_usb"})


def check_config_unreadable(path: Path, error: ConfigError) -> CheckResult:
    """The config check's failure, with ``sudo`` as the fix when it is a permission matter."""
    if isinstance(error.__cause__, PermissionError):
        return fail("config", f"{path} is not readable by this user (it may hold the MQTT "
                              "password, so only root and the service read it)",
                    "run `sudo lora-gateway doctor`")
    return fail("config", str(error), "fix the value named above")


def check_boot_import(error_file: Path | None = None) -> CheckResult | None:
    """The last boot-partition import's refusal, if there was one (None: nothing to say)."""
    error_file = BOOT_CONFIG_ERROR if error_file is None else error_file
    try:
        reason = error_file.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return warn("boot-config", f"cannot read {error_file}: {exc.strerror}",
                    "run `sudo lora-gateway doctor`")
    first = reason.splitlines()[0] if reason else "(no reason recorded)"
    return fail("boot-config", f"gateway.toml on the boot partition was NOT installed: {first}",
                "correct it on the SD card (see gateway-config-error.txt there) and reboot")


def check_firmware(config: Config, allowed: Mapping[str, frozenset[str]] | None = None,
                   ) -> CheckResult | None:
    """The AGC/ARB images in ``firmware_dir`` exist and are on the allow-list.

    ``allowed`` None: the driver's own allow-list, so doctor and daemon agree.
    """
    c = config.concentrator
    if c.backend not in FIRMWARE_BACKENDS:
        return None
    if c.firmware_dir is None:
        return fail("firmware", "concentrator.firmware_dir is not set",
                    "set it, then `sudo lora-gateway firmware install`")
    try:
        if allowed is None:
            load_firmware(c.firmware_dir)
        else:
            load_firmware(c.firmware_dir, allowed)
    except FirmwareError as exc:
        return fail("firmware", str(exc).split(" — ")[0],
                    "run `sudo lora-gateway firmware install`")
    if _has_sx1261(c.board):
        try:
            if allowed is None:
                load_sx1261_patch(c.firmware_dir)
            else:
                load_sx1261_patch(c.firmware_dir, allowed)
        except FirmwareError as exc:
            return fail("firmware", f"AGC/ARB ok; SX1261 patch: {str(exc).split(' — ')[0]}",
                        "run `sudo lora-gateway firmware install` (listen-before-talk and "
                        "survey need it)")
        return ok("firmware", f"AGC/ARB images and the SX1261 patch in {c.firmware_dir} "
                              "match the allow-list")
    return ok("firmware", f"AGC/ARB images in {c.firmware_dir} match the allow-list")


def _has_sx1261(board: str) -> bool:
    try:
        return get_board(board).lbt_radio is not None
    except BoardError:
        return False  # the concentrator line reports a bad board


def check_buffer_writable(config: Config, user: str = SERVICE_USER,
                          writable: tuple[Path, ...] = SERVICE_WRITABLE_DIRS) -> CheckResult:
    """The buffer's folder is one the unit allows and the service user may write."""
    path = config.buffer.path
    if not service_writable(path, writable):
        return fail("buffer-folder", f"{path.parent} is read-only for the service (outside "
                                     f"{', '.join(map(str, writable))})",
                    f"put buffer.path under {writable[0]} (or add a ReadWritePaths= drop-in)")
    folder = path.parent
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return ok("buffer-folder", f"{folder} is inside the service's folders")
    try:
        st = folder.stat()
    except FileNotFoundError:
        return warn("buffer-folder", f"{folder} does not exist yet",
                    "the service creates its state folder at start")
    except OSError as exc:
        return warn("buffer-folder", f"cannot look at {folder}: {exc.strerror}",
                    "run `sudo lora-gateway doctor`")
    groups = {g for g in os.getgrouplist(user, account.pw_gid)}
    can_write = (st.st_uid == account.pw_uid and st.st_mode & 0o200) or \
        (st.st_gid in groups and st.st_mode & 0o020) or st.st_mode & 0o002
    if not can_write:
        return fail("buffer-folder", f"{folder} is not writable by the user {user}",
                    f"sudo chown {user}:{user} {folder}")
    return ok("buffer-folder", f"{folder} writable by the service")
