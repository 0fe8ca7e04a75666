"""How many frames per second the whole edge stage checks on one core.

``EdgeFilter.check`` end to end (parse, DevAddr lookup, FCnt reconstruction, MIC, counter
update, accounting) for 1,000 known LoRaWAN 1.0 devices and 1,000 known 1.1 devices, plus
the two flood cases (forged MICs on a known DevAddr, random unknown DevAddrs), next to
the bare ``cryptography`` AES-CMAC rate over the same bytes (a prepared key cloned per
message, the fastest the library allows). Medians of several runs; every run feeds new
frames with advancing counters, so each one is a genuine accept, not a replay.

Run from the repository root: ``python bench/bench_edge_filter.py [--runs 5] [--frames 5000]``.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

DEVICES = 1000
PAYLOAD = 20


def timed(check: Any, frames: list[bytes]) -> float:
    start = time.perf_counter()
    for phy in frames:
        check(phy)
    return len(frames) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--frames", type=int, default=5000, help="frames per run and case")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    # Drop lines from the flood cases would swamp the numbers (and the terminal).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(Path(tmp), args.frames, args.runs)
    for name, value in results.items():
        print(f"{name:40s} {value:>14,.0f}")
    return 0


def measure(tmp: Path, frames: int, runs: int) -> dict[str, float]:
    from packet_forwarder import lorawan as lw
    from packet_forwarder.edge_filter import EdgeFilter, EdgePolicy
    from packet_forwarder.keystore import KeyStore
    from packet_forwarder.keystore.records import records_from_fields

    rng = random.Random(1)
    keys10 = [lw.SessionKeys10(rng.randbytes(16), rng.randbytes(16)) for _ in range(DEVICES)]
    keys11 = [lw.SessionKeys11(*(rng.randbytes(16) for _ in range(4))) for _ in range(DEVICES)]
    addrs10 = [bytes([0x26, 0, i >> 8, i & 0xFF]) for i in range(DEVICES)]
    addrs11 = [bytes([0x26, 1, i >> 8, i & 0xFF]) for i in range(DEVICES)]
    sessions = []
    for i in range(DEVICES):
        n = keys10[i].nwk_s_key.hex()
        k = keys11[i]
        for row in (
            {"dev_eui": f"{i:016x}", "dev_addr": addrs10[i].hex(), "mac_version": "1.0.3",
             "nwk_s_enc_key": n, "s_nwk_s_int_key": n, "f_nwk_s_int_key": n},
            {"dev_eui": f"{i + DEVICES:016x}", "dev_addr": addrs11[i].hex(),
             "mac_version": "1.1.0", "nwk_s_enc_key": k.nwk_s_enc_key.hex(),
             "s_nwk_s_int_key": k.s_nwk_s_int_key.hex(),
             "f_nwk_s_int_key": k.f_nwk_s_int_key.hex()},
        ):
            session, _ = records_from_fields(row)
            sessions.append(session)
    store = KeyStore(tmp / "keys.sqlite", tmp / "master.key", track_shutdown=True)
    store.apply([s for s in sessions if s is not None])
    edge = EdgeFilter(EdgePolicy(unknown_devaddr="drop"), store)

    def batch(version: str, run: int) -> list[bytes]:
        out = []
        for j in range(frames):
            dev = j % DEVICES
            fcnt = run * (frames // DEVICES + 1) + j // DEVICES
            fields = lw.DataFields(dev_addr=(addrs10 if version == "10" else addrs11)[dev],
                                   fcnt=fcnt, fport=1, payload=rng.randbytes(PAYLOAD))
            out.append(lw.build_data_uplink_10(fields, keys10[dev]) if version == "10"
                       else lw.build_data_uplink_11(fields, keys11[dev]))
        return out

    rates: dict[str, list[float]] = {k: [] for k in (
        "edge_check_1_0_per_s", "edge_check_1_1_per_s", "edge_forged_mic_per_s",
        "edge_unknown_devaddr_per_s", "bare_cmac_cloned_per_s")}
    for run in range(runs):
        b10, b11 = batch("10", run), batch("11", run)
        forged = [p[:-4] + b"\0\0\0\0" for p in b10]
        unknown = [bytes([0x40]) + rng.randbytes(4) + p[5:] for p in b10]
        rates["edge_check_1_0_per_s"].append(timed(edge.check, b10))
        rates["edge_check_1_1_per_s"].append(timed(edge.check, b11))
        rates["edge_forged_mic_per_s"].append(timed(edge.check, forged))
        rates["edge_unknown_devaddr_per_s"].append(timed(edge.check, unknown))
        prepared = [cmac.CMAC(algorithms.AES(k.nwk_s_key)) for k in keys10]
        templates = [prepared[j % DEVICES] for j in range(frames)]
        msgs = [bytes(16) + p[:-4] for p in b10]
        start = time.perf_counter()
        for template, msg in zip(templates, msgs, strict=True):
            mac = template.copy()
            mac.update(msg)
            mac.finalize()
        rates["bare_cmac_cloned_per_s"].append(frames / (time.perf_counter() - start))
    accepted = edge.stats()["forwarded"]
    assert accepted == {"known_valid": 2 * frames * runs}, accepted  # every frame genuine
    start = time.perf_counter()
    edge.flush()
    flush_ms = (time.perf_counter() - start) * 1000
    edge.close()
    results = {name: statistics.median(values) for name, values in rates.items()}
    results["flush_of_2000_counters_ms"] = flush_ms
    return results


if __name__ == "__main__":
    raise SystemExit(main())
