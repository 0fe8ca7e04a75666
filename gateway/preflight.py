"""What ``run`` needs from the file system, checked before anything starts.

``load_config`` judges values; this judges the places they name: a socket whose
folder cannot be created or written, a socket path too long for ``AF_UNIX``, a file
that must be read at start (TLS material, the key-sync secret, a board file) that
is missing or unreadable, a state folder that is not writable. ``config check`` and
``run`` both call :func:`preflight`, so whatever ``run`` would trip on is reported
by ``config check`` first, in the same one-line format as every config error.
"""

from __future__ import annotations

import os
from pathlib import Path

from common.toml_reader import ConfigError
from gateway.config import Config

MAX_UNIX_SOCKET_PATH = 107
"""``sun_path`` holds 108 bytes including the terminating NUL (Linux)."""


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable_folder(config: Config, key: str, path: Path | None) -> ConfigError | None:
    """``path``'s folder exists (or can be created) and the gateway may write there."""
    if path is None:
        return None
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        return ConfigError(config.source, key, str(path), f"{folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        return ConfigError(config.source, key, str(path), f"folder {folder} is not writable")
    return None


def _socket(config: Config, key: str, path: Path | None) -> ConfigError | None:
    if path is None:
        return None
    if len(os.fsencode(path)) > MAX_UNIX_SOCKET_PATH:
        return ConfigError(config.source, key, str(path),
                           f"a socket path may be at most {MAX_UNIX_SOCKET_PATH} bytes")
    if path.is_dir() or (path.exists() and not path.is_socket()):
        return ConfigError(config.source, key, str(path), "exists and is not a socket")
    return _writable_folder(config, key, path)


def _database_file(config: Config, key: str, path: Path | None) -> ConfigError | None:
    """A SQLite file's place: absent (it is created) or a regular file, in a writable folder.

    A folder or a device there (``/dev/null``) would leave the gateway nothing on disk:
    the buffer would keep frames in memory only, which must be a refusal, not a surprise.
    """
    if path is None:
        return None
    if path.exists() and not path.is_file():
        return ConfigError(config.source, key, str(path),
                           "exists and is not a regular file (a SQLite database is kept there)")
    return _writable_folder(config, key, path)


def _readable(config: Config, key: str, path: Path | None) -> ConfigError | None:
    if path is None:
        return None
    if not path.is_file():
        return ConfigError(config.source, key, str(path), "no such file")
    if not os.access(path, os.R_OK):
        return ConfigError(config.source, key, str(path), "not readable")
    return None


def _key_file(config: Config) -> ConfigError | None:
    """An existing master key must be readable; a missing one is created next to it."""
    path = config.keys.key_file
    if path.exists():
        return _readable(config, "keys.key_file", path)
    return _writable_folder(config, "keys.key_file", path)


def preflight(config: Config) -> list[ConfigError]:
    """Every problem found, in config order (empty when ``run`` can start)."""
    c = config
    emulated = c.concentrator.backend == "emulator"
    # a board file is opened as written (relative to the working folder), as run does
    board = Path(c.concentrator.board) if c.concentrator.board.endswith(".toml") else None
    checks = [
        _socket(c, "gateway.status_socket", c.gateway.status_socket),
        _readable(c, "concentrator.board", board),
        _socket(c, "concentrator.emulator.inject_socket",
                c.concentrator.emulator.inject_socket if emulated else None),
        _readable(c, "mqtt.ca_cert", c.mqtt.ca_cert),
        _readable(c, "mqtt.client_cert", c.mqtt.client_cert),
        _readable(c, "mqtt.client_key", c.mqtt.client_key),
        _database_file(c, "buffer.path", c.buffer.path),
        _database_file(c, "keys.store", c.keys.store),
        None if c.keys.store is None else _key_file(c),
        _readable(c, "keys.sync_secret_file", c.keys.sync_secret_file),
    ]
    return [e for e in checks if e is not None]
