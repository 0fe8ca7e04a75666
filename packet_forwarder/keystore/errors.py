"""The key store's branch of the exception tree.

Messages name files, fields and DevEUIs so an operator can act on them, and never carry
a key: they end up in logs, CLI output and MQTT acks.
"""

from __future__ import annotations


class KeyStoreError(Exception):
    """Base of every error raised by ``packet_forwarder.keystore``."""


class MasterKeyError(KeyStoreError):
    """The master key file is missing, unreadable, too open, malformed, or does not open
    this store (the one clear error for "wrong key file")."""


class StoreDamagedError(KeyStoreError):
    """The SQLite file cannot be used: failed integrity check, newer schema, I/O error."""


class RecordError(KeyStoreError):
    """One device record failed validation: ``field`` names the culprit, ``line`` the
    line of the import file (0 when the record did not come from a file)."""

    def __init__(self, field: str, message: str, line: int = 0) -> None:
        where = f"line {line}: " if line else ""
        super().__init__(f"{where}{field}: {message}")
        self.field = field
        self.message = message
        self.line = line

    def at_line(self, line: int) -> RecordError:
        """The same error, located in an import file."""
        return RecordError(self.field, self.message, line)


class ImportFileError(KeyStoreError):
    """An import file with bad rows: ``errors`` lists every one (nothing was imported)."""

    def __init__(self, errors: list[RecordError]) -> None:
        lines = "\n".join(str(e) for e in errors)
        super().__init__(f"{len(errors)} bad row(s), nothing imported:\n{lines}")
        self.errors = errors
