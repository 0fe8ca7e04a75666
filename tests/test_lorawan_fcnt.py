"""Rebuilding 32-bit frame counters from the 16 bits on air."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packet_forwarder.lorawan import MAX_FCNT_GAP, FCntVerdict, reconstruct_fcnt


def test_first_frame_of_a_session_takes_the_low_bits() -> None:
    check = reconstruct_fcnt(5, None)
    assert check.ok and check.fcnt == 5


def test_simple_advance() -> None:
    check = reconstruct_fcnt(11, 10)
    assert check.verdict is FCntVerdict.OK and check.fcnt == 11


def test_roll_over_of_the_16_bit_counter() -> None:
    check = reconstruct_fcnt(0x0002, 0x0000_FFFE)
    assert check.ok and check.fcnt == 0x0001_0002
    check = reconstruct_fcnt(0x0000, 0x0003_FFFF)
    assert check.ok and check.fcnt == 0x0004_0000


def test_same_counter_is_a_replay() -> None:
    check = reconstruct_fcnt(0x1234, 0x0007_1234)
    assert check.verdict is FCntVerdict.REPLAY and check.fcnt == 0x0007_1234


def test_slightly_older_counter_is_a_replay() -> None:
    check = reconstruct_fcnt(0xFFF0, 0x0001_0005)
    assert check.verdict is FCntVerdict.REPLAY and check.fcnt == 0x0000_FFF0


def test_gap_limit_is_exclusive() -> None:
    assert reconstruct_fcnt(MAX_FCNT_GAP - 1, 0).ok
    check = reconstruct_fcnt(MAX_FCNT_GAP, 0)
    assert check.verdict is FCntVerdict.GAP and check.fcnt == MAX_FCNT_GAP


def test_gap_is_a_parameter() -> None:
    assert reconstruct_fcnt(200, 100, max_gap=101).ok
    assert reconstruct_fcnt(201, 100, max_gap=101).verdict is FCntVerdict.GAP
    assert reconstruct_fcnt(40000, 100, max_gap=None).fcnt == 40000


def test_backwards_before_zero_is_a_gap_not_a_replay() -> None:
    # 5 -> 0xFFFA cannot be an older frame (it would be negative): a far jump ahead.
    check = reconstruct_fcnt(0xFFFA, 5)
    assert check.verdict is FCntVerdict.GAP and check.fcnt == 0xFFFA


def test_exhausted_32_bit_counter() -> None:
    check = reconstruct_fcnt(0x0001, 0xFFFF_FFFF)
    assert check.verdict is FCntVerdict.EXHAUSTED and check.fcnt == (1 << 32) + 1


@pytest.mark.parametrize(
    ("fcnt16", "last", "gap"),
    [(-1, 0, 10), (1 << 16, 0, 10), (0, -1, 10), (0, 1 << 32, 10), (0, 0, 0), (0, 0, 70000)],
)
def test_out_of_range_arguments(fcnt16: int, last: int, gap: int) -> None:
    with pytest.raises(ValueError):
        reconstruct_fcnt(fcnt16, last, gap)


@given(last=st.integers(0, 0xFFFF_FFFF - 0x1_0000), step=st.integers(1, MAX_FCNT_GAP - 1))
def test_any_step_within_the_gap_is_recovered(last: int, step: int) -> None:
    check = reconstruct_fcnt((last + step) & 0xFFFF, last)
    assert check.ok and check.fcnt == last + step


@given(last=st.integers(0x1_0000, 0xFFFF_FFFF), back=st.integers(0, MAX_FCNT_GAP - 1))
def test_any_step_back_is_a_replay(last: int, back: int) -> None:
    check = reconstruct_fcnt((last - back) & 0xFFFF, last)
    assert check.verdict is FCntVerdict.REPLAY and check.fcnt == last - back
