"""The real daemon behind a slow return path while a backlog drains through a full
in-flight window: every transmitted downlink gets its ack, and stats keep coming.

The broker's bytes reach the gateway through ``SlowReturnProxy`` (300 ms late), the
uplink window is 5, so the drain holds the window full for the whole test; acks and
stats use the link's control lane and must not wait for it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sim.inject import send_inject
from gateway.sim.local_broker import LocalBroker
from packet_forwarder.downlink.status import TxStatus
from tests.support.buffer_e2e import packet
from tests.support.gateway_proc import (
    GatewayProcess,
    NetworkServerStandIn,
    downlink_frame,
    wait_for,
    write_config,
)
from tests.test_mqtt_lanes import SlowReturnProxy

pytestmark = pytest.mark.usefixtures("mosquitto_binary")

BACKLOG = 600
DOWNLINKS = 5


@pytest.fixture
def proxied_broker(tmp_path: Path) -> Iterator[tuple[LocalBroker, int]]:
    broker = LocalBroker(tmp_path / "broker")
    broker.start()
    loop = asyncio.new_event_loop()
    proxy = SlowReturnProxy(broker.port, 0.3)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(5)
    try:
        yield broker, proxy.port
    finally:
        asyncio.run_coroutine_threadsafe(proxy.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        broker.stop()


def test_acks_and_stats_while_a_backlog_fills_the_window(
        tmp_path: Path, proxied_broker: tuple[LocalBroker, int]) -> None:
    broker, proxy_port = proxied_broker
    config = write_config(tmp_path, proxy_port,
                          mqtt="max_inflight = 5\nstats_interval_s = 1",
                          buffer="drain_rate_per_s = 0")
    gw = GatewayProcess(config)
    ns = NetworkServerStandIn(broker.port)
    try:
        gw.start()
        ns.wait_online()
        for i in range(BACKLOG):
            send_inject(gw.inject_socket, packet(i % 100, i // 100))
        wait_for(lambda: len(ns.uplinks) >= 20, 30, "the drain to start")
        for n in range(DOWNLINKS):
            stats_before = len(ns.stats)
            ns.command("down", downlink_frame(300 + n, {}).SerializeToString())
            ack = ns.wait_ack(300 + n, timeout_s=15)
            assert [TxStatus(i.status) for i in ack.items] == [TxStatus.OK]
            wait_for(lambda b=stats_before: len(ns.stats) > b, 15, "stats during the drain")
        assert len(ns.uplinks) < BACKLOG  # all of it happened while the backlog drained
        assert gw.alive()
    finally:
        ns.close()
        gw.kill()
    assert "Traceback" not in gw.log()
