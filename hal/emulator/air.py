"""The emulated chip's air: a source of frames it takes in by itself, with no host call per frame.

A real SX1302 fills its RX buffer with no host CPU at all; the host only sees the
frames when it reads the fill level and fetches them. :meth:`Sx1302Emulator.set_air`
lets a feed (a replay file, in ``gateway.sim.replay``) play that part: at every read
of the RX fill level the chip asks its air source for the frames whose time has
come and takes them while its buffer has room. The rest wait in the source (no
loss: the same backpressure as the inject socket's).

Only the two protocols live here, so the chip knows nothing of files or JSON.
"""

from __future__ import annotations

from typing import Protocol


class AirFrame(Protocol):
    """One LoRa frame on the air, as the chip's ``inject`` takes it."""

    @property
    def phy_payload(self) -> bytes: ...
    @property
    def frequency_hz(self) -> int: ...
    @property
    def sf(self) -> int: ...
    @property
    def bw_hz(self) -> int: ...
    @property
    def cr(self) -> str: ...
    @property
    def rssi_dbm(self) -> float: ...
    @property
    def snr_db(self) -> float: ...
    @property
    def crc_ok(self) -> bool: ...
    @property
    def fault(self) -> str | None:
        """"truncate_record" or "corrupt_record" damages this frame's record (test hook)."""
        ...


class AirSource(Protocol):
    """What the chip asks at every read of its RX fill level (under its lock, on the
    thread that reads the chip)."""

    def next_due(self, now: float) -> tuple[float, AirFrame] | None:
        """The next frame whose time (on the chip's clock) is at or before ``now``, with
        that time, left in place until :meth:`taken`; None when none is due yet or the
        source is exhausted. Asking again without ``taken`` returns the same frame."""
        ...

    def taken(self, heard: bool) -> None:
        """The frame ``next_due`` returned went on the air; ``heard``: a receive chain
        matched it and it is in the RX buffer."""
        ...
