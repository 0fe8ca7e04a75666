"""MqttLink against a real Mosquitto: acks, outages, reconnects, will, credentials.

Each scenario runs in its own event loop (``asyncio.run``); waits are for
conditions (with generous limits), never fixed sleeps.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from chirpstack_api.gw import gw_pb2
from structlog.testing import capture_logs

from packet_forwarder.chirpstack import unmarshal
from packet_forwarder.mqtt_link import MqttLink
from tests.support.broker import (
    MosquittoBroker,
    Subscriber,
    TcpProxy,
    publish_once,
    require_mosquitto,
)
from tests.support.mqtt_harness import GW, TOPICS, Harness, in_thread, run, settings, until


async def publish_and_confirm(h: Harness, sub: Subscriber, payloads: list[bytes]) -> None:
    """Publish every payload on ``event/up``: each is acknowledged True and arrives, in order."""
    results: list[bool] = []
    for p in payloads:
        assert h.link.publish(TOPICS.event("up"), p, on_result=results.append)
    await confirm(sub, results, payloads)


async def confirm(sub: Subscriber, results: list[bool], payloads: list[bytes]) -> None:
    """Every published payload was acknowledged True and arrived, in order."""
    await until(lambda: len(results) == len(payloads), f"{len(payloads)} acks")
    assert results == [True] * len(payloads)
    got = await in_thread(lambda: sub.wait_for(lambda m: len(m) >= len(payloads)))
    assert [m.payload for m in got] == payloads


def conn_states(sub: Subscriber) -> list[int]:
    return [unmarshal(m.payload, gw_pb2.ConnState).state for m in sub.snapshot()]


ONLINE, OFFLINE = gw_pb2.ConnState.State.ONLINE, gw_pb2.ConnState.State.OFFLINE


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_publish_is_acknowledged_and_delivered(broker: MosquittoBroker, protocol: str) -> None:
    sub = Subscriber(broker.port, TOPICS.event("up"))

    async def scenario() -> None:
        h = Harness(settings(broker.url, protocol=protocol))
        await h.start()
        await publish_and_confirm(h, sub, [bytes([i]) * 20 for i in range(10)])
        await h.stop()
        assert h.changes == [True, False]

    try:
        run(scenario())
    finally:
        sub.close()


def test_online_retained_after_connect_and_offline_after_stop(broker: MosquittoBroker) -> None:
    async def scenario() -> None:
        h = Harness(settings(broker.url), marshaler="json")
        await h.start()
        sub = Subscriber(broker.port, TOPICS.state("conn"))
        try:
            got = await in_thread(lambda: sub.wait_for(lambda m: len(m) >= 1))
            assert got[0].retain and b"gatewayId" in got[0].payload  # JSON as configured
            assert unmarshal(got[0].payload, gw_pb2.ConnState).state == ONLINE
            await h.stop()
            await in_thread(lambda: sub.wait_for(lambda m: len(m) >= 2))
        finally:
            sub.close()
        late = Subscriber(broker.port, TOPICS.state("conn"))  # sees only the retained state
        try:
            got = await in_thread(lambda: late.wait_for(lambda m: len(m) >= 1))
            assert got[0].retain
            assert unmarshal(got[0].payload, gw_pb2.ConnState) == gw_pb2.ConnState(
                gateway_id=GW, state=OFFLINE)
        finally:
            late.close()

    run(scenario())


def test_broker_kill_fails_in_flight_once_then_reconnects_and_resubscribes(
        broker: MosquittoBroker) -> None:
    async def scenario() -> None:
        h = Harness(settings(broker.url))
        await h.start()
        await until(lambda: h.link.can_publish(), "window open")
        broker.freeze()  # PUBACKs can no longer come: everything below stays in flight
        results: dict[int, list[bool]] = {i: [] for i in range(25)}
        for i in range(25):
            assert h.link.publish(TOPICS.event("up"), b"x%d" % i, on_result=results[i].append)
        broker.kill()
        await until(lambda: all(results.values()), "every in-flight publish reported")
        assert not h.link.connected and not h.link.can_publish()
        assert not h.link.publish(TOPICS.event("up"), b"while down")
        broker.start()  # same port
        await until(lambda: h.changes == [True, False, True], "reconnect")
        down = f"eu868/gateway/{GW}/command/down"
        await in_thread(lambda: publish_once(broker.port, down, b"downlink-1"))
        await until(lambda: bool(h.commands), "command after restart")
        assert h.commands == [("down", b"downlink-1")]
        await h.stop()
        # exactly once each, even after reconnect and stop
        assert all(r == [False] for r in results.values())

    run(scenario())


def test_no_hidden_resend_after_reconnect(broker: MosquittoBroker) -> None:
    """paho re-sends unacknowledged QoS 1 messages after a reconnect; the link must not."""
    sub = Subscriber(broker.port, TOPICS.event("up"))

    async def scenario() -> None:
        proxy = TcpProxy(broker.port)
        await proxy.start()
        h = Harness(settings(proxy.url))
        await h.start()
        proxy.black_hole = True  # nothing reaches the broker, no PUBACK comes back
        failed: list[bool] = []
        for i in range(5):
            assert h.link.publish(TOPICS.event("up"), b"lost-%d" % i, on_result=failed.append)
        proxy.black_hole = False
        proxy.cut()
        await until(lambda: len(failed) == 5, "in-flight failures")
        await until(lambda: h.changes == [True, False, True], "reconnect")
        marker: list[bool] = []
        assert h.link.publish(TOPICS.event("up"), b"marker", on_result=marker.append)
        await until(lambda: marker == [True], "marker ack")
        # A resend would have been written right after CONNACK, before the marker.
        got = await in_thread(lambda: sub.wait_for(lambda m: any(x.payload == b"marker"
                                                                for x in m)))
        assert [m.payload for m in got] == [b"marker"]
        assert failed == [False] * 5
        await h.stop()
        await proxy.close()

    try:
        run(scenario())
    finally:
        sub.close()


def test_last_will_offline_when_connection_dies(broker: MosquittoBroker) -> None:
    sub = Subscriber(broker.port, TOPICS.state("conn"))

    async def scenario() -> None:
        proxy = TcpProxy(broker.port)
        await proxy.start()
        h = Harness(settings(proxy.url))
        await h.start()
        await in_thread(lambda: sub.wait_for(lambda m: len(m) >= 1))
        proxy.cut()  # no DISCONNECT reaches the broker: it must publish the will
        await in_thread(lambda: sub.wait_for(lambda m: len(m) >= 3))
        assert conn_states(sub)[:3] == [ONLINE, OFFLINE, ONLINE]  # will, then back online
        assert sub.snapshot()[1].payload == gw_pb2.ConnState(
            gateway_id=GW, state=OFFLINE).SerializeToString()
        await h.stop()
        await proxy.close()

    try:
        run(scenario())
    finally:
        sub.close()


def test_half_open_line_is_detected_by_keepalive(broker: MosquittoBroker) -> None:
    async def scenario() -> None:
        proxy = TcpProxy(broker.port)
        await proxy.start()
        h = Harness(settings(proxy.url, keepalive_s=1))
        await h.start()
        results: list[bool] = []
        proxy.black_hole = True  # the socket stays open; only keep-alive can notice
        assert h.link.publish(TOPICS.event("up"), b"into the void", on_result=results.append)
        await until(lambda: results == [False], "keep-alive timeout")
        assert h.changes[:2] == [True, False]
        proxy.black_hole = False
        proxy.cut()
        await until(lambda: h.link.connected, "reconnect after the line heals")
        await h.stop()
        await proxy.close()

    run(scenario())


def test_window_limits_in_flight_and_ready_fires_when_it_frees(
        broker: MosquittoBroker) -> None:
    async def scenario() -> None:
        h = Harness(settings(broker.url, max_inflight=3))
        ready: list[int] = []
        h.link.add_ready_listener(lambda: ready.append(1))
        await h.start()
        await until(lambda: h.link.can_publish() and bool(ready), "ready after connect")
        # The retained ONLINE publish shares the window: let its PUBACK land first.
        await until(lambda: not h.link._pending, "ONLINE acknowledged")
        broker.freeze()
        results: list[bool] = []
        accepted = [h.link.publish(TOPICS.event("up"), b"%d" % i, on_result=results.append,
                                   bulk=True) for i in range(5)]
        assert accepted == [True, True, True, False, False]
        assert not h.link.can_publish()
        # the control lane (acks, stats) is not held by a full bulk window
        assert h.link.publish(TOPICS.event("ack"), b"ack", on_result=results.append)
        before = len(ready)
        broker.thaw()
        await until(lambda: results == [True] * 4, "acks")
        await until(lambda: len(ready) > before, "ready after the window freed")
        assert h.link.can_publish()
        await h.stop()

    run(scenario())


def test_publish_rejected_by_acl_reports_false(tmp_path: Path) -> None:
    """MQTT v5 PUBACK carries "not authorised"; on_result must say False, not True."""
    acl = f"topic readwrite {TOPICS.state('conn')}\ntopic read #\n"
    with MosquittoBroker(tmp_path / "b", binary=require_mosquitto(), acl=acl) as b:
        async def scenario() -> None:
            h = Harness(settings(b.url))
            await h.start()
            results: list[bool] = []
            with capture_logs() as logs:
                assert h.link.publish(TOPICS.event("up"), b"denied", on_result=results.append)
                await until(lambda: bool(results), "PUBACK")
            assert results == [False]
            assert any(e["event"] == "mqtt_publish_rejected" for e in logs)
            await h.stop()

        run(scenario())


def test_bad_credentials_are_logged_and_retried(tmp_path: Path) -> None:
    with MosquittoBroker(tmp_path / "b", binary=require_mosquitto(),
                         users={"gw": "right"}) as b:
        async def scenario() -> None:
            h = Harness(settings(b.url, username="gw", password="wrong"))
            with capture_logs() as logs:
                task = asyncio.create_task(h.link.run())
                await until(lambda: sum(e.get("reason") == "refused_by_broker"
                                        for e in logs) >= 3, "three refused attempts")
                assert not task.done()  # still retrying, no crash
                assert not h.link.connected and h.changes == []
                await h.link.stop()
                await asyncio.wait_for(task, 10)
            refused = [e for e in logs if e["event"] == "mqtt_connect_failed"]
            assert refused[0]["log_level"] == "warning"
            assert "Not authorized" in refused[0]["error"] or "authori" in refused[0]["error"]

        run(scenario())


def test_right_credentials_connect(tmp_path: Path) -> None:
    with MosquittoBroker(tmp_path / "b", binary=require_mosquitto(),
                         users={"gw": "right"}) as b:
        async def scenario() -> None:
            h = Harness(settings(b.url, username="gw", password="right"))
            await h.start()
            await h.stop()

        run(scenario())


def test_unreachable_broker_keeps_retrying_until_stop(tmp_path: Path) -> None:
    b = MosquittoBroker(tmp_path / "b", binary=require_mosquitto())  # never started

    async def scenario() -> None:
        h = Harness(settings(b.url))
        with capture_logs() as logs:
            task = h.task = asyncio.create_task(h.link.run())
            await until(lambda: sum(e["event"] == "mqtt_connect_failed" for e in logs) >= 2,
                        "retries")
            b.start()
            await until(lambda: h.link.connected, "connect once the broker is up")
        await h.stop()
        assert task.done()

    try:
        run(scenario())
    finally:
        b.stop()


def test_command_handler_errors_do_not_break_the_link(broker: MosquittoBroker) -> None:
    async def scenario() -> None:
        seen: list[str] = []

        def handler(name: str, payload: bytes) -> None:
            seen.append(name)
            raise RuntimeError("handler bug")

        link = MqttLink(settings(broker.url), TOPICS, on_command=handler)
        task = asyncio.create_task(link.run())
        await until(lambda: link.connected, "connect")
        cmd = TOPICS.command_filter().replace("+", "{}")
        with capture_logs() as logs:
            await in_thread(lambda: publish_once(broker.port, cmd.format("config"), b"\xff"))
            await in_thread(lambda: publish_once(broker.port, cmd.format("exec"), b""))
            await until(lambda: len(seen) == 2, "both commands")
        assert seen == ["config", "exec"]
        assert sum(e["event"] == "mqtt_callback_failed" for e in logs) == 2
        assert link.connected
        await link.stop()
        await asyncio.wait_for(task, 10)

    run(scenario())



def test_publishing_from_inside_on_result_works(broker: MosquittoBroker) -> None:
    """The buffer may send the next record from the previous one's ack callback."""
    async def scenario() -> None:
        h = Harness(settings(broker.url))
        await h.start()
        acks: list[bool] = []

        def next_one(ok: bool) -> None:
            acks.append(ok)
            if len(acks) < 50:
                assert h.link.publish(TOPICS.event("up"), b"%d" % len(acks), on_result=next_one)

        assert h.link.publish(TOPICS.event("up"), b"0", on_result=next_one)
        await until(lambda: len(acks) == 50, "chain of 50")
        assert acks == [True] * 50
        await h.stop()

    run(scenario())



