"""journald's native protocol: field naming, binary-safe encoding, delivery over a real socket."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.journald import (
    JournalSender,
    encode_fields,
    event_to_fields,
    field_name,
    stderr_is_journal,
)


def parse_datagram(data: bytes) -> dict[str, bytes]:
    """Decode the native format the way journald does (both the plain and binary-safe forms)."""
    fields: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            fields[key.decode()] = value
            pos = end + 1
        else:
            (size,) = struct.unpack("<Q", data[end + 1:end + 9])
            fields[line.decode()] = data[end + 9:end + 9 + size]
            assert data[end + 9 + size:end + 10 + size] == b"\n"
            pos = end + 10 + size
    return fields


@pytest.fixture
def journal_socket(tmp_path: Path) -> Iterator[tuple[Path, socket.socket]]:
    path = tmp_path / "journal.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield path, sock
    sock.close()


def test_field_names_follow_journald_rules_and_documented_aliases() -> None:
    assert field_name("dev_addr") == "DEVADDR"
    assert field_name("fcnt") == "FCNT"
    assert field_name("frequency") == "FREQ"
    assert field_name("reason") == "REASON"
    assert field_name("hold-ms") == "HOLD_MS"
    assert field_name("_pid") == "PID"  # a leading underscore is journald's own namespace
    assert field_name("9lives") == "LIVES"
    assert field_name("message") == "X_MESSAGE"  # cannot overwrite the summary line
    assert len(field_name("k" * 100)) == 64


def test_event_becomes_summary_priority_and_one_field_per_key() -> None:
    fields = event_to_fields({"event": "uplink_dropped", "level": "warning",
                              "dev_addr": "26011f2a", "fcnt": 7, "reason": "mic mismatch"},
                             identifier="lora-gateway")
    assert fields["PRIORITY"] == "4"
    assert fields["SYSLOG_IDENTIFIER"] == "lora-gateway"
    assert fields["EVENT"] == "uplink_dropped"
    assert fields["DEVADDR"] == "26011F2A"  # one spelling for journalctl DEVADDR=...
    assert fields["FCNT"] == "7"
    assert fields["REASON"] == "mic mismatch"
    assert fields["MESSAGE"] == 'uplink_dropped dev_addr=26011f2a fcnt=7 reason="mic mismatch"'


def test_values_with_newlines_use_the_binary_safe_form() -> None:
    data = encode_fields({"MESSAGE": "two\nlines", "PRIORITY": "6", "RAW": b"\x00\xff"})
    assert data.startswith(b"MESSAGE\n" + struct.pack("<Q", 9) + b"two\nlines\n")
    assert parse_datagram(data) == {"MESSAGE": b"two\nlines", "PRIORITY": b"6",
                                    "RAW": b"\x00\xff"}


def test_sender_delivers_one_datagram_per_event(journal_socket: tuple[Path, socket.socket]) -> None:
    path, sock = journal_socket
    sender = JournalSender(path)
    assert sender.send({"MESSAGE": "hello", "DEVADDR": "26011F2A"})
    assert parse_datagram(sock.recv(65536)) == {"MESSAGE": b"hello", "DEVADDR": b"26011F2A"}
    sender.close()


def test_oversized_event_travels_as_a_memfd(journal_socket: tuple[Path, socket.socket]) -> None:
    path, sock = journal_socket
    sender = JournalSender(path)
    big = "x" * 600_000  # larger than any datagram the kernel accepts on this socket
    assert sender.send({"MESSAGE": big})
    msg, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
    assert msg == b"" and len(fds) == 1
    with os.fdopen(fds[0], "rb") as f:
        f.seek(0)
        assert parse_datagram(f.read()) == {"MESSAGE": big.encode()}
    sender.close()


def test_a_missing_journal_is_counted_not_raised(tmp_path: Path) -> None:
    sender = JournalSender(tmp_path / "absent.sock")
    assert not sender.send({"MESSAGE": "lost"})
    assert sender.failures == 1


def test_journal_stream_must_match_stderrs_device_and_inode(tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("w") as f:
        st = os.fstat(f.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, f.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"},
                                     f.fileno())
        assert not stderr_is_journal({}, f.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, f.fileno())
