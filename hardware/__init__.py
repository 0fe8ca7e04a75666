"""Board profiles: what differs between SX1302 carrier boards (pins, RSSI offset, TX power table).

The driver in :mod:`hal` is the same for every board; only these values change.
"""

from hardware.board import BOARDS, BoardProfile, TxGainEntry, get_board

__all__ = ["BOARDS", "BoardProfile", "TxGainEntry", "get_board"]
