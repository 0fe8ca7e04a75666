"""The replay feed: a JSON Lines file played into the emulated chip at its fill-level reads.

The chip-level tests drive the real driver against the emulator on a fake clock, so
pacing is checked by counts and stamps, never by waiting; the daemon-level tests run
the production ``Daemon`` with a real broker and send the control datagram on the
real inject socket.
"""

from __future__ import annotations

import asyncio
import json
import struct
import threading
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway.config import Config
from gateway.sim.inject import (
    InjectError,
    InjectServer,
    ReplayControl,
    parse_replay_control,
    send_inject,
)
from gateway.sim.replay import ReplayFeed, ReplayOpenError, open_replay_file
from hal.backends.emulated import open_emulated
from hal.emulator.chip import Sx1302Emulator
from hal.sx1302 import Sx1302Concentrator
from hal.types import COUNTER_MODULO, EU868_DEFAULT_PLAN, RxPacket
from tests.support.fakes import FakeClock
from tests.support.gateway_proc import NetworkServerStandIn
from tests.support.inprocess import (
    broker,  # noqa: F401  (fixture)
    config,  # noqa: F401  (fixture)
    emulator,
    running,
    until,
)

RECORD_BYTES = 23 + 14  # a record's fixed part plus the 14-byte payloads below


def phy(n: int) -> bytes:
    """A distinct 14-byte data uplink (unknown DevAddr: the edge forwards it)."""
    return bytes([0x40]) + struct.pack("<IBH", 0x26011234, 0, n & 0xFFFF) + b"\x01" \
        + n.to_bytes(4, "big") + b"\x00"


def line(n: int, **patch: Any) -> str:
    return json.dumps({"phy_payload": phy(n).hex(), "frequency": 868_100_000, "sf": 7,
                       "rssi": -60, "snr": 7.0, **patch})


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(text + "\n" for text in lines))
    return path


def feed_for(path: Path, rate: float = 0.0, **kwargs: Any) -> ReplayFeed:
    return ReplayFeed(open_replay_file(path), path, rate, **kwargs)


def started_chip(clock: FakeClock) -> tuple[Sx1302Concentrator, Sx1302Emulator]:
    conc, emu = open_emulated(clock=clock)
    conc.start(EU868_DEFAULT_PLAN)
    return conc, emu


def since(later: RxPacket, earlier: RxPacket) -> int:
    """µs between two stamps (the 32-bit counter may wrap between them)."""
    return (later.count_us - earlier.count_us) % COUNTER_MODULO


def frame_numbers(packets: list[RxPacket]) -> list[int]:
    return [int.from_bytes(p.payload[9:13], "big") for p in packets]


# --- at the chip ----------------------------------------------------------------------------

def test_every_frame_of_the_file_arrives_once_in_order_through_a_small_buffer(
        tmp_path: Path) -> None:
    clock = FakeClock()
    conc, emu = started_chip(clock)
    emu.fifo_capacity = 10 * RECORD_BYTES  # ten frames per poll: the rest must wait
    feed = feed_for(write_lines(tmp_path / "f.jsonl", [line(n) for n in range(250)]))
    emu.set_air(feed)
    got: list[RxPacket] = []
    polls = 0
    while not feed.done:
        batch = conc.receive()
        assert len(batch) <= 10  # the buffer held what fitted, the feed the rest
        got += batch
        polls += 1
        clock.t += 0.01
    got += conc.receive()
    assert frame_numbers(got) == list(range(250))
    assert polls >= 25 and emu.fifo_overflows == 0
    assert (feed.frames, feed.rejected, feed.unheard) == (250, 0, 0)
    # the chip kept count of what taking them in cost this thread (benchmarks report it
    # apart); without a feed, fill reads add nothing to it
    spent = emu.air_cpu_ns
    assert spent > 0
    emu.set_air(None)
    for _ in range(20):
        assert conc.receive() == []
    assert emu.air_cpu_ns == spent


