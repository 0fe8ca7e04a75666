"""A real ``MqttLink`` under test, and the condition waits its tests share.

Each scenario runs in its own event loop (``run``); waits are for conditions with
generous limits (``until``), never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any

from packet_forwarder.mqtt_link import MqttLink, MqttSettings
from packet_forwarder.topics import Topics

GW = "0016c001ff10a235"
TOPICS = Topics("eu868", GW)


def run(coro: Coroutine[Any, Any, None], timeout_s: float = 60.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout_s))


async def until(cond: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    """Wait for a condition while letting the loop run (a condition wait, not a delay)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def in_thread(func: Callable[[], Any]) -> Any:
    """Blocking test helpers (subscriber waits) must not stall the link's loop."""
    return await asyncio.get_running_loop().run_in_executor(None, func)


def settings(url: str, **kw: Any) -> MqttSettings:
    base: dict[str, Any] = dict(server=url, keepalive_s=5, reconnect_min_s=0.05,
                                reconnect_max_s=0.2, connect_timeout_s=5, stop_timeout_s=3)
    return MqttSettings(**(base | kw))


class Harness:
    """A link plus everything it reported."""

    def __init__(self, s: MqttSettings, marshaler: str = "protobuf") -> None:
        self.commands: list[tuple[str, bytes]] = []
        self.changes: list[bool] = []
        self.link = MqttLink(s, TOPICS, on_command=lambda n, p: self.commands.append((n, p)),
                             on_connection_change=self.changes.append, marshaler=marshaler,
                             rng=random.Random(1))
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.link.run())
        await until(lambda: self.link.connected, "connect")

    async def stop(self) -> None:
        await self.link.stop()
        assert self.task is not None
        await asyncio.wait_for(self.task, 10)
