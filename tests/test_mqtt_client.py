"""ChunkedClient: paho's small reads served from one socket read, nothing lost or reordered."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties

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


# --- writes: one send for everything queued -------------------------------------------------

class LimitedSocket(CountingSocket):
    """Counts sends; each accepts at most ``limit`` bytes (None: all), or none (``full``)."""

    def __init__(self, sock: socket.socket, limit: int | None = None) -> None:
        super().__init__(sock)
        self.sends = 0
        self.limit = limit
        self.full = False

    def send(self, data: bytes) -> int:
        self.sends += 1
        if self.full:
            raise BlockingIOError
        return self.sock.send(data[:self.limit] if self.limit is not None else data)


def queued_client(sock: socket.socket, cls: type[mqtt.Client] = ChunkedClient,
                  protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
                  limit: int | None = None) -> tuple[mqtt.Client, LimitedSocket]:
    """A client that queues its publishes until ``loop_write``, as ``MqttLink`` drives it."""
    client = cls(CallbackAPIVersion.VERSION2, client_id="t", protocol=protocol)
    limited = LimitedSocket(sock, limit)
    client._sock = limited  # type: ignore[assignment]
    client.on_socket_register_write = lambda *_: None
    return client, limited


def publish_burst(client: mqtt.Client, n: int, qos: int = 1) -> list[int]:
    return [client.publish(f"up/{i}", bytes([i]) * (i + 1), qos=qos).mid for i in range(n)]


def sent_burst(sock: socket.socket, n: int, **kwargs: Any) -> tuple[mqtt.Client, LimitedSocket,
                                                                     list[int]]:
    """A ``queued_client`` that has published and written ``n`` QoS 1 messages: their mids."""
    client, limited = queued_client(sock, **kwargs)
    mids = publish_burst(client, n)
    client.loop_write()
    return client, limited, mids


def drain(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    got = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := sock.recv(65536):
            got += chunk
    return got


def test_a_burst_goes_out_in_one_send_with_the_bytes_paho_would_send() -> None:
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with a, b, c, d:
        chunked, counted = queued_client(a)
        plain, _ = queued_client(c, mqtt.Client)
        publish_burst(chunked, 40)
        publish_burst(plain, 40)
        chunked.loop_write()
        plain.loop_write()
        assert counted.sends == 1
        assert drain(b) == drain(d)
        assert not chunked.want_write()


def test_a_short_write_keeps_the_rest_for_the_next_pass_in_order() -> None:
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with a, b, c, d:
        chunked, limited = queued_client(a, limit=100)
        plain, _ = queued_client(c, mqtt.Client)
        publish_burst(chunked, 30)
        publish_burst(plain, 30)
        chunked.loop_write()
        assert chunked.want_write()  # the socket took 100 bytes (mid-packet): the rest waits
        sent = drain(b)
        assert len(sent) == 100
        limited.limit = None
        chunked.loop_write()
        plain.loop_write()
        assert not chunked.want_write()
        assert sent + drain(b) == drain(d)


def test_a_full_socket_keeps_everything_queued() -> None:
    a, b = socket.socketpair()
    with a, b:
        client, limited = queued_client(a)
        publish_burst(client, 5)
        limited.full = True
        client.loop_write()
        assert client.want_write()
        limited.full = False
        client.loop_write()
        assert not client.want_write()
        assert drain(b).count(b"up/") == 5


def test_qos0_publishes_written_together_are_each_reported_published() -> None:
    a, b = socket.socketpair()
    with a, b:
        client, limited = queued_client(a)
        published: list[int] = []
        client.on_publish = lambda _c, _u, mid, rc, _p: published.append(mid)
        mids = publish_burst(client, 10, qos=0)
        client.loop_write()
        assert limited.sends == 1
        assert published == mids


# --- PUBACKs: the successful ones allocate nothing ------------------------------------------

def acks_after(client: mqtt.Client, feed: socket.socket, data: bytes) -> list[tuple[int, Any]]:
    got: list[tuple[int, Any]] = []
    client.on_publish = lambda _c, _u, mid, reason, _p: got.append((mid, reason))
    feed.sendall(data)
    client.loop_read()
    return got


@pytest.mark.parametrize("protocol", [MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311])
def test_a_successful_puback_reports_success_and_frees_its_message(
        protocol: MQTTProtocolVersion) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        client, _, mids = sent_burst(a, 2, protocol=protocol)
        # v5 may send the reason code (0) explicitly; 3.1.1 never does
        acks = bytes((0x40, 2, 0, mids[0]))
        if protocol == MQTTProtocolVersion.MQTTv5:
            acks += bytes((0x40, 3, 0, mids[1], 0))
        got = acks_after(client, b, acks)
        expected = mids if protocol == MQTTProtocolVersion.MQTTv5 else mids[:1]
        assert [mid for mid, _ in got] == expected
        assert all(not reason.is_failure and reason.value == 0 for _, reason in got)
        assert sorted(client._out_messages) == sorted(set(mids) - set(expected))


def test_a_puback_taken_in_one_step_counts_as_bytes_received_for_the_keepalive() -> None:
    """paho's keep-alive pings when nothing came in for a while: the fast path must
    stamp the same clock paho's own reader does (its name changed in paho 2.2)."""
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        client, _ = queued_client(a)
        stamp = client._received_at_attr
        assert hasattr(client, stamp)
        mids = publish_burst(client, 1)
        client.loop_write()
        setattr(client, stamp, 0.0)
        assert acks_after(client, b, bytes((0x40, 2, 0, mids[0])))
        assert getattr(client, stamp) > 0.0