def test_a_burst_bigger_than_the_socket_buffer_goes_out_whole_and_in_order(
        broker: MosquittoBroker) -> None:
    """Publishes of one loop turn are written at the end of the turn; what the socket
    cannot take then waits for it to be writable. Nothing is lost or reordered."""
    sub = Subscriber(broker.port, TOPICS.event("up"))

    async def scenario() -> None:
        h = Harness(settings(broker.url, max_inflight=300))
        await h.start()
        session = h.link._session
        assert session is not None
        assert session.client.on_log is None  # paho formats no line per packet once up
        # ~9 MB published in one loop turn
        await publish_and_confirm(h, sub, [bytes([i % 256]) * 30_000 for i in range(300)])
        await h.stop()

    try:
        run(scenario())
    finally:
        sub.close()


def test_held_writes_go_out_together_at_release_in_the_same_turn(broker: MosquittoBroker) -> None:
    """A batch published between hold_writes and release_writes stays queued (no write
    pass scheduled) and is written by the (outermost) release itself."""
    sub = Subscriber(broker.port, TOPICS.event("up"))

    async def scenario() -> None:
        h = Harness(settings(broker.url))
        await h.start()
        session = h.link._session
        assert session is not None
        results: list[bool] = []
        payloads = [bytes([i]) * 50 for i in range(10)]
        h.link.hold_writes()
        h.link.hold_writes()  # nested: only the outermost release writes
        for p in payloads:
            assert h.link.publish(TOPICS.event("up"), p, on_result=results.append, bulk=True)
        h.link.release_writes()
        assert session.client.want_write() and not session.write_due
        h.link.release_writes()
        assert not session.client.want_write()  # written by the release, not a later turn
        await confirm(sub, results, payloads)
        await h.stop()

    try:
        run(scenario())
    finally:
        sub.close()


