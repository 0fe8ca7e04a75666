"""A Semtech UDP network-server stand-in, written from PROTOCOL.TXT (not from the gateway's code).

It parses datagrams with its own few lines of ``struct`` so a bug shared with the
gateway's codec cannot hide. It acknowledges PUSH_DATA and PULL_DATA (unless told
to drop acks), records every ``rxpk``/``stat``, can send PULL_RESP to the address
the last PULL_DATA came from (the route the gateway opened, §5.2), and records TX_ACKs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

PUSH_DATA, PUSH_ACK, PULL_DATA, PULL_RESP, PULL_ACK, TX_ACK = range(6)


@dataclass
class Received:
    token: int
    eui: bytes
    body: dict[str, Any]


@dataclass
class StandInServer(asyncio.DatagramProtocol):
    drop_push_acks: bool = False
    silent: bool = False
    """Drop every datagram (as if the server were down) while set."""
    pushes: list[Received] = field(default_factory=list)
    pulls: list[tuple[int, bytes]] = field(default_factory=list)
    tx_acks: list[Received] = field(default_factory=list)
    resp_tokens: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.gateway_addr: Any = None
        self._tx_ack_event = asyncio.Event()

    # -- asyncio plumbing ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.silent or self.transport is None:
            return
        version, token, ident = struct.unpack(">BHB", data[:4])
        assert version == 2, data
        if ident == PUSH_DATA:
            self.pushes.append(Received(token, data[4:12], json.loads(data[12:])))
            if not self.drop_push_acks:
                self.transport.sendto(struct.pack(">BHB", 2, token, PUSH_ACK), addr)
        elif ident == PULL_DATA:
            self.pulls.append((token, data[4:12]))
            self.gateway_addr = addr
            self.transport.sendto(struct.pack(">BHB", 2, token, PULL_ACK), addr)
        elif ident == TX_ACK:
            body = json.loads(data[12:]) if len(data) > 12 else {}
            self.tx_acks.append(Received(token, data[4:12], body))
            self._tx_ack_event.set()

    # -- test API -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def rxpks(self) -> list[dict[str, Any]]:
        return [r for p in self.pushes for r in p.body.get("rxpk", [])]

    def send_raw(self, data: bytes) -> None:
        assert self.transport is not None and self.gateway_addr is not None
        self.transport.sendto(data, self.gateway_addr)

    def pull_resp(self, txpk: dict[str, Any], token: int) -> None:
        self.resp_tokens.append(token)
        self.send_raw(struct.pack(">BHB", 2, token, PULL_RESP)
                      + json.dumps({"txpk": txpk}).encode())

    async def tx_ack(self, token: int, tries: int = 2000) -> dict[str, Any]:
        """The TX_ACK body answering ``token`` (bounded wait; not a timing assertion)."""
        for _ in range(tries):
            for ack in self.tx_acks:
                if ack.token == token:
                    return ack.body
            self._tx_ack_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tx_ack_event.wait(), 0.01)
        raise AssertionError(f"no TX_ACK for token {token}")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def start_server(port: int = 0, **kw: Any) -> StandInServer:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(
        lambda: StandInServer(**kw), local_addr=("127.0.0.1", port), family=socket.AF_INET)
    return proto