def test_a_failed_puback_still_reports_its_reason_code() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        client, _, [mid] = sent_burst(a, 1)
        got = acks_after(client, b, bytes((0x40, 3, 0, mid, 0x87)))  # not authorised
        assert [m for m, _ in got] == [mid]
        assert got[0][1].is_failure and got[0][1].value == 0x87


def test_a_puback_for_an_unknown_mid_is_ignored() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        client, _ = queued_client(a)
        publish_burst(client, 1)
        client.loop_write()
        assert acks_after(client, b, bytes((0x40, 2, 0x7F, 0x7F))) == []
        assert len(client._out_messages) == 1


def test_a_successful_puback_builds_no_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        client, _, [mid] = sent_burst(a, 1)

        def refuse(*_: object) -> None:
            raise AssertionError("a Properties table was built for a plain PUBACK")

        # on the class: paho 2.2 builds it in paho.mqtt._packet, 2.0 and 2.1 in the client
        monkeypatch.setattr(Properties, "__init__", refuse)
        assert [m for m, _ in acks_after(client, b, bytes((0x40, 2, 0, mid)))] == [mid]


def test_a_puback_split_across_reads_and_one_after_a_failure_are_both_reported() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        client, _, mids = sent_burst(a, 3)
        got = acks_after(client, b, bytes((0x40, 2, 0)))  # half a PUBACK: nothing yet
        assert got == []
        got += acks_after(client, b, bytes((mids[0], 0x40, 3, 0, mids[1], 0x87,
                                            0x40, 2, 0, mids[2])))
        assert [mid for mid, _ in got] == mids
        assert [reason.is_failure for _, reason in got] == [False, True, False]
        assert client._out_messages == {}


def test_a_read_pass_that_emptied_the_socket_does_not_ask_the_kernel_again() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        client, counted, mids = sent_burst(a, 3)
        got = acks_after(client, b, bytes((0x40, 2, 0, mids[0], 0x40, 2, 0, mids[1])))
        assert [mid for mid, _ in got] == mids[:2]
        assert counted.reads == 1  # paho wanted a third packet: the chunk said none waits
        got = acks_after(client, b, bytes((0x40, 2, 0, mids[2])))  # later bytes: read
        assert [mid for mid, _ in got] == mids[2:]
        assert client._out_messages == {}


def test_a_queue_larger_than_one_write_chunk_goes_out_over_several_passes() -> None:
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with a, b, c, d:
        big = [bytes([i]) * 30_000 for i in range(5)]
        chunked, counted = queued_client(a)
        plain, _ = queued_client(c, mqtt.Client)
        for client in (chunked, plain):
            for i, payload in enumerate(big):
                client.publish(f"up/{i}", payload, qos=1)
        sent = b""
        passes = 0
        while chunked.want_write() and passes < 10:
            chunked.loop_write()
            sent += drain(b)
            passes += 1
        expected = b""
        while plain.want_write():
            plain.loop_write()
            expected += drain(d)
        assert sent == expected
        assert passes >= 2 and counted.sends == passes  # one send per pass, never per packet
