"""How a stored row is checked before the buffer trusts it: a CRC-32 over every field.

``PRAGMA quick_check`` checks SQLite's structure, not our values: a flipped bit in
a row can leave the page sound but turn a BLOB into TEXT, an integer into a float,
or simply change a byte of the body. Like the disk buffers of Vector and Fluent Bit,
each record carries a checksum written with it and verified on every read; a row
that fails goes to the quarantine instead of stopping the gateway or its device.
"""

from __future__ import annotations

import struct
import zlib

from buffer.types import UplinkRecord

_FIXED = struct.Struct("<qqqBII")  # seq, received_ns, monotonic_ns, synced, len(device), len(boot)


def checksum(seq: object, device: object, body: object, received_ns: object,
             monotonic_ns: object, boot_id: object, clock_synced: object) -> int:
    """CRC-32 of the fields in a fixed layout (lengths included, so no two rows alias).

    Raises ``TypeError``/``ValueError``/``struct.error`` for values of the wrong type.
    """
    if not (isinstance(device, str) and isinstance(boot_id, str) and isinstance(body, bytes)):
        raise TypeError("device and boot_id must be text, body bytes")
    for value in (seq, received_ns, monotonic_ns, clock_synced):
        if not isinstance(value, int):
            raise TypeError("integer field of another type")
    dev, boot = device.encode(), boot_id.encode()
    head = _FIXED.pack(seq, received_ns, monotonic_ns, int(bool(clock_synced)), len(dev), len(boot))
    return zlib.crc32(body, zlib.crc32(boot, zlib.crc32(dev, zlib.crc32(head))))


def record_checksum(record: UplinkRecord) -> int:
    return checksum(record.seq, record.device, record.body, record.received_ns,
                    record.monotonic_ns, record.boot_id, int(record.clock_synced))


def decode_row(row: tuple[object, ...]) -> UplinkRecord | str:
    """A verified record from ``(seq, device, body, received_ns, monotonic_ns, boot_id,
    clock_synced, crc)``, or the reason it cannot be trusted."""
    seq, device, body, received_ns, monotonic_ns, boot_id, synced, crc = row
    if synced not in (0, 1) or isinstance(synced, float):
        return f"clock_synced is {type(synced).__name__} {synced!r:.20}"
    try:
        expected = checksum(seq, device, body, received_ns, monotonic_ns, boot_id, synced)
    except (TypeError, ValueError, OverflowError, struct.error) as exc:
        kinds = ",".join(type(v).__name__ for v in row[:7])
        return f"column types ({kinds}): {exc}"
    if not isinstance(crc, int) or crc != expected:
        return f"checksum mismatch (stored {crc!r:.20}, computed {expected})"
    assert isinstance(seq, int) and isinstance(device, str) and isinstance(body, bytes)
    assert isinstance(received_ns, int) and isinstance(monotonic_ns, int)
    assert isinstance(boot_id, str)
    return UplinkRecord(seq, device, body, received_ns, monotonic_ns, boot_id, bool(synced))
