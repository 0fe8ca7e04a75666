"""A broker outage while 10,000 frames arrive from 1,000 devices: none lost, none reordered,
and live frames of other devices overtake the backlog while it drains.

Real subprocesses (``python -m gateway run``, a persistent Mosquitto) and a
persistent-session subscriber. The 100,000-frame version, with the live frames'
latency, is ``bench/bench_outage.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sim.inject import send_inject
from tests.support.buffer_e2e import PersistentBroker, key, order_violations, packet
from tests.support.gateway_proc import GatewayProcess, UplinkCollector, wait_for, write_config

pytestmark = pytest.mark.usefixtures("mosquitto_binary")

DEVICES = 1000
PER_DEVICE = 10
LIVE = 50
DRAIN_RATE = 2000  # frames/s: the 10,000-frame backlog takes about 5 s to drain


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PersistentBroker]:
    b = PersistentBroker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def test_outage_backlog_drains_in_device_order_behind_live_frames(
        tmp_path: Path, broker: PersistentBroker) -> None:
    config = write_config(tmp_path, broker.port,
                          buffer=f"commit_interval_s = 0.5\ndrain_rate_per_s = {DRAIN_RATE}")
    gw = GatewayProcess(config)
    gw.start()
    collector = UplinkCollector(broker.port)
    try:
        broker.stop()
        backlog = [(dev, n) for n in range(PER_DEVICE) for dev in range(DEVICES)]
        for k in backlog:
            send_inject(gw.inject_socket, packet(*k))
        broker.start()
        wait_for(lambda: len(collector.snapshot()) >= 100, 60, "the drain to start")
        live = [(DEVICES + i, 0) for i in range(LIVE)]  # devices with nothing waiting
        for k in live:
            send_inject(gw.inject_socket, packet(*k))
        want = set(backlog) | set(live)
        wait_for(lambda: want <= {key(p) for p in collector.unique_payloads()}, 120,
                 "every frame after the outage")
        frames = collector.snapshot()
    finally:
        collector.close()
        gw.kill()
    arrival = {}
    for i, f in enumerate(frames):
        arrival.setdefault(key(f.phy_payload), i)
    last_backlog = max(arrival[k] for k in backlog)
    overtaken = sum(arrival[k] < last_backlog for k in live)
    print(f"\n{len(want)} frames, {len(frames) - len(want)} duplicates, "
          f"{overtaken}/{LIVE} live frames arrived before the backlog had drained")
    assert order_violations(frames) == 0
    assert overtaken == LIVE
