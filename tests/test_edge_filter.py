"""The edge filter stage: policy per frame class, counters, replays, shared DevAddrs,
bounded accounting under floods, persistence of frame counters across restarts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from packet_forwarder.edge_filter import (
    EdgeFilter,
    EdgePolicy,
    devaddr_network,
    netid_network,
)
from packet_forwarder.keystore import KeyStore, StoreDamagedError
from packet_forwarder.lorawan import build_join_request
from tests.support.fakes import FakeClock
from tests.support.keystore import Device, make_device, open_store

SEED = 11


def filter_with(
    tmp_path: Path, devices: list[tuple[Device, int | None]], policy: EdgePolicy | None = None,
    *, roots: list[Device] | None = None, clock: FakeClock | None = None,
) -> EdgeFilter:
    store = open_store(tmp_path, track_shutdown=True)
    store.apply([d.session(f) for d, f in devices], [d.root() for d in roots or []])
    return EdgeFilter(policy or EdgePolicy(), store, now=clock or FakeClock())


@pytest.fixture
def rng() -> random.Random:
    return random.Random(SEED)


def test_known_1_0_device_with_valid_mic_is_forwarded(tmp_path: Path, rng: random.Random) -> None:
    dev = make_device(rng)
    edge = filter_with(tmp_path, [(dev, None)])
    verdict = edge.check(dev.uplink(3))
    assert (verdict.forward, verdict.reason, verdict.fcnt32) == (True, "known_valid", 3)
    assert (verdict.dev_addr, verdict.dev_eui) == (dev.addr_hex, dev.eui_hex)
    assert verdict.flags == frozenset()


def test_known_1_1_device_is_checked_on_the_f_half(tmp_path: Path, rng: random.Random) -> None:
    dev = make_device(rng, "1.1.0")
    edge = filter_with(tmp_path, [(dev, None)])
    good = dev.uplink(1)
    assert edge.check(good).reason == "known_valid"
    # The S half (MIC bytes 0..1) depends on TxDr/TxCh the gateway does not know: not checked.
    s_changed = dev.uplink(2)
    s_changed = s_changed[:-4] + bytes([s_changed[-4] ^ 0xFF]) + s_changed[-3:]
    assert edge.check(s_changed).forward
    f_changed = dev.uplink(3)
    f_changed = f_changed[:-1] + bytes([f_changed[-1] ^ 0x01])
    verdict = edge.check(f_changed)
    assert (verdict.forward, verdict.reason) == (False, "bad_mic")


def test_bad_mic_policy(tmp_path: Path, rng: random.Random) -> None:
    dev = make_device(rng)
    forger = make_device(rng, dev_addr=dev.dev_addr)
    edge = filter_with(tmp_path, [(dev, None)])
    assert edge.check(forger.uplink(5)).reason == "bad_mic"
    assert not edge.check(forger.uplink(6)).forward
    lenient = EdgeFilter(EdgePolicy(bad_mic="forward"), None)
    lenient.index.replace_all(edge.store.load())  # type: ignore[union-attr]
    verdict = lenient.check(forger.uplink(5))
    assert (verdict.forward, verdict.reason) == (True, "bad_mic")
    assert verdict.flags == {"bad_mic"}


@pytest.mark.parametrize(
    ("policy", "forward", "reason"),
    [
        (EdgePolicy(), True, "unknown_devaddr"),
        (EdgePolicy(unknown_devaddr="drop"), False, "unknown_devaddr"),
        (EdgePolicy(unknown_devaddr="netid_allowlist", netid_allowlist=(0x000013,)),
         True, "netid_allowed"),
        (EdgePolicy(unknown_devaddr="netid_allowlist", netid_allowlist=(0x000024,)),
         False, "netid_not_allowed"),
    ],
)
def test_unknown_devaddr_policy(
    rng: random.Random, policy: EdgePolicy, forward: bool, reason: str
) -> None:
    stranger = make_device(rng, dev_addr=bytes.fromhex("26011f2a"))  # a TTN (NetID 13) address
    verdict = EdgeFilter(policy, None).check(stranger.uplink(1))
    assert (verdict.forward, verdict.reason, verdict.dev_addr) == (forward, reason, "26011f2a")


def test_devaddr_netid_mapping() -> None:
    assert devaddr_network(bytes.fromhex("26011f2a")) == netid_network(0x000013)
    assert devaddr_network(bytes.fromhex("48000001")) == netid_network(0x000024)  # Helium
    # Type 6: prefix 1111110, then a 15-bit NwkID (0x0053 for NetID 0xC00053).
    assert devaddr_network(bytes.fromhex("fc014c01")) == netid_network(0xC00053) == (6, 0x53)
    assert devaddr_network(bytes.fromhex("fc014c01")) != netid_network(0xC00054)
    assert devaddr_network(bytes.fromhex("ff000000")) is None


def test_join_request_policy(rng: random.Random, tmp_path: Path) -> None:
    dev, other = make_device(rng), make_device(rng)
    allow = EdgePolicy(join_request="joineui_allowlist", joineui_allowlist=(dev.join_eui.hex(),))
    edge = filter_with(tmp_path, [], allow, roots=[dev])
    assert edge.check(dev.join_request()).reason == "join_request_valid"
    verdict = edge.check(other.join_request())
    assert (verdict.forward, verdict.reason, verdict.dev_eui) == (
        False, "joineui_not_allowed", other.eui_hex)
    forged = build_join_request(join_eui=dev.join_eui, dev_eui=dev.dev_eui, dev_nonce=9,
                                key=bytes(16))
    assert (edge.check(forged).forward, edge.check(forged).reason) == (False, "bad_mic")
    open_door = EdgeFilter(EdgePolicy(), None)
    assert open_door.check(other.join_request()).reason == "join_request"


@pytest.mark.parametrize("action", ["forward", "drop"])
def test_proprietary_policy(action: str) -> None:
    edge = EdgeFilter(EdgePolicy(proprietary=action), None)  # type: ignore[arg-type]
    verdict = edge.check(bytes([0xE0]) + b"vendor")
    assert (verdict.forward, verdict.reason) == (action == "forward", "proprietary")


def test_invalid_and_downlink_frames(rng: random.Random) -> None:
    edge = EdgeFilter(EdgePolicy(), None)
    assert edge.check(b"\x40\x01").reason == "invalid_too_short"
    assert edge.check(b"").reason == "invalid_empty"
    downlink = bytes([0x60]) + make_device(rng).uplink(1)[1:]
    assert edge.check(downlink).reason == "not_uplink"
    assert edge.stats()["dropped"] == {"invalid_too_short": 1, "invalid_empty": 1,
                                       "not_uplink": 1}


def test_replay_is_dropped_or_flagged(tmp_path: Path, rng: random.Random) -> None:
    dev = make_device(rng)
    edge = filter_with(tmp_path, [(dev, None)])
    old, new = dev.uplink(10), dev.uplink(11)
    assert edge.check(old).forward and edge.check(new).forward
    verdict = edge.check(old)
    assert (verdict.forward, verdict.reason, verdict.fcnt32) == (False, "replay", 10)
    edge_flag = EdgeFilter(EdgePolicy(replay="flag"), None)
    edge_flag.index.replace_all(edge.store.load())  # type: ignore[union-attr]
    edge_flag.check(new)
    verdict = edge_flag.check(old)
    assert (verdict.forward, verdict.reason) == (True, "replay")
    assert verdict.flags == {"replay"}


def test_same_counter_repeats_are_retransmissions_up_to_a_limit(
    tmp_path: Path, rng: random.Random
) -> None:
    dev = make_device(rng)
    edge = filter_with(tmp_path, [(dev, None)], EdgePolicy(max_retransmissions=2))
    frame = dev.uplink(4)
    assert edge.check(frame).flags == frozenset()
    assert edge.check(frame).flags == {"retransmission"}
    assert edge.check(frame).flags == {"retransmission"}
    assert edge.check(frame).reason == "replay"
    assert edge.check(dev.uplink(5)).reason == "known_valid"
    assert edge.check(dev.uplink(5)).flags == {"retransmission"}


def test_fcnt_roll_over_of_the_16_bits(tmp_path: Path, rng: random.Random) -> None:
    dev = make_device(rng)
    edge = filter_with(tmp_path, [(dev, 65534)])  # ChirpStack's f_cnt_up: next expected
    for fcnt in (65534, 65535, 65536, 65537, 65537 + 16000):
        verdict = edge.check(dev.uplink(fcnt))
        assert (verdict.reason, verdict.fcnt32) == ("known_valid", fcnt)
    assert edge.check(dev.uplink(65537)).reason == "replay"


def test_large_forward_gap_is_accepted_and_flagged(tmp_path: Path, rng: random.Random) -> None:
    dev = make_device(rng)
    edge = filter_with(tmp_path, [(dev, 100)])
    verdict = edge.check(dev.uplink(100 + 30000))
    assert (verdict.forward, verdict.fcnt32) == (True, 30100)
    assert verdict.flags == {"fcnt_gap"}


def test_shared_devaddr_tries_every_candidate(tmp_path: Path, rng: random.Random) -> None:
    a = make_device(rng)
    b = make_device(rng, "1.1.0", dev_addr=a.dev_addr)
    c = make_device(rng, dev_addr=a.dev_addr)
    stranger = make_device(rng, dev_addr=a.dev_addr)
    edge = filter_with(tmp_path, [(a, 50), (b, None), (c, 7)])
    assert edge.check(a.uplink(60)).dev_eui == a.eui_hex
    assert edge.check(b.uplink(1)).dev_eui == b.eui_hex
    assert edge.check(c.uplink(8)).dev_eui == c.eui_hex
    assert edge.check(a.uplink(61)).fcnt32 == 61
    assert edge.check(stranger.uplink(1)).reason == "bad_mic"
    assert edge.check(c.uplink(8)).flags == {"retransmission"}


def test_counters_survive_a_clean_restart(tmp_path: Path, rng: random.Random) -> None:
    dev = make_device(rng)
    edge = filter_with(tmp_path, [(dev, None)])
    frames = [dev.uplink(n) for n in range(5)]
    for frame in frames:
        assert edge.check(frame).forward
    edge.close()
    reopened = EdgeFilter.open(EdgePolicy(), tmp_path / "keys.sqlite", tmp_path / "master.key")
    assert reopened.check(frames[2]).reason == "replay"
    assert reopened.check(frames[4]).flags == {"retransmission"}
    assert reopened.check(dev.uplink(5)).flags == frozenset()


def test_after_a_crash_counters_are_one_flush_old_and_frames_flagged(
    tmp_path: Path, rng: random.Random
) -> None:
    dev = make_device(rng)
    edge = filter_with(tmp_path, [(dev, None)])
    for n in range(3):
        edge.check(dev.uplink(n))
    assert edge.flush() == 1
    unflushed = dev.uplink(3)
    edge.check(unflushed)
    edge.store._conn.close()  # type: ignore[union-attr]  # power cut: no final flush, no close
    reopened = EdgeFilter.open(EdgePolicy(), tmp_path / "keys.sqlite", tmp_path / "master.key")
    assert reopened.check(dev.uplink(1)).reason == "replay"  # flushed state holds
    verdict = reopened.check(unflushed)  # inside the lost window: passes once, flagged
    assert (verdict.forward, verdict.flags) == (True, frozenset({"fcnt_stale"}))
    assert reopened.check(dev.uplink(4)).flags == frozenset()


def test_flush_writes_only_what_moved_and_retries_after_failure(
    tmp_path: Path, rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = make_device(rng), make_device(rng)
    edge = filter_with(tmp_path, [(a, None), (b, None)])
    assert edge.flush() == 0
    edge.check(a.uplink(1))
    edge.check(a.uplink(2))
    store = edge.store
    assert store is not None
    real = store.save_fcnts

    def broken(batch: object) -> int:
        raise StoreDamagedError("disk full")

    monkeypatch.setattr(store, "save_fcnts", broken)
    with pytest.raises(StoreDamagedError):
        edge.flush()
    monkeypatch.setattr(store, "save_fcnts", real)
    assert edge.flush() == 1
    assert edge.stats()["flush_failures"] == 1
    assert {s.session.dev_eui: s.session.last_fcnt for s in store.load().sessions} == {
        a.eui_hex: 2, b.eui_hex: None}


def test_flush_picks_up_changes_made_by_another_process(
    tmp_path: Path, rng: random.Random
) -> None:
    a, newcomer = make_device(rng), make_device(rng)
    edge = filter_with(tmp_path, [(a, None)])
    edge.check(a.uplink(9))
    assert edge.check(newcomer.uplink(1)).reason == "unknown_devaddr"
    cli = KeyStore(tmp_path / "keys.sqlite", tmp_path / "master.key")
    cli.apply([newcomer.session()])
    cli.close()
    edge.flush()
    assert edge.check(newcomer.uplink(2)).reason == "known_valid"
    assert edge.check(a.uplink(9)).flags == {"retransmission"}  # memory counter kept


def test_flood_of_random_devaddrs_keeps_memory_and_logs_bounded(rng: random.Random) -> None:
    clock = FakeClock()
    edge = EdgeFilter(EdgePolicy(unknown_devaddr="drop"), None, now=clock,
                      max_tracked_devices=100)
    frames = [make_device(rng, dev_addr=rng.randbytes(4)).uplink(1) for _ in range(3000)]
    with capture_logs() as logs:
        for frame in frames:
            assert not edge.check(frame).forward
        clock.now += 61
        edge.check(frames[0])
    stats = edge.stats()
    assert edge.counters.tracked() <= 100
    assert stats["dropped"] == {"unknown_devaddr": 3001}
    tracked = sum(e["count"] for e in edge.counters.top_drops(10_000))  # type: ignore[misc]
    assert tracked + edge.counters.dropped_other["unknown_devaddr"] == 3001
    lines = [e for e in logs if e["event"] == "edge_drop"]
    summaries = [e for e in logs if e["event"] == "edge_drop_suppressed"]
    assert len(lines) <= 21
    assert [s["count"] for s in summaries] == [3000 - 20]
    assert lines[0].keys() >= {"reason", "dev_addr", "fcnt", "suppressed"}


def test_one_devaddr_logs_once_a_minute_with_suppressed_count(rng: random.Random) -> None:
    clock = FakeClock()
    edge = EdgeFilter(EdgePolicy(unknown_devaddr="drop"), None, now=clock)
    frame = make_device(rng).uplink(1)
    with capture_logs() as logs:
        for _ in range(100):
            edge.check(frame)
            clock.now += 0.5
        clock.now += 20
        edge.check(frame)
    lines = [e for e in logs if e["event"] == "edge_drop"]
    assert [line["suppressed"] for line in lines] == [0, 99]
    assert lines[0]["reason"] == "unknown_devaddr"


def test_keys_never_reach_logs_reprs_or_stats(tmp_path: Path, rng: random.Random) -> None:
    devices = [make_device(rng), make_device(rng, "1.1.0")]
    secrets = [h for d in devices for h in d.all_secret_hex()]
    with capture_logs() as logs:
        edge = filter_with(tmp_path, [(d, None) for d in devices], roots=devices)
        for dev in devices:
            edge.check(dev.uplink(1))
            edge.check(dev.uplink(1)[:-1] + b"\0")
            edge.check(dev.join_request(key=bytes(16)))
        edge.flush()
        edge.close()
    text = repr(logs) + repr(edge) + json.dumps(edge.stats()) + repr(edge.store)
    text += repr(edge.index.lookup(devices[0].dev_addr)) + repr(edge.index.root(devices[0].eui_hex))
    text += repr(devices[0].session()) + repr(edge.check(devices[0].uplink(2)))
    for key_hex in secrets:
        assert key_hex not in text.lower()


def test_policy_validation_and_config_mapping() -> None:
    with pytest.raises(ValueError, match="unknown_devaddr"):
        EdgePolicy(unknown_devaddr="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="24 bits"):
        EdgePolicy(netid_allowlist=(1 << 24,))
    with pytest.raises(ValueError, match="unknown key"):
        EdgePolicy.from_mapping({"bad_mic": "drop", "colour": "blue"})
    policy = EdgePolicy.from_mapping({
        "unknown_devaddr": "netid_allowlist", "netid_allowlist": ["000013", 0x24],
        "join_request": "joineui_allowlist", "joineui_allowlist": ["70-B3-D5-7E-D0-00-00-01"],
    })
    assert policy.netid_allowlist == (0x13, 0x24)
    assert policy.joineui_allowlist == ("70b3d57ed0000001",)
