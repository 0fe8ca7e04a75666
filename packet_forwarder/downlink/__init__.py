"""Downlinks: time on air, duty cycle, the just-in-time TX queue and the command/down logic.

Everything here is pure or thread-safe in-memory state; the daemon supplies the
counter readings, the MQTT payloads and the SPI calls.
"""

from packet_forwarder.downlink.checks import TxLimits
from packet_forwarder.downlink.clock import CounterClock, RadioNow
from packet_forwarder.downlink.duty_cycle import DutyCycle
from packet_forwarder.downlink.handler import DownlinkHandler, DownlinkResult
from packet_forwarder.downlink.jit import JitConfig, JitQueue, QueueItem
from packet_forwarder.downlink.status import TxStatus

__all__ = [
    "CounterClock",
    "DownlinkHandler",
    "DownlinkResult",
    "DutyCycle",
    "JitConfig",
    "JitQueue",
    "QueueItem",
    "RadioNow",
    "TxLimits",
    "TxStatus",
]
