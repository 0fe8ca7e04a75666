"""The buffer under a syscall trace: writes frames through ``UplinkBuffer`` and marks each
commit that returned, for ``test_power_cut``.

After every ``flush()`` it writes ``C <highest seq submitted>`` to the marker file:
the promise under test is that every frame up to that seq which the sink did not
acknowledge survives a power cut at any later point. The sink acknowledges every
third frame at once (those never need the disk) and never the others.

    python -m tests.powercut_writer DIR ROUNDS [normal]
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from pathlib import Path

from buffer.config import BufferConfig
from buffer.types import AckCallback, Delivery
from buffer.uplink_buffer import UplinkBuffer


class PartialSink:
    def can_send(self) -> bool:
        return True

    def send(self, delivery: Delivery, on_result: AckCallback) -> None:
        if delivery.record.seq % 3 == 0:
            asyncio.get_running_loop().call_soon(on_result, True)


async def main(folder: Path, rounds: int, sync: str) -> None:
    rng = random.Random(7)
    config = BufferConfig(path=folder / "b.sqlite", commit_interval_s=3600.0,
                          drain_rate_per_s=0.0)
    buf = UplinkBuffer(config, PartialSink(), boot_id="boot")
    await buf.open()
    if sync != "full":  # the control run: what the old setting promised
        store = buf._store  # the control knob: private on purpose
        await buf._call(store.conn.execute, f"PRAGMA synchronous={sync}")
    marker = os.open(folder / "marker", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    top = 0
    for _ in range(rounds):
        for _ in range(rng.randint(1, 60)):
            body = rng.randbytes(rng.randint(20, 220))
            top = buf.submit(f"dev{rng.randrange(50)}", body, received_ns=1, monotonic_ns=1,
                             clock_synced=True)
        await asyncio.sleep(0)  # let the sink's acknowledgements land
        await buf.flush()
        os.write(marker, f"C {top}\n".encode())
    await buf.abort()
    os.close(marker)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]),
                     sys.argv[3] if len(sys.argv) > 3 else "full"))
