"""A backlog draining over a slow line never starves acks, stats or connection state.

The broker's answers reach the gateway through a proxy the test controls, which
delays every byte from the broker (a slow return path): PUBACKs come late, so the
uplink window stays full while the drain keeps refilling it. Acks and stats must
still be accepted at once and reach the broker, every one of them.
"""

from __future__ import annotations

import asyncio
import contextlib

from structlog.testing import capture_logs

from tests.support.broker import MosquittoBroker, Subscriber
from tests.support.mqtt_harness import TOPICS, Harness, in_thread, run, settings, until

DELAY_S = 0.3


class SlowReturnProxy:
    """Relays client→broker at once and broker→client ``delay_s`` late, in order."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target_port, self.delay_s = target_port, delay_s
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        for coro in (self._pump(reader, up_w, 0.0), self._pump(up_r, writer, self.delay_s)):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    delay: float) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def later() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    break
                dst.write(data)
                await dst.drain()

        sender = asyncio.create_task(later())
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                queue.put_nowait((loop.time() + delay, data))
        queue.put_nowait((loop.time() + delay, b""))
        with contextlib.suppress(OSError):
            await sender
        dst.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def test_acks_and_stats_pass_a_full_uplink_window(broker: MosquittoBroker) -> None:
    acks = Subscriber(broker.port, TOPICS.event("ack"))
    stats = Subscriber(broker.port, TOPICS.event("stats"))

    async def scenario() -> None:
        proxy = SlowReturnProxy(broker.port, DELAY_S)
        await proxy.start()
        h = Harness(settings(f"mqtt://127.0.0.1:{proxy.port}", max_inflight=5))
        drained: list[bool] = []
        refused_bulk = 0

        def refill() -> None:  # the buffer's drain: keep the window full
            nonlocal refused_bulk
            while h.link.can_publish():
                h.link.publish(TOPICS.event("up"), b"backlog", on_result=drained.append,
                               bulk=True)
            refused_bulk += not h.link.publish(TOPICS.event("up"), b"x", bulk=True)

        h.link.add_ready_listener(refill)
        with capture_logs():
            await h.start()
            refill()
            ack_results: list[bool] = []
            accepted: list[bool] = []
            for i in range(5):  # five downlinks transmitted: five acks, between stats
                await until(lambda: not h.link.can_publish(), "window full")
                accepted.append(h.link.publish(TOPICS.event("ack"), b"ack%d" % i,
                                               on_result=ack_results.append))
                accepted.append(h.link.publish(TOPICS.event("stats"), b"stats%d" % i, qos=0))
                await asyncio.sleep(0.05)
            assert accepted == [True] * 10  # never refused for a full uplink window
            await until(lambda: ack_results == [True] * 5, "every ack acknowledged")
            await in_thread(lambda: acks.wait_for(lambda m: len(m) >= 5))
            await in_thread(lambda: stats.wait_for(lambda m: len(m) >= 5))
            assert drained and refused_bulk > 0  # the drain really was held back
            await h.stop()
        await proxy.close()

    try:
        run(scenario())
    finally:
        acks.close()
        stats.close()
    assert [m.payload for m in acks.snapshot()] == [b"ack%d" % i for i in range(5)]
    assert [m.payload for m in stats.snapshot()] == [b"stats%d" % i for i in range(5)]
