"""Shared fixtures: a real Mosquitto broker per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import MosquittoBroker, require_mosquitto


@pytest.fixture
def mosquitto_binary() -> str:
    """For tests that start brokers themselves: ``pytestmark = usefixtures(...)``."""
    return require_mosquitto()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(tmp_path / "mosquitto", binary=require_mosquitto())
    b.start()
    try:
        yield b
    finally:
        b.stop()
