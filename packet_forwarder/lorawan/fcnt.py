"""Rebuild the 32-bit frame counter from the 16 bits a data frame carries.

Devices count frames in 32 bits but send only the low 16; the MIC is computed over all
32, so a verifier must guess the high half from the last counter it accepted. The guess
is the smallest value above the last one with the right low bits, within ``max_gap``
(LoRaWAN 1.0's MAX_FCNT_GAP, 16384): a frame whose counter does not advance is a replay,
and one that jumps too far cannot be told apart from an old frame, so it is refused.
The MIC check against the rebuilt value stays the final word.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

MAX_FCNT_GAP: Final = 16384
"""LoRaWAN 1.0 MAX_FCNT_GAP: the largest forward jump of FCnt accepted."""
_FCNT16: Final = 0x1_0000
_FCNT32_MAX: Final = 0xFFFF_FFFF


class FCntVerdict(StrEnum):
    """What the received counter means relative to the last accepted one."""

    OK = "ok"
    """Advances by less than ``max_gap``: ``fcnt`` is the value to check the MIC with."""
    REPLAY = "replay"
    """Equal to, or less than ``max_gap`` behind, the last value: an old frame."""
    GAP = "gap"
    """Jumps ``max_gap`` or more ahead: too many frames lost, or a forged counter."""
    EXHAUSTED = "exhausted"
    """Would pass 2**32 - 1: the session must rejoin before counting further."""


@dataclass(frozen=True, slots=True)
class FCntCheck:
    """The verdict and the 32-bit counter it was reached with.

    For OK and GAP ``fcnt`` is the forward candidate; for REPLAY the older value the
    frame most likely repeats; for EXHAUSTED the (over-range) forward candidate.
    """

    verdict: FCntVerdict
    fcnt: int

    @property
    def ok(self) -> bool:
        return self.verdict is FCntVerdict.OK


def reconstruct_fcnt(
    fcnt16: int, last: int | None, max_gap: int | None = MAX_FCNT_GAP
) -> FCntCheck:
    """Rebuild the 32-bit FCnt of a frame carrying ``fcnt16`` after ``last`` was accepted.

    ``last`` None means no frame of this session was accepted yet: the counter is taken
    as ``fcnt16`` (a fresh session starts at 0). ``max_gap`` None disables the gap limit
    (LoRaWAN 1.0.4 and 1.1 dropped it): every counter that is not equal to the last
    one's low bits is then read as a forward step of up to 65535.

    Raises ValueError for arguments out of range (programming errors, not radio input).
    """
    if not 0 <= fcnt16 < _FCNT16:
        raise ValueError(f"fcnt16 {fcnt16} does not fit 16 bits")
    if max_gap is not None and not 1 <= max_gap <= _FCNT16:
        raise ValueError(f"max_gap {max_gap} must be within 1..65536")
    if last is None:
        return FCntCheck(FCntVerdict.OK, fcnt16)
    if not 0 <= last <= _FCNT32_MAX:
        raise ValueError(f"last FCnt {last} does not fit 32 bits")
    step = (fcnt16 - last) % _FCNT16
    if step == 0:
        return FCntCheck(FCntVerdict.REPLAY, last)
    forward = last + step
    if max_gap is None or step < max_gap:
        if forward > _FCNT32_MAX:
            return FCntCheck(FCntVerdict.EXHAUSTED, forward)
        return FCntCheck(FCntVerdict.OK, forward)
    back = _FCNT16 - step
    if back < max_gap and last - back >= 0:
        return FCntCheck(FCntVerdict.REPLAY, last - back)
    return FCntCheck(FCntVerdict.GAP, forward)
