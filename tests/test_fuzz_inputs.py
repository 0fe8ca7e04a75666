"""Fuzz suite (issue 16): every decoder an outsider can reach, fed the regression seeds as
they are, mutated, and random bytes. The property: nothing escapes the handler, and a
refusal is at most one log line, of one line.

``make test`` spends a bounded time here (``FUZZ_EXAMPLES``, default 30 examples per
property); CI sets ``FUZZ_EXAMPLES`` higher. Hypothesis keeps failures it found in its
database and replays them first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from common.toml_reader import ConfigError
from gateway.config import load_config, load_config_text
from gateway.sim.inject import InjectError, parse_inject_datagram
from gateway.status_server import StatusServer
from packet_forwarder.downlink.checks import TxLimits
from packet_forwarder.downlink.clock import RadioNow
from packet_forwarder.downlink.config_cmd import parse_gateway_configuration
from packet_forwarder.downlink.gps import GpsReference
from packet_forwarder.downlink.handler import DownlinkHandler
from packet_forwarder.downlink.jit import JitQueue
from packet_forwarder.regions import load_region
from tests.fuzz_seeds import (
    CONFIG_SEEDS,
    DOWN_SEEDS,
    GPS_START_US,
    INJECT_SEEDS,
    KEYS_SEEDS,
    PLAN_PAYLOADS,
    STATUS_SEEDS,
    UNACKED_DOWN_IDS,
)
from tests.support.gateway_proc import GATEWAY_ID
from tests.support.radio import radio_fits
from tests.test_key_sync import Rig

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
EU = load_region("EU868")
NOW = RadioNow(2_000_000, 1, 0)


def mutations(seeds: dict[str, bytes]) -> st.SearchStrategy[bytes]:
    """A seed with a few bytes flipped, inserted, deleted or its tail cut; or random bytes."""
    edits = st.lists(st.tuples(st.sampled_from(("flip", "insert", "delete", "cut")),
                               st.integers(0, 1 << 20), st.integers(0, 255)), max_size=6)

    def apply(seed: bytes, ops: list[tuple[str, int, int]]) -> bytes:
        data = bytearray(seed)
        for op, where, value in ops:
            at = where % (len(data) + 1)
            if op == "insert":
                data[at:at] = bytes([value])
            elif data and op == "flip":
                data[at % len(data)] ^= 1 << (value % 8)
            elif data and op == "delete":
                del data[at % len(data)]
            elif op == "cut":
                del data[at:]
        return bytes(data)

    seeded = st.tuples(st.sampled_from(sorted(seeds.values())), edits).map(lambda t: apply(*t))
    return seeded | st.binary(max_size=512)


class LineCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def counted_lines() -> Iterator[Callable[[], list[str]]]:
    """The structlog lines logged inside the block, rendered as ``key=value`` text."""
    with capture_logs() as events:
        yield lambda: [" ".join(f"{k}={v}" for k, v in e.items()) for e in events]


def one_line_at_most(lines: list[str]) -> None:
    assert len(lines) <= 1, lines[:3]
    assert all("\n" not in line and "Traceback" not in line for line in lines)


def downlink_handler() -> tuple[DownlinkHandler, LineCounter]:
    counter = LineCounter()
    logger = logging.Logger("fuzz.downlink")
    logger.addHandler(counter)
    handler = DownlinkHandler(gateway_id=GATEWAY_ID, region=EU, queue=JitQueue(),
                              duty_cycle=None, limits=TxLimits(), log=logger)
    handler.gps = GpsReference(count_us=NOW.count_us, gps_time_us=GPS_START_US)
    return handler, counter


def check_down(payload: bytes) -> None:
    handler, counter = downlink_handler()
    result = handler.handle(payload, NOW)
    one_line_at_most(counter.messages)
    if result.ack is not None:
        assert len(result.ack.items) == max(1, len(result.outcomes))
        assert result.ack_payload() is not None


@pytest.mark.parametrize("name", sorted(DOWN_SEEDS))
def test_down_seed(name: str) -> None:
    check_down(DOWN_SEEDS[name])
    handler, _ = downlink_handler()
    result = handler.handle(DOWN_SEEDS[name], NOW)
    assert result.scheduled is None  # every seed is a refusal
    assert (result.ack is None) == (result.downlink_id in UNACKED_DOWN_IDS)


@FUZZ
@given(mutations(DOWN_SEEDS))
def test_fuzz_command_down(payload: bytes) -> None:
    check_down(payload)


def check_plan(payload: bytes) -> None:
    result = parse_gateway_configuration(payload, EU, GATEWAY_ID, fits=radio_fits)
    assert (result.plan is None) != (result.error is None)
    assert len(result.version) <= 256 and len(result.error or "") < 1_000


@pytest.mark.parametrize("name", sorted(PLAN_PAYLOADS))
def test_plan_seed(name: str) -> None:
    check_plan(PLAN_PAYLOADS[name])
    result = parse_gateway_configuration(PLAN_PAYLOADS[name], EU, GATEWAY_ID, fits=radio_fits)
    assert result.plan is None


@FUZZ
@given(mutations(PLAN_PAYLOADS))
def test_fuzz_command_config(payload: bytes) -> None:
    check_plan(payload)


def test_fuzz_key_sync(tmp_path: Path) -> None:
    rig = Rig(tmp_path)

    def check(payload: bytes) -> None:
        with counted_lines() as lines:
            ack, changes = rig.sync.handle(payload)
        one_line_at_most(lines())
        assert b'"status":"rejected"' in ack and changes == 0

    for seed in KEYS_SEEDS.values():
        check(seed)
    FUZZ(given(mutations(KEYS_SEEDS))(check))()


def check_inject(data: bytes) -> None:
    try:
        parse_inject_datagram(data)
    except InjectError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400


@pytest.mark.parametrize("name", sorted(INJECT_SEEDS))
def test_inject_seed(name: str) -> None:
    with pytest.raises(InjectError):
        parse_inject_datagram(INJECT_SEEDS[name])


@FUZZ
@given(mutations(INJECT_SEEDS))
def test_fuzz_inject_datagram(data: bytes) -> None:
    check_inject(data)


def status_answer(data: bytes) -> dict[str, Any]:
    server = StatusServer(Path("/nonexistent/status.sock"), lambda: {"uptime_s": 1.0},
                          group=None)

    async def answer() -> dict[str, Any]:
        reader = asyncio.StreamReader(limit=4096)
        reader.feed_data(data)
        reader.feed_eof()
        return await server._answer(reader)

    return asyncio.run(answer())


@pytest.mark.parametrize("name", sorted(STATUS_SEEDS))
def test_status_seed(name: str) -> None:
    with counted_lines() as lines:
        assert status_answer(STATUS_SEEDS[name])["ok"] is False
    one_line_at_most(lines())


@FUZZ
@given(mutations(STATUS_SEEDS))
def test_fuzz_status_request(data: bytes) -> None:
    with counted_lines() as lines:
        answer = status_answer(data)
    assert answer["ok"] in (True, False)
    one_line_at_most(lines())


def check_config(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gateway.toml"
        path.write_bytes(data)
        try:
            load_config(path)
        except ConfigError as exc:
            assert "\n" not in str(exc)
        try:
            load_config_text(data.decode("utf-8", "replace"), source="fuzz", base_dir=Path(tmp))
        except ConfigError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize("name", sorted(CONFIG_SEEDS))
def test_config_seed(name: str) -> None:
    check_config(CONFIG_SEEDS[name])


@FUZZ
@given(mutations(CONFIG_SEEDS))
def test_fuzz_config_reader(data: bytes) -> None:
    check_config(data)
