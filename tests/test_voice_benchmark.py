"""benchmarks.voice still runs (tiny sizes; figures are not checked here — speed lives in benchmarks/)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_voice_benchmark_prints_its_json_rows():
    out = subprocess.run([sys.executable, "-m", "benchmarks.voice", "--json", "--count", "3", "--burst", "2",
                          "--warm", "5", "--config", "config/demo.toml"],
                         capture_output=True, text=True, check=True).stdout
    rows = {r["metric"]: r for r in json.loads(out)}
    assert list(rows) == ["cold_p50_ms", "cold_p99_ms", "burst_p99_ms", "warm_p99_ms", "warm_disk_p99_ms"]
    assert all(r["value"] > 0 and r["unit"] == "ms" for r in rows.values())
    assert (rows["cold_p99_ms"]["target"], rows["warm_p99_ms"]["target"]) == ("<= 250", "<= 50")
