"""ChunkedClient: paho's small reads served from one socket read, nothing lost or reordered."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from paho.mqtt.enums import CallbackAPIVersion

from packet_forwarder.mqtt_client import ChunkedClient


class CountingSocket:
    """A socket end that counts the reads paho's client makes on it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reads = 0

    def recv(self, size: int) -> bytes:
        self.reads += 1
        return self.sock.recv(size)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


@pytest.fixture
def pair() -> Any:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


def client_on(sock: socket.socket) -> tuple[ChunkedClient, CountingSocket]:
    client = ChunkedClient(CallbackAPIVersion.VERSION2, client_id="t")
    counting = CountingSocket(sock)
    client._sock = counting  # type: ignore[assignment]  # paho's own read goes through it
    return client, counting


def test_many_small_reads_cost_one_socket_read_and_keep_the_order(pair: Any) -> None:
    a, b = pair
    client, counting = client_on(a)
    pubacks = b"".join(bytes((0x40, 2, 0, mid)) for mid in range(1, 51))  # 50 PUBACKs
    b.sendall(pubacks)
    got = b""
    while len(got) < len(pubacks):
        got += client._sock_recv(1) + client._sock_recv(1) + client._sock_recv(2)
    assert got == pubacks
    assert counting.reads == 1
    assert client.buffered() == 0
    with pytest.raises(BlockingIOError):  # drained: paho's "nothing waiting" as before
        client._sock_recv(1)


def test_buffered_counts_what_paho_has_not_taken(pair: Any) -> None:
    a, b = pair
    client, _ = client_on(a)
    b.sendall(b"0123456789")
    assert client._sock_recv(4) == b"0123"
    assert client.buffered() == 6
    assert client._sock_recv(100) == b"456789"  # never more than the chunk holds
    assert client.buffered() == 0


def test_end_of_stream_reads_empty(pair: Any) -> None:
    a, b = pair
    client, _ = client_on(a)
    b.sendall(b"xy")
    b.close()
    assert client._sock_recv(1) == b"x"
    assert client._sock_recv(1) == b"y"
    assert client._sock_recv(1) == b""  # paho's sign of a closed connection


def test_a_reconnect_drops_what_the_old_connection_left_in_the_chunk(pair: Any) -> None:
    a, b = pair
    client, _ = client_on(a)
    b.sendall(bytes((0x40, 2, 0, 1, 0x40, 2)))  # a PUBACK and half of the next
    assert client._sock_recv(4) == bytes((0x40, 2, 0, 1))
    assert client.buffered() == 2  # the old stream's tail
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the reconnect itself fails
    client.connect_async("127.0.0.1", port)
    with pytest.raises(OSError):
        client.reconnect()
    assert client.buffered() == 0
