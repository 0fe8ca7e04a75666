"""SIGKILL the gateway at 100 random moments while the broker dies and returns: nothing
the gateway had committed or had acknowledged is lost.

Real subprocesses: ``python -m gateway run`` (commit window 0.2 s), a persistent
Mosquitto, and a persistent-session subscriber standing in for the network server.

The guarantee, precisely. A frame is *received* when the radio loop hands it to
the buffer (``UplinkBuffer.submit``); frames still in the inject socket, the
inject queue or the emulated chip are on the air, not received. After every
commit the gateway logs ``buffer_committed covered=N``: the first N frames this
process received are, from then on, acknowledged by the broker (PUBACK) or in a
committed SQLite transaction. Commits run every ``commit_interval_s``, so at a
SIGKILL the frames at risk are those received after the last such line: at most
one commit window (the interval plus the time one commit takes). The test
asserts that every frame covered by the last line before each kill reaches the
subscriber (``lost`` must be 0), and prints how many frames were lost inside the
window or never received, how many were duplicated (QoS 1 at-least-once: a frame
acknowledged but not yet deleted from the file is sent again after a restart),
and how old the last covered line was at each kill.

The broker is stopped with SIGTERM, not SIGKILL: a PUBACK does not mean Mosquitto
has saved the message, so a SIGKILLed broker may lose what it acknowledged,
which no gateway can prevent. The gateway still sees its connection drop with
publishes in flight.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from gateway.sim.inject import send_inject
from tests.support.buffer_e2e import PersistentBroker, covered_lines, key, packet, read_from
from tests.support.gateway_proc import GatewayProcess, UplinkCollector, wait_for, write_config

pytestmark = [pytest.mark.usefixtures("mosquitto_binary"),
              pytest.mark.slow]

KILLS = 100
COMMIT_S = 0.2
DEVICES = 50
RATE = 1000  # frames/s offered; the gateway takes them as the chip has room


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PersistentBroker]:
    b = PersistentBroker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


class Traffic:
    """Frames numbered per device; remembers which were handed to which incarnation."""

    def __init__(self) -> None:
        self.next_fcnt = [0] * DEVICES
        self.turn = 0
        self.sent_at: dict[tuple[int, int], float] = {}

    def run(self, gw: GatewayProcess, seconds: float, rng: random.Random,
            events: list[tuple[float, str]], broker: PersistentBroker) -> list[tuple[int, int]]:
        """Inject paced frames for ``seconds``; fire broker events on the way."""
        sent: list[tuple[int, int]] = []
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            while events and events[0][0] <= elapsed:
                _, what = events.pop(0)
                broker.stop() if what == "stop" else broker.start()
            if len(sent) < elapsed * RATE:
                dev = self.turn % DEVICES
                self.turn += 1
                k = (dev, self.next_fcnt[dev])
                self.next_fcnt[dev] += 1
                send_inject(gw.inject_socket, packet(*k))
                self.sent_at[k] = time.time()
                sent.append(k)
            else:
                time.sleep(0.0005)
        return sent


def test_100_sigkills_lose_nothing_committed(tmp_path: Path, broker: PersistentBroker) -> None:
    rng = random.Random(20240601)
    config = write_config(tmp_path, broker.port, log='level = "debug"',
                          buffer=f"commit_interval_s = {COMMIT_S}")
    gw = GatewayProcess(config)
    collector = UplinkCollector(broker.port)
    traffic = Traffic()
    must: set[tuple[int, int]] = set()
    window: set[tuple[int, int]] = set()
    old_at_kill: set[tuple[int, int]] = set()
    at_risk_s: list[float] = []
    broker_up, broker_cycles = True, 0
    try:
        for _ in range(KILLS):
            offset = gw.log_path.stat().st_size if gw.log_path.exists() else 0
            gw.start()
            seconds = rng.uniform(0.05, 0.35)
            events: list[tuple[float, str]] = []
            if rng.random() < 0.25:  # the broker goes down or comes back at a random moment
                events.append((rng.uniform(0, seconds), "stop" if broker_up else "start"))
                broker_up = not broker_up
                broker_cycles += 1
            sent = traffic.run(gw, seconds, rng, events, broker)
            gw.kill()
            killed_at = time.time()
            lines = covered_lines(read_from(gw.log_path, offset))
            covered = lines[-1][1] if lines else 0
            if lines:
                at_risk_s.append(killed_at - _epoch(lines[-1][0]))
            must.update(sent[:covered])
            window.update(sent[covered:])
            old_at_kill.update(k for k in sent[covered:]
                               if killed_at - traffic.sent_at[k] > 2 * COMMIT_S)
        if not broker_up:
            broker.start()
        gw.start()
        wait_for(lambda: must <= delivered_keys(collector), 120, "every covered frame")
        settle(collector)
        delivered = delivered_keys(collector)
        frames = len(collector.snapshot())
        lost = len(must - delivered)
        lost_window = len(window - delivered)
        print(f"\n{KILLS} SIGKILLs, {broker_cycles} broker stops/starts, "
              f"{len(traffic.sent_at)} frames injected, {len(must)} covered at a kill, "
              f"{len(delivered)} delivered once or more")
        print(f"lost (covered): {lost}; lost in the last window or never received: "
              f"{lost_window} (of which injected > 2 windows before the kill: "
              f"{len(old_at_kill - delivered)}); duplicates: {frames - len(delivered)}")
        print(f"age of the last commit at the kill: median {statistics.median(at_risk_s):.3f} s, "
              f"max {max(at_risk_s):.3f} s (commit_interval_s = {COMMIT_S})")
    finally:
        collector.close()
        gw.kill()
    assert lost == 0


def delivered_keys(collector: UplinkCollector) -> set[tuple[int, int]]:
    return {key(p) for p in collector.unique_payloads()}


def settle(collector: UplinkCollector, quiet_s: float = 1.5) -> None:
    """Wait until nothing new has arrived for ``quiet_s`` (the backlog has drained)."""
    last, since = -1, time.monotonic()
    while time.monotonic() - since < quiet_s:
        n = len(collector.snapshot())
        if n != last:
            last, since = n, time.monotonic()
        time.sleep(0.1)
