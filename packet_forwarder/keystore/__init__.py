"""Device sessions and root keys at the edge: encrypted at rest, indexed in memory.

``store`` keeps them in SQLite with AES-GCM-sealed key columns under a master key file;
``index`` is the in-memory DevAddr → candidate sessions map the per-frame check reads;
``importer`` reads operator files; ``accounting`` counts and rate-limits drop logs.
"""

from packet_forwarder.keystore.accounting import RateLimitedLog, VerdictCounters
from packet_forwarder.keystore.errors import (
    ImportFileError,
    KeyStoreError,
    MasterKeyError,
    RecordError,
    StoreDamagedError,
)
from packet_forwarder.keystore.importer import ImportRows, read_import_file, validate_rows
from packet_forwarder.keystore.index import Candidate, RootEntry, SessionIndex, session_public
from packet_forwarder.keystore.records import MAC_VERSIONS, DeviceSession, RootKey
from packet_forwarder.keystore.store import Applied, KeyStore, Loaded, StoredSession

__all__ = [
    "MAC_VERSIONS",
    "Applied",
    "Candidate",
    "DeviceSession",
    "ImportFileError",
    "ImportRows",
    "KeyStore",
    "KeyStoreError",
    "Loaded",
    "MasterKeyError",
    "RateLimitedLog",
    "RecordError",
    "RootEntry",
    "RootKey",
    "SessionIndex",
    "StoreDamagedError",
    "StoredSession",
    "VerdictCounters",
    "read_import_file",
    "session_public",
    "validate_rows",
]