def test_a_paced_replay_releases_frames_by_the_clock_and_stamps_their_due_times(
        tmp_path: Path) -> None:
    clock = FakeClock()
    conc, emu = started_chip(clock)
    feed = feed_for(write_lines(tmp_path / "f.jsonl", [line(n) for n in range(30)]), rate=100)
    emu.set_air(feed)
    first = conc.receive()  # the first fill read starts the schedule: line 0 is due
    assert frame_numbers(first) == [0]
    assert conc.receive() == []  # no time passed, nothing more is due
    clock.t += 0.0255
    second = conc.receive()  # lines 1 and 2 fell due at +10 and +20 ms
    assert frame_numbers(second) == [1, 2]
    stamps = [since(p, first[0]) for p in second]
    assert [round(s / 1000) for s in stamps] == [10, 20]  # due times, not the read's time
    assert all(abs(s - 1000 * ms) <= 1 for s, ms in zip(stamps, (10, 20), strict=True))
    clock.t += 0.1
    assert frame_numbers(conc.receive()) == list(range(3, 13))
    clock.t += 1.0
    assert frame_numbers(conc.receive()) == list(range(13, 30))
    assert conc.receive() == [] and feed.done


def test_a_frame_that_waited_for_room_is_stamped_when_room_came(tmp_path: Path) -> None:
    clock = FakeClock()
    conc, emu = started_chip(clock)
    emu.fifo_capacity = RECORD_BYTES  # one frame at a time
    feed = feed_for(write_lines(tmp_path / "f.jsonl", [line(n) for n in range(3)]), rate=100)
    emu.set_air(feed)
    first = conc.receive()
    clock.t += 0.025  # lines 1 and 2 are due; only line 1 fits
    assert frame_numbers(conc.receive()) == [1]
    clock.t += 0.005
    late = conc.receive()
    assert frame_numbers(late) == [2]
    # due at +20 ms, but the buffer was full until the fetch of the poll at +25 ms
    assert round(since(late[0], first[0]) / 1000) == 25


def test_bad_lines_are_logged_skipped_and_counted_while_the_others_arrive(
        tmp_path: Path) -> None:
    clock = FakeClock()
    conc, emu = started_chip(clock)
    lines = [line(0), "{not json", line(1, colour="red"), line(2), "x" * 70_000, "", line(3),
             line(4, sf=13)]
    feed = feed_for(write_lines(tmp_path / "f.jsonl", lines))
    emu.set_air(feed)
    with structlog.testing.capture_logs() as logs:
        got = conc.receive()
        assert conc.receive() == []
    assert frame_numbers(got) == [0, 2, 3]
    rejected = [(e["line"], e["reason"]) for e in logs
                if e["event"] == "inject_replay_line_rejected"]
    assert rejected == [(2, "not_json"), (3, "unknown_field"), (5, "too_long"), (8, "bad_field")]
    finished = [e for e in logs if e["event"] == "inject_replay_finished"]
    assert len(finished) == 1
    assert (finished[0]["frames"], finished[0]["rejected"]) == (3, 4)


def test_rejected_lines_are_logged_up_to_a_cap_and_all_counted(tmp_path: Path) -> None:
    clock = FakeClock()
    conc, emu = started_chip(clock)
    feed = feed_for(write_lines(tmp_path / "f.jsonl", ["[]"] * 30 + [line(0)]), max_logged=5)
    emu.set_air(feed)
    with structlog.testing.capture_logs() as logs:
        assert frame_numbers(conc.receive()) == [0]
        conc.receive()
    events = [e["event"] for e in logs]
    assert events.count("inject_replay_line_rejected") == 5
    assert events.count("inject_replay_lines_not_logged") == 1
    assert feed.rejected == 30


def test_stopping_a_replay_keeps_what_the_chip_took_and_counts_the_rest(tmp_path: Path) -> None:
    clock = FakeClock()
    conc, emu = started_chip(clock)
    feed = feed_for(write_lines(tmp_path / "f.jsonl", [line(n) for n in range(10)]), rate=100)
    emu.set_air(feed)
    conc.receive()
    clock.t += 0.035
    emu.set_air(None)
    emu_kept = conc.receive()  # nothing more is released once the feed is detached
    assert emu_kept == []
    with structlog.testing.capture_logs() as logs:
        feed.stop()
    stopped = [e for e in logs if e["event"] == "inject_replay_stopped"]
    assert len(stopped) == 1 and (stopped[0]["frames"], stopped[0]["left"]) == (1, 9)
    assert feed.done


