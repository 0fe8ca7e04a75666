"""The master key file and AES-GCM sealing of the key store's secret columns.

The master key is 32 random bytes in a file of its own, created 0600 on first use by
whoever first opens the store: run the daemon (or ``lora-gateway keys import``) as the
service user, e.g. ``sudo -u lora-gateway lora-gateway keys import ...``, so that user
owns it, or create it by hand with ``install -m 600 -o lora-gateway``. A file that
group or others may read is refused, the way ssh refuses an open private key: a key
that everyone on the Pi can read protects nothing.

Each sealed value is ``nonce(12) | ciphertext | tag(16)``. The associated data names the
table and the row's identity (DevEUI, DevAddr, version, key id), so a ciphertext copied
into another row, or a row edited to point at another device, fails authentication.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from packet_forwarder.keystore.errors import MasterKeyError

MASTER_KEY_LEN: Final = 32
NONCE_LEN: Final = 12
_AAD_PREFIX: Final = b"lora-gateway/keystore/v1\x00"


class SealError(Exception):
    """A sealed value failed authentication (wrong key, damaged or moved ciphertext)."""


def create_master_key(path: Path) -> bytes:
    """Write a fresh random key to ``path`` with mode 0600 (never overwriting a file)."""
    key = os.urandom(MASTER_KEY_LEN)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise MasterKeyError(f"master key file {path} appeared while creating it") from exc
    except OSError as exc:
        raise MasterKeyError(f"cannot create master key file {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)  # the umask cannot have widened it, but be explicit
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)
    return key


def read_master_key(path: Path) -> bytes:
    """Read the key, refusing a file that is not private to its owner or not 32 bytes."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise MasterKeyError(f"master key file {path} does not exist") from exc
    except OSError as exc:
        raise MasterKeyError(f"cannot read master key file {path}: {exc.strerror}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise MasterKeyError(
                f"master key file {path} is accessible to group/others "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
            )
        key = os.read(fd, MASTER_KEY_LEN + 1)
    finally:
        os.close(fd)
    if len(key) != MASTER_KEY_LEN:
        raise MasterKeyError(
            f"master key file {path} holds {len(key)} bytes, not {MASTER_KEY_LEN}"
        )
    return key


def _fsync_dir(directory: Path) -> None:
    """Make the new file's directory entry durable too (a power cut must not lose it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def associated_data(*parts: str | bytes) -> bytes:
    """Unambiguous AAD: each part length-prefixed after a fixed domain prefix."""
    out = bytearray(_AAD_PREFIX)
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        out += len(raw).to_bytes(2, "big") + raw
    return bytes(out)


class Sealer:
    """AES-256-GCM under the master key. ``repr`` never shows the key."""

    __slots__ = ("_aead",)

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_LEN:
            raise MasterKeyError(f"master key must be {MASTER_KEY_LEN} bytes")
        self._aead = AESGCM(master_key)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < NONCE_LEN + 16:
            raise SealError("sealed value too short")
        try:
            return self._aead.decrypt(sealed[:NONCE_LEN], sealed[NONCE_LEN:], aad)
        except InvalidTag as exc:
            raise SealError("authentication failed") from exc

    def __repr__(self) -> str:
        return "Sealer(<redacted>)"
