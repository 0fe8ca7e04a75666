"""MQTT topic names of the ChirpStack v4 gateway protocol for one gateway.

Kept in one place because a wrong prefix is the classic "gateway never seen"
failure: every topic the gateway uses is derived here from the same two values.
"""

from __future__ import annotations

COMMAND_WILDCARD = "+"


class Topics:
    """``[prefix/]gateway/<id>/{event,state,command}/<name>`` for one gateway id."""

    def __init__(self, prefix: str, gateway_id: str) -> None:
        prefix = prefix.strip("/")
        base = f"gateway/{gateway_id}"
        self.prefix = prefix
        self.gateway_id = gateway_id
        self._base = f"{prefix}/{base}" if prefix else base
        self._command_prefix = f"{self._base}/command/"

    def event(self, name: str) -> str:
        """Topic of an event the gateway publishes (``up``, ``stats``, ``ack``, ``exec``)."""
        return f"{self._base}/event/{name}"

    def state(self, name: str) -> str:
        """Topic of a retained state message (``conn``)."""
        return f"{self._base}/state/{name}"

    def command_filter(self) -> str:
        """The subscription filter for every command addressed to this gateway."""
        return self._command_prefix + COMMAND_WILDCARD

    def command_name(self, topic: str) -> str | None:
        """The command (``down``, ``config``, ``exec``) a topic carries, None if not ours."""
        if not topic.startswith(self._command_prefix):
            return None
        name = topic[len(self._command_prefix):]
        if not name or "/" in name:
            return None
        return name