def test_frames_nobody_listens_to_are_counted_as_unheard(tmp_path: Path) -> None:
    clock = FakeClock()
    conc, emu = started_chip(clock)
    feed = feed_for(write_lines(tmp_path / "f.jsonl",
                                [line(0, frequency=915_000_000), line(1)]))
    emu.set_air(feed)
    assert frame_numbers(conc.receive()) == [1]
    conc.receive()
    assert (feed.frames, feed.unheard) == (2, 1)


# --- the control datagram and the file ------------------------------------------------------

@pytest.mark.parametrize(
    ("obj", "reason"),
    [({"replay": "relative/path.jsonl"}, "bad_field"),
     ({"replay": 7}, "bad_field"),
     ({"replay": "/x.jsonl", "rate": -1}, "bad_field"),
     ({"replay": "/x.jsonl", "rate": "fast"}, "bad_field"),
     ({"replay": "/x.jsonl", "rate": True}, "bad_field"),
     ({"replay": "/x.jsonl", "speed": 2}, "unknown_field")])
def test_bad_control_objects_are_named(obj: dict[str, Any], reason: str) -> None:
    with pytest.raises(InjectError) as info:
        parse_replay_control(obj)
    assert info.value.reason == reason


def test_a_control_object_without_rate_plays_all_at_once() -> None:
    assert parse_replay_control({"replay": "/x.jsonl"}) == ReplayControl(Path("/x.jsonl"), 0.0)


def test_only_regular_files_are_opened(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ReplayOpenError) as info:
        open_replay_file(fifo)  # would block forever if opened as a plain file
    assert info.value.reason == "not_a_file"
    with pytest.raises(ReplayOpenError) as info:
        open_replay_file(tmp_path / "missing.jsonl")
    assert info.value.reason == "unreadable"


def test_an_inject_server_without_a_replay_handler_refuses_control_datagrams(
        tmp_path: Path) -> None:
    got: list[object] = []

    async def scenario() -> None:
        server = InjectServer(tmp_path / "inject.sock", lambda r: got.append(r) is None)
        await server.start()
        send_inject(server.path, {"replay": str(tmp_path / "f.jsonl")})
        for _ in range(100):
            await asyncio.sleep(0.01)
            if server.rejected:
                break
        server.close()
        assert server.rejected == {"replay_unsupported": 1}

    asyncio.run(scenario())
    assert got == []


# --- through the real daemon ----------------------------------------------------------------

def broker_port(config: Config) -> int:
    return int(config.mqtt.server.rsplit(":", 1)[1])


def uplink_numbers(ns: NetworkServerStandIn) -> list[int]:
    return [int.from_bytes(u.phy_payload[9:13], "big") for u in list(ns.uplinks)]


