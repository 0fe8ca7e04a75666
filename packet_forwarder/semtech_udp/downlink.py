"""PULL_RESP → the gateway's one downlink decision → TX_ACK to the server that asked.

The decision itself (region rules, duty cycle, just-in-time queue shared with every
other server) is passed in as ``decide``, so this module knows nothing of the
concentrator. A ``txpk`` that cannot be read is answered as the reference
forwarder does: not at all, with one rate-limited line.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

from packet_forwarder.downlink.clock import RadioNow
from packet_forwarder.downlink.status import TxStatus
from packet_forwarder.semtech_udp.link import SemtechUdpLink
from packet_forwarder.semtech_udp.txpk import TxpkError, downlink_from_txpk, txpk_ack

Decide = Callable[[bytes], TxStatus | None]
"""Serialised ``DownlinkFrame`` → the status of its one item (None: nothing to answer)."""


class UdpDownlinks:
    """Bound to one link as its ``on_pull_resp``."""

    def __init__(self, link: SemtechUdpLink, *, gateway_id: str,
                 now: Callable[[], RadioNow | None], decide: Decide, default_power_dbm: int,
                 ids: Iterator[int] | None = None) -> None:
        self._link = link
        self._gateway_id = gateway_id
        self._now = now
        self._decide = decide
        self._power = default_power_dbm
        self._ids = ids or itertools.count(random.randrange(1 << 31))
        self.statuses: dict[str, int] = {}
        link.on_pull_resp = self.on_pull_resp

    def on_pull_resp(self, token: int, body: dict[str, Any]) -> None:
        try:
            frame = downlink_from_txpk(body, now=self._now(), gateway_id=self._gateway_id,
                                       downlink_id=next(self._ids) & 0xFFFFFFFF,
                                       default_power_dbm=self._power)
        except TxpkError as exc:
            self._link.report_bad("bad_txpk", str(exc), json.dumps(body).encode()[:64])
            return
        status = self._decide(frame.SerializeToString())
        if status is None:
            return
        ack = txpk_ack(status)
        error = ack["txpk_ack"]["error"]
        self.statuses[error] = self.statuses.get(error, 0) + 1
        self._link.send_tx_ack(token, ack)
