"""How many uplink MICs per second the gateway can check on one core.

Prints verifications/s for LoRaWAN 1.0 and 1.1 data uplinks next to the bare
``cryptography`` AES-CMAC rate over the same bytes, measured in the same run (medians of
several runs) and the ratios. Two bare rates are shown, because "bare" can mean two
things: the textbook call (a new ``CMAC(AES(key))`` per message) and the fastest the
library allows (cloning a keyed CMAC template, which ``CmacKey`` also does). A 1.1 uplink
needs two CMACs, so its fair ceiling is half the bare rate.

Run from the repository root: ``python bench/bench_mic.py [--runs 7] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import algorithms

DEVICES = 200
FRAMES = 5000
PAYLOAD = 20
"""A typical sensor payload: a few readings, well inside the smallest data rate's limit."""


def rate(work: Callable[[], int], runs: int) -> float:
    """Median operations per second over ``runs`` timed runs of ``work`` (returns op count)."""
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        count = work()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--frames", type=int, default=FRAMES)
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    results = measure(args.frames, args.runs)
    for name, value in results.items():
        print(f"{name:44s} {value:>14,.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def measure(frames: int, runs: int) -> dict[str, Any]:
    from packet_forwarder import lorawan as lw

    rng = random.Random(1)
    keys10 = [lw.SessionKeys10(rng.randbytes(16), rng.randbytes(16)) for _ in range(DEVICES)]
    keys11 = [
        lw.SessionKeys11(rng.randbytes(16), rng.randbytes(16), rng.randbytes(16), rng.randbytes(16))
        for _ in range(DEVICES)
    ]
    prepared10 = [lw.CmacKey(k.nwk_s_key) for k in keys10]
    prepared11 = [(lw.CmacKey(k.f_nwk_s_int_key), lw.CmacKey(k.s_nwk_s_int_key)) for k in keys11]
    work10, work11, bare_msgs = [], [], []
    for i in range(frames):
        dev = i % DEVICES
        fields = lw.DataFields(
            dev_addr=dev.to_bytes(4, "big"), fcnt=i, fport=1, payload=rng.randbytes(PAYLOAD)
        )
        phy10 = lw.build_data_uplink_10(fields, keys10[dev])
        work10.append((phy10, prepared10[dev], i))
        f_key, s_key = prepared11[dev]
        work11.append((lw.build_data_uplink_11(fields, keys11[dev]), f_key, s_key, i))
        bare_msgs.append((keys10[dev].nwk_s_key, bytes(16) + phy10[:-4]))

    def verify10() -> int:
        ok = 0
        for phy, key, fcnt in work10:
            ok += lw.verify_data_uplink_10(phy, key, fcnt)
        assert ok == len(work10)
        return ok

    def verify11() -> int:
        ok = 0
        for phy, f_key, s_key, fcnt in work11:
            ok += lw.verify_data_uplink_11(phy, f_key, s_key, fcnt)
        assert ok == len(work11)
        return ok

    def parse_and_verify10() -> int:
        for phy, key, _ in work10:
            frame = lw.parse(phy)
            assert isinstance(frame, lw.DataFrame)
            lw.verify_data_uplink_10(phy, key, frame.fcnt16)
        return len(work10)

    aes = [(algorithms.AES(k), m) for k, m in bare_msgs]

    def bare_textbook() -> int:
        for key, msg in bare_msgs:
            mac = cmac.CMAC(algorithms.AES(key))
            mac.update(msg)
            mac.finalize()
        return len(bare_msgs)

    def bare_keyed_alg() -> int:
        for alg, msg in aes:
            mac = cmac.CMAC(alg)
            mac.update(msg)
            mac.finalize()
        return len(aes)

    templates = [(cmac.CMAC(algorithms.AES(k)), m) for k, m in bare_msgs]

    def bare_clone() -> int:
        for template, msg in templates:
            mac = template.copy()
            mac.update(msg)
            mac.finalize()
        return len(templates)

    results: dict[str, Any] = {
        "frames": frames,
        "runs": runs,
        "payload_bytes": PAYLOAD,
        "verify_1_0_per_s": rate(verify10, runs),
        "verify_1_1_per_s": rate(verify11, runs),
        "parse_and_verify_1_0_per_s": rate(parse_and_verify10, runs),
        "bare_cmac_new_key_per_s": rate(bare_textbook, runs),
        "bare_cmac_reused_aes_per_s": rate(bare_keyed_alg, runs),
        "bare_cmac_cloned_template_per_s": rate(bare_clone, runs),
    }
    textbook = results["bare_cmac_new_key_per_s"]
    clone = results["bare_cmac_cloned_template_per_s"]
    results["ratio_1_0_vs_bare_new_key"] = results["verify_1_0_per_s"] / textbook
    results["ratio_1_0_vs_bare_cloned"] = results["verify_1_0_per_s"] / clone
    results["ratio_1_1_vs_half_bare_new_key"] = results["verify_1_1_per_s"] / (textbook / 2)
    results["ratio_1_1_vs_half_bare_cloned"] = results["verify_1_1_per_s"] / (clone / 2)
    return results


if __name__ == "__main__":
    raise SystemExit(main())
