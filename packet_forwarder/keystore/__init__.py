"""Device sessions and root keys at the edge: encrypted at rest, indexed in memory.

``store`` keeps them in SQLite with AES-GCM-sealed key columns under a master key file;
``index`` is the in-memory DevAddr → candidate sessions map the per-frame check reads;
``importer`` reads operator files (``keys import`` only, so it is not re-exported here:
the running daemon never loads it, nor ``csv``); ``accounting`` counts and rate-limits
drop logs.
"""

from packet_forwarder.keystore.accounting import RateLimitedLog, VerdictCounters
from packet_forwarder.keystore.errors import (
    ImportFileError,
    KeyStoreError,
    MasterKeyError,
    RecordError,
    StoreDamagedError,
)
from packet_forwarder.keystore.index import Candidate, RootEntry, SessionIndex, session_public
from packet_forwarder.keystore.records import MAC_VERSIONS, DeviceSession, RootKey
from packet_forwarder.keystore.store import Applied, KeyStore, Loaded, StoredSession

__all__ = [
    "MAC_VERSIONS",
    "Applied",
    "Candidate",
    "DeviceSession",
    "ImportFileError",
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
    "session_public",
]
