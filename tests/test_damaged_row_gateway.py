"""The real daemon with damaged rows in its buffer: it starts, quarantines them, and
delivers everything else, including later frames of the devices the rows belonged to.

One gateway run fills the buffer during an outage and is killed; the file is then
damaged the way bit flips were seen to damage it (the oldest row's body turned to
TEXT, a middle row's integer turned to REAL, a checksum bit), and a body that is no
UplinkFrame is planted with a valid checksum; a second run starts with the broker up.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from buffer.records import checksum
from gateway.sim.inject import send_inject
from gateway.sim.local_broker import find_mosquitto
from tests.support.broker import MosquittoBroker
from tests.support.buffer_e2e import key, packet
from tests.support.gateway_proc import GatewayProcess, UplinkCollector, wait_for, write_config

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")

DEVICES = 4
PER_DEVICE = 5


def rows_by_seq(path: Path) -> list[tuple[int, object]]:
    conn = sqlite3.connect(path)
    try:
        return [(int(s), d) for s, d in conn.execute("SELECT seq, device FROM frames ORDER BY seq")]
    finally:
        conn.close()


def damage(path: Path) -> dict[int, str]:
    """Damage four rows; returns seq -> what was done."""
    seqs = [s for s, _ in rows_by_seq(path)]
    oldest, middle, flipped, bad_body = seqs[0], seqs[7], seqs[11], seqs[14]
    conn = sqlite3.connect(path)
    conn.execute("UPDATE frames SET body = CAST(body AS TEXT) WHERE seq = ?", (oldest,))
    conn.execute("UPDATE frames SET monotonic_ns = monotonic_ns + 0.25 WHERE seq = ?", (middle,))
    conn.execute("UPDATE frames SET crc = (crc | 1) - (crc & 1) WHERE seq = ?", (flipped,))
    seq, device, received, mono, boot, synced = conn.execute(
        "SELECT f.seq, f.device, f.received_ns, f.monotonic_ns, b.boot_id, f.clock_synced"
        " FROM frames f JOIN boots b ON b.id = f.boot WHERE seq = ?", (bad_body,)).fetchone()
    body = b"\xff\xff not an UplinkFrame"
    conn.execute("UPDATE frames SET body = ?, codec = 0, crc = ? WHERE seq = ?",
                 (body, checksum(seq, device, body, received, mono, boot, synced), seq))
    conn.commit()
    conn.close()
    return {oldest: "oldest body type", middle: "middle int type", flipped: "checksum bit",
            bad_body: "bad body"}


def test_daemon_starts_quarantines_damaged_rows_and_delivers_the_rest(tmp_path: Path) -> None:
    broker = MosquittoBroker(tmp_path / "broker", binary=find_mosquitto())
    broker.start()
    config = write_config(tmp_path, broker.port, buffer="commit_interval_s = 0.2")
    frames = [(d, n) for n in range(PER_DEVICE) for d in range(DEVICES)]
    gw = GatewayProcess(config)
    gw.start()
    try:
        broker.stop()
        for k in frames:
            send_inject(gw.inject_socket, packet(*k))
        path = tmp_path / "buffer.sqlite"
        wait_for(lambda: len(rows_by_seq(path)) == len(frames), 30, "the backlog committed")
    finally:
        gw.kill()
    damaged = damage(path)
    broker.start()
    collector = UplinkCollector(broker.port)
    gw = GatewayProcess(config)
    try:
        gw.start()
        later = [(d, PER_DEVICE) for d in range(DEVICES)]  # every device's next frame
        for k in later:
            send_inject(gw.inject_socket, packet(*k))
        want = len(frames) - len(damaged) + len(later)
        wait_for(lambda: len({key(p) for p in collector.unique_payloads()}) >= want, 60,
                 "every sound frame delivered")
        wait_for(lambda: gw.log().count("buffer_row_quarantined") >= len(damaged), 10,
                 "one line per damaged row")
        assert gw.alive()
    finally:
        collector.close()
        gw.kill()
        broker.stop()
    got = {key(p) for p in collector.unique_payloads()}
    assert set(later) <= got
    assert len(got & set(frames)) == len(frames) - len(damaged)
    log = gw.log()
    assert "Traceback" not in log
    assert log.count("buffer_row_quarantined") == len(damaged)
    conn = sqlite3.connect(path)
    assert sorted(int(s) for (s,) in conn.execute("SELECT seq FROM quarantine")) == sorted(damaged)
    conn.close()
