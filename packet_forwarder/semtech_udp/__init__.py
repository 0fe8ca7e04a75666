"""The Semtech UDP packet-forwarder protocol v2, gateway side.

Written from Semtech's ``PROTOCOL.TXT`` (Lora-net/packet_forwarder, v1.4 of the
text, protocol version byte 2). Layers, top to bottom:

* :mod:`.codec` — bytes ⇄ typed datagrams (pure).
* :mod:`.rxpk` — a stored ChirpStack ``UplinkFrame`` → one ``rxpk`` object (pure).
* :mod:`.txpk` — a ``txpk`` object → a ChirpStack ``DownlinkFrame`` the existing
  downlink handler decides, and its status → ``txpk_ack.error`` (pure).
* :mod:`.link` — the asyncio UDP endpoint: PUSH_DATA resends, PULL_DATA keep-alive,
  host re-resolution, rate-limited lines about bad datagrams.

The buffer's sink over the link (a frame is delivered when its PUSH_ACK arrives)
lives in ``gateway.udp_uplink_sink``: this layer never imports the buffer.
"""
