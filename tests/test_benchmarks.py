"""The benchmarks still run (tiny sizes; figures are not checked here — speed lives in benchmarks/)."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks import recovery


def test_engine_benchmark_prints_its_json_rows():
    out = subprocess.run([sys.executable, "-m", "benchmarks.engine", "--json", "--repeat", "1"],
                         capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    assert [r["metric"] for r in rows] == ["take_per_s", "take_keyed_per_s", "call_per_s"]
    assert all(r["value"] > 0 and r["unit"] == "ops/s" for r in rows)
    assert [r["target"] for r in rows] == [">= 100000", None, ">= 100000"]


async def test_recovery_benchmark_rebuilds_a_small_day():
    rows = {r["metric"]: r for r in await recovery.run("config/demo.toml", 400)}
    assert rows["events"]["value"] > 400 * 3
    assert rows["replay_s"]["value"] > 0 and rows["restart_s"]["value"] > 0
