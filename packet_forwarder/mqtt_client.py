"""A paho client that reads its socket in large chunks instead of a few bytes at a time.

paho reads every incoming packet with three ``recv`` calls (the command byte, each
remaining-length byte, then the rest): a PUBACK, four bytes, costs three system calls,
each of which lets another thread take the GIL. Under load the broker's PUBACKs arrive
dozens at a time; here one ``recv`` fetches what the kernel holds and paho's small
reads are served from that chunk.

The chunk can outlive one ``loop_read`` (paho stops after as many packets as it has
messages in flight), so whoever drives the socket must call ``loop_read`` again while
``buffered()`` says bytes wait: a readable-socket watcher alone would not fire for
them. ``MqttLink`` does.
"""

from __future__ import annotations

from typing import Any

# Before paho: it imports urllib.request, which only its proxy support uses.
import packet_forwarder.lazy_urllib  # noqa: F401

# isort: split
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

__all__ = ["CHUNK", "ChunkedClient"]

CHUNK = 64 * 1024
"""Bytes asked of the kernel per read; a PUBACK is 4 to 8 bytes."""


class ChunkedClient(mqtt.Client):
    """``paho.mqtt.client.Client`` whose socket reads go through a chunk buffer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._chunk = b""
        self._chunk_pos = 0

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

    def _sock_recv(self, bufsize: int) -> bytes:
        """paho's read: from the chunk; a real read only once it is used up.

        Raises what paho's own read raises (``BlockingIOError`` when nothing is
        waiting, ``ConnectionError`` without a socket) and returns ``b""`` at end of
        stream, so paho's handling of both is unchanged.
        """
        pos = self._chunk_pos
        if pos >= len(self._chunk):
            data = super()._sock_recv(max(bufsize, CHUNK))
            if len(data) <= bufsize:  # end of stream, or no more than was asked
                self._chunk, self._chunk_pos = b"", 0
                return data
            self._chunk, pos = data, 0
        end = min(pos + bufsize, len(self._chunk))  # a short read, as a socket's may be
        self._chunk_pos = end
        return self._chunk[pos:end]
