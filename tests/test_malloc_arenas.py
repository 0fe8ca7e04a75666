"""The daemon caps glibc's malloc arenas itself, unless the environment already does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gateway import malloc_arenas
from gateway.malloc_arenas import is_glibc, limit_malloc_arenas


def test_an_operators_malloc_arena_max_wins() -> None:
    assert limit_malloc_arenas(1, environ={"MALLOC_ARENA_MAX": "4"}) is False


def test_nothing_is_set_on_another_c_library(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_name(name: str) -> str:
        raise ValueError(f"unrecognized configuration name {name!r}")

    monkeypatch.setattr(malloc_arenas.os, "confstr", no_such_name)
    assert is_glibc() is False
    assert limit_malloc_arenas(1, environ={}) is False


@pytest.mark.skipif(not is_glibc(), reason="M_ARENA_MAX is glibc's")
def test_the_cap_is_set_on_glibc() -> None:
    # In a child: the cap holds for the rest of the process, not for this test run.
    code = ("from gateway.malloc_arenas import limit_malloc_arenas\n"
            "print(limit_malloc_arenas(1, environ={}))")
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.strip() == "True"
