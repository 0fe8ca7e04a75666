"""A paho client that reads and writes its socket in chunks instead of a packet at a time.

paho reads every incoming packet with three ``recv`` calls (the command byte, each
remaining-length byte, then the rest): a PUBACK, four bytes, costs three system calls,
each of which lets another thread take the GIL. Under load the broker's PUBACKs arrive
dozens at a time; here one ``recv`` fetches what the kernel holds and paho's small
reads are served from that chunk.

The chunk can outlive one ``loop_read`` (paho stops after as many packets as it has
messages in flight), so whoever drives the socket must call ``loop_read`` again while
``buffered()`` says bytes wait: a readable-socket watcher alone would not fire for
them. ``MqttLink`` does.

Writes: paho sends each queued packet with its own ``send`` call, and on loopback or a
Pi's network stack each call costs far more than the bytes it carries. A write pass
here sends everything queued in one call, then lets paho's own loop account for the
bytes that went (its per-packet bookkeeping, QoS 0 callbacks and DISCONNECT handling
unchanged): see ``_packet_write``.

PUBACKs: paho builds a ``Properties`` object (a table of every MQTT 5 property name,
tens of µs) and a ``ReasonCode`` for each one it reads, though a successful PUBACK
carries neither; ``_handle_pubackcomp`` answers that case with shared instances.
"""

from __future__ import annotations

from typing import Any, Literal

# Before paho: it imports urllib.request, which only its proxy support uses.
import packet_forwarder.lazy_urllib  # noqa: F401

# isort: split
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["CHUNK", "WRITE_CHUNK", "ChunkedClient"]

CHUNK = 64 * 1024
"""Bytes asked of the kernel per read; a PUBACK is 4 to 8 bytes."""
WRITE_CHUNK = 64 * 1024
"""A write pass joins queued packets (whole ones) until they reach this many bytes."""

_DISCONNECT = 0xE0
_PUBACK = 0x40


