"""The folders the packaged unit lets the service write, and whether a config is the unit's.

Under ``ProtectSystem=strict`` everything outside ``StateDirectory=`` and
``ReadWritePaths=/run/lora-gateway`` is read-only for the service, so a buffer or key store
placed elsewhere fails at run time (the buffer then runs from memory only).
``config check`` and ``doctor`` refuse such paths for the service's own
configuration (a file under /etc/lora-gateway, or ``--service``); a config for
a foreground run or a test may put its files anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR = Path("/var/lib/lora-gateway")
SERVICE_CONFIG_DIR = Path("/etc/lora-gateway")
SERVICE_WRITABLE_DIRS: tuple[Path, ...] = (STATE_DIR, Path("/run/lora-gateway"))
"""systemd/lora-gateway.service: StateDirectory=lora-gateway, ReadWritePaths=/run/lora-gateway."""


def is_service_config(path: Path) -> bool:
    """Whether ``path`` is (a copy being checked of) the unit's configuration."""
    resolved = Path(os.path.normpath(path.absolute()))
    return SERVICE_CONFIG_DIR in resolved.parents


def service_writable(path: Path, writable: tuple[Path, ...] = SERVICE_WRITABLE_DIRS) -> bool:
    """Whether ``path`` lies inside a folder the unit lets the service write."""
    resolved = Path(os.path.normpath(path.absolute()))
    return any(resolved == d or d in resolved.parents for d in writable)


def read_only_paths(paths: dict[str, Path | None],
                    writable: tuple[Path, ...] = SERVICE_WRITABLE_DIRS) -> list[str]:
    """One reason per named path the service could not write under the unit."""
    where = " or ".join(map(str, writable))
    return [f"{name} = {path} is read-only for the service (ProtectSystem=strict); "
            f"put it under {where}"
            for name, path in paths.items() if path is not None and not service_writable(path,
                                                                                        writable)]