def test_a_held_burst_bigger_than_the_socket_buffer_still_goes_out_whole(
        broker: MosquittoBroker) -> None:
    sub = Subscriber(broker.port, TOPICS.event("up"))

    async def scenario() -> None:
        h = Harness(settings(broker.url, max_inflight=200))
        await h.start()
        results: list[bool] = []
        payloads = [bytes([i % 256]) * 30_000 for i in range(200)]  # ~6 MB
        h.link.hold_writes()
        try:
            for p in payloads:
                assert h.link.publish(TOPICS.event("up"), p, on_result=results.append)
        finally:
            h.link.release_writes()
        await confirm(sub, results, payloads)
        await h.stop()

    try:
        run(scenario())
    finally:
        sub.close()


def test_ready_listeners_hear_of_freed_slots_in_the_read_that_freed_them(
        broker: MosquittoBroker) -> None:
    """The ready notification follows the PUBACKs within the same loop turn: whatever
    the result callback schedules for the next turn runs after it."""

    async def scenario() -> None:
        h = Harness(settings(broker.url, max_inflight=1))
        await h.start()
        loop = asyncio.get_running_loop()
        events: list[str] = []
        h.link.add_ready_listener(lambda: events.append("ready"))

        def on_result(ok: bool) -> None:
            events.append(f"result {ok}")
            loop.call_soon(events.append, "next turn")

        assert h.link.publish(TOPICS.event("up"), b"x", on_result=on_result, bulk=True)
        assert not h.link.can_publish()  # the window of one is full until the PUBACK
        await until(lambda: "next turn" in events, "the PUBACK")
        assert events == ["result True", "ready", "next turn"]
        await h.stop()

    run(scenario())
