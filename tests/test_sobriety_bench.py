"""The sobriety benchmark still runs end to end and writes every figure it promises.

The figures themselves are not asserted (no timed assertions in tests): this keeps
the script working as the modules it drives move.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.parametrize("feed", ["replay", "socket"])
def test_one_short_run_writes_every_figure(tmp_path: Path, feed: str) -> None:
    out = tmp_path / "sobriety.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sobriety.py"), "--idle-s", "1", "--paced-s",
         "0.2", "--flood-frames", "300", "--settle-s", "0.2", "--feed", feed, "--json", str(out)],
        capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    written = json.loads(out.read_text())
    assert written["feed"] == feed and f"frames fed by {feed}" in done.stdout
    median = written["median"]
    assert set(median) >= {"cold_start_s", "rss_after_start_mb", "idle", "per_frame",
                           "flood", "rss_after_flood_mb", "daemon_error_lines"}
    assert set(median["per_frame"]) == {"10_per_s", "100_per_s", "260_per_s"}
    assert median["flood"]["frames"] == 300
    assert median["flood"]["daemon_frames_per_s"] > 0 < median["flood"]["bare_paho_frames_per_s"]
    assert median["idle"]["ctx_switches_per_s"] > 0
    assert median["daemon_error_lines"] == 0
    assert "CPU per frame at 260_per_s" in done.stdout
    for phase in median["per_frame"].values():  # the emulated chip's intake, reported apart
        if feed == "replay":
            assert phase["emulator_feed_us_per_frame"] > 0
            assert phase["cpu_us_per_frame_without_feed"] == pytest.approx(
                phase["cpu_us_per_frame"] - phase["emulator_feed_us_per_frame"])
        else:
            assert "emulator_feed_us_per_frame" not in phase
