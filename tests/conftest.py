"""Shared fixtures: a real Mosquitto broker per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.local_broker import find_mosquitto
from tests.broker import MosquittoBroker


def require_mosquitto() -> str:
    """The mosquitto binary; fails in CI (it must be installed there), skips elsewhere."""
    binary = find_mosquitto()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("mosquitto is required in CI")
        pytest.skip("install mosquitto to run the MQTT tests")
    return binary


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(tmp_path / "mosquitto", binary=require_mosquitto())
    b.start()
    try:
        yield b
    finally:
        b.stop()
