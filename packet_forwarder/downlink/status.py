"""TX acknowledgement statuses, numbered exactly as ``gw.TxAckStatus`` on the wire."""

from __future__ import annotations

import enum


class TxStatus(enum.IntEnum):
    """Why a downlink item was (not) accepted; values equal ``gw_pb2.TxAckStatus``."""

    IGNORED = 0
    OK = 1
    TOO_LATE = 2
    TOO_EARLY = 3
    COLLISION_PACKET = 4
    COLLISION_BEACON = 5
    TX_FREQ = 6
    TX_POWER = 7
    GPS_UNLOCKED = 8
    QUEUE_FULL = 9
    INTERNAL_ERROR = 10
    DUTY_CYCLE_OVERFLOW = 11