class ChunkedClient(mqtt.Client):
    """``paho.mqtt.client.Client`` whose socket reads go through a chunk buffer, whose
    queued packets leave in one write, and whose successful PUBACKs allocate nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._chunk = b""
        self._chunk_pos = 0
        self._drained: bool | None = None
        """Within one ``loop_read`` (None outside): a socket read came back short, so the
        kernel had nothing more then; what arrives later makes the socket readable again."""
        self._write_budget: int | None = None
        """While paho accounts for one coalesced write: the bytes it has not yet been
        told about (``_sock_send`` then hands out this budget instead of writing)."""
        self._received_at_attr = (
            "_last_bytes_received" if hasattr(self, "_last_bytes_received") else "_last_msg_in")
        """Where paho keeps the time bytes last came in (its keep-alive reads it): named
        ``_last_bytes_received`` since 2.2, ``_last_msg_in`` in 2.0 and 2.1."""
        self._puback_ok = ReasonCode(PacketTypes.PUBACK)
        # paho's Properties has no annotations
        self._no_properties = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
        """Passed to ``on_publish`` for every successful PUBACK: shared, so callbacks
        must not modify them (``MqttLink`` only reads ``is_failure``)."""

    def reconnect(self) -> MQTTErrorCode:
        """A new connection starts with nothing buffered.

        Bytes left in the chunk came from the socket being replaced: served to the new
        connection they would be parsed as its CONNACK and what follows.
        """
        self._chunk, self._chunk_pos = b"", 0
        return super().reconnect()

    def buffered(self) -> int:
        """Bytes read from the socket that paho has not consumed yet."""
        return len(self._chunk) - self._chunk_pos

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's read pass; it ends at the chunk's end when the read that filled the
        chunk emptied the socket, instead of asking the kernel again (a system call
        and an exception for the "nothing waiting" paho needs to stop)."""
        self._drained = False
        try:
            return super().loop_read(max_packets)
        finally:
            self._drained = None

    def _sock_recv(self, bufsize: int) -> bytes:
        """paho's read: from the chunk; a real read only once it is used up.

        Raises what paho's own read raises (``BlockingIOError`` when nothing is
        waiting, ``ConnectionError`` without a socket) and returns ``b""`` at end of
        stream, so paho's handling of both is unchanged.
        """
        pos = self._chunk_pos
        if pos >= len(self._chunk):
            if self._drained:
                raise BlockingIOError  # as the kernel would have said a moment ago
            wanted = max(bufsize, CHUNK)
            data = super()._sock_recv(wanted)
            if self._drained is not None:
                self._drained = len(data) < wanted
            if len(data) <= bufsize:  # end of stream, or no more than was asked
                self._chunk, self._chunk_pos = b"", 0
                return data
            self._chunk, pos = data, 0
        end = min(pos + bufsize, len(self._chunk))  # a short read, as a socket's may be
        self._chunk_pos = end
        return self._chunk[pos:end]

    # --- writes -------------------------------------------------------------------------

    def _packet_write(self) -> MQTTErrorCode:
        """Send the queued packets (``WRITE_CHUNK`` bytes' worth) in one ``send``.

        paho's own loop then runs over the queue with ``_sock_send`` reporting the
        bytes that really went, packet by packet: it finishes the packets sent whole
        (exactly as after its own writes) and keeps the rest, a partly sent one with
        its position, for the next pass. A full socket leaves everything queued.
        """
        queue = self._out_packet
        if len(queue) < 2:
            return super()._packet_write()
        parts: list[bytes | bytearray] = []
        size = 0
        for packet in queue:
            data = packet["packet"]
            pos = packet["pos"]
            parts.append(data[pos:] if pos else data)
            size += len(data) - pos
            if size >= WRITE_CHUNK or packet["command"] & 0xF0 == _DISCONNECT:
                break  # nothing is written after a DISCONNECT: paho closes there
        try:
            sent = super()._sock_send(b"".join(parts))
        except (AttributeError, ValueError):
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to send on socket: %s", err)
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        self._write_budget = sent
        try:
            return super()._packet_write()
        finally:
            self._write_budget = None

    def _sock_send(self, buf: bytes | bytearray) -> int:
        """paho's write; during ``_packet_write``'s accounting, the bytes already sent."""
        budget = self._write_budget
        if budget is None:
            return super()._sock_send(buf)
        if budget == 0:
            raise BlockingIOError  # the rest waits, as after a short write
        taken = min(len(buf), budget)
        self._write_budget = budget - taken
        return taken

    # --- PUBACKs ------------------------------------------------------------------------

    def _packet_read(self) -> MQTTErrorCode:
        """A whole plain PUBACK waiting in the chunk (``40 02`` and the message id: what a
        broker sends for every accepted QoS 1 publish) is taken in one step; anything
        else, or a packet paho has begun reading, goes through paho's byte-wise reader."""
        chunk, pos = self._chunk, self._chunk_pos
        if (len(chunk) - pos >= 4 and chunk[pos] == _PUBACK and chunk[pos + 1] == 2
                and self._in_packet["command"] == 0):
            self._chunk_pos = pos + 4
            with self._msgtime_mutex:
                setattr(self, self._received_at_attr, mqtt.time_func())
            return self._puback_success(chunk[pos + 2] << 8 | chunk[pos + 3])
        return super()._packet_read()

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        """A successful PUBACK (reason code omitted, or 0 without properties) goes to
        ``on_publish`` with the shared success code and empty properties; anything else
        (a failure code, properties, PUBCOMP) through paho's own decoder."""
        packet = self._in_packet["packet"]
        size = len(packet)
        if cmd != "PUBACK" or not (size == 2 or (
                size == 3 and packet[2] == 0 and self._protocol == MQTTProtocolVersion.MQTTv5)):
            return super()._handle_pubackcomp(cmd)
        return self._puback_success(packet[0] << 8 | packet[1])

    def _puback_success(self, mid: int) -> MQTTErrorCode:
        """What paho does for a PUBACK, without decoding what a success does not carry."""
        self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received PUBACK (Mid: %d)", mid)
        with self._out_message_mutex:
            if mid in self._out_messages:
                return self._do_on_publish(mid, self._puback_ok, self._no_properties)
        return MQTTErrorCode.MQTT_ERR_SUCCESS