@pytest.mark.usefixtures("mosquitto_binary")
def test_a_replay_reaches_the_network_server_in_order_with_no_loop_work_per_frame(
        config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    count = 400
    replay = write_lines(tmp_path / "frames.jsonl", [line(n) for n in range(count)])
    injected_on: list[str] = []
    real_inject = Sx1302Emulator.inject

    def recording_inject(self: Sx1302Emulator, *args: Any, **kwargs: Any) -> int | None:
        injected_on.append(threading.current_thread().name)
        return real_inject(self, *args, **kwargs)

    monkeypatch.setattr(Sx1302Emulator, "inject", recording_inject)
    socket_path = config.concentrator.emulator.inject_socket
    assert socket_path is not None
    ns = NetworkServerStandIn(broker_port(config))

    async def scenario() -> None:
        async with running(config, ns) as daemon:
            emu = emulator(daemon)
            send_inject(socket_path, {"replay": str(tmp_path / "missing.jsonl")})
            await until(lambda: any(e["event"] == "inject_replay_refused" for e in logs))
            send_inject(socket_path, {"replay": str(replay), "rate": 0})
            send_inject(socket_path, {"replay": str(replay)})  # one at a time: refused
            await until(lambda: len(ns.uplinks) >= count, timeout_s=30)
            await asyncio.sleep(0.2)  # nothing more (no duplicate) arrives
            assert emu.fifo_overflows == 0

    try:
        with structlog.testing.capture_logs() as logs:
            asyncio.run(scenario())
    finally:
        ns.close()
    assert uplink_numbers(ns) == list(range(count))
    # every frame entered the chip on the radio thread, at its fill reads: none on the loop
    assert injected_on == ["radio"] * count
    refused = [e["reason"] for e in logs if e["event"] == "inject_replay_refused"]
    assert refused == ["unreadable", "busy"]
    finished = [e for e in logs if e["event"] == "inject_replay_finished"]
    assert len(finished) == 1 and (finished[0]["frames"], finished[0]["rejected"]) == (count, 0)
    # once let go, one line says what the emulated chip's intake cost the radio thread
    cost = [e for e in logs if e["event"] == "inject_replay_emulator_cpu"]
    assert len(cost) == 1 and cost[0]["frames"] == count and cost[0]["cpu_ms"] > 0


@pytest.mark.usefixtures("mosquitto_binary")
def test_a_replay_cut_short_by_a_stop_delivers_what_the_chip_took(
        config: Config, tmp_path: Path) -> None:
    replay = write_lines(tmp_path / "frames.jsonl", [line(n) for n in range(2000)])
    socket_path = config.concentrator.emulator.inject_socket
    assert socket_path is not None
    ns = NetworkServerStandIn(broker_port(config))

    async def scenario() -> None:
        async with running(config, ns):
            send_inject(socket_path, {"replay": str(replay), "rate": 200})
            await until(lambda: len(ns.uplinks) >= 20)
        # stopped: the buffer delivers what it kept before going OFFLINE

    try:
        with structlog.testing.capture_logs() as logs:
            asyncio.run(scenario())
    finally:
        ns.close()
    stopped = [e for e in logs if e["event"] == "inject_replay_stopped"]
    assert len(stopped) == 1
    taken, left = stopped[0]["frames"], stopped[0]["left"]
    assert taken >= 20 and taken + left == 2000
    assert not any(e["event"] == "inject_replay_finished" for e in logs)
    summary = [e for e in logs if e["event"] == "stopped"]
    assert summary and summary[0]["received"] == taken  # each frame the chip took, no more


@pytest.mark.usefixtures("mosquitto_binary")
def test_replays_one_after_another_each_arrive(config: Config, tmp_path: Path) -> None:
    first = write_lines(tmp_path / "a.jsonl", [line(n) for n in range(20)])
    second = write_lines(tmp_path / "b.jsonl", [line(n) for n in range(20, 50)])
    socket_path = config.concentrator.emulator.inject_socket
    assert socket_path is not None
    ns = NetworkServerStandIn(broker_port(config))

    async def scenario() -> None:
        async with running(config, ns):
            send_inject(socket_path, {"replay": str(first), "rate": 20})
            await until(lambda: len(ns.uplinks) >= 20)
            # at once: the first replay ended as its last frame went into the chip
            send_inject(socket_path, {"replay": str(second), "rate": 400})
            await until(lambda: len(ns.uplinks) >= 50)

    try:
        with structlog.testing.capture_logs() as logs:
            asyncio.run(scenario())
    finally:
        ns.close()
    assert uplink_numbers(ns) == list(range(50))
    assert [e["event"] for e in logs if e["event"].startswith("inject_replay")] == [
        "inject_replay_started", "inject_replay_finished", "inject_replay_emulator_cpu"] * 2


def test_a_replay_asked_for_while_the_daemon_stops_is_refused(tmp_path: Path) -> None:
    from gateway.config import load_config
    from gateway.sim.site import SimSite
    from tests.support.gateway_proc import write_config

    replay = write_lines(tmp_path / "f.jsonl", [line(0)])
    site = SimSite(load_config(write_config(tmp_path, 1883)), started_chip(FakeClock())[1])

    async def scenario() -> None:
        await site.start()
        assert site.server is not None
        send_inject(site.server.path, {"replay": str(replay)})
        site.drain_socket()  # what the daemon does at stop, before its last polls
        site.close()

    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario())
    refused = [e for e in logs if e["event"] == "inject_replay_refused"]
    assert [e["reason"] for e in refused] == ["stopping"]
    assert site.replay is None
