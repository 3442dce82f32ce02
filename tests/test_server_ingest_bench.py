"""benchmarks.ingest still runs end to end (tiny sizes; its figures are judged in benchmarks/, not here)."""

from __future__ import annotations

import pytest

from benchmarks import ingest
from callsys.log import open_store
from redis_support import redis_server, redis_url  # noqa: F401  (fixtures)
from server_support import guard


@pytest.mark.parametrize("store", ["file", "redis"])  # redis: the benchmark starts a redis-server of its own
@guard(120)
async def test_ingest_benchmark_reports_every_row(store):
    rows = await ingest.run("config/demo.toml", connections=2, pipeline=2, seconds=0.3, rate=50.0,
                            latency_seconds=0.3, store=store)
    values = {r["metric"]: r["value"] for r in rows}
    assert list(values) == ["tickets_per_s", "p50_ms_at_1000", "p99_ms_at_1000", "achieved_rate_at_1000",
                            "p99_ms_saturated", "events_per_commit", "server_cpu", "loadgen_cpu",
                            "server_cpu_per_ticket", "loadgen_cpu_per_ticket", "rejected"]
    assert values["tickets_per_s"] > 0 and values["p99_ms_at_1000"] >= values["p50_ms_at_1000"] > 0
    # CPU time comes in 10 ms ticks: a 0.3 s phase on a busy machine may see none
    assert values["events_per_commit"] >= 1 and values["server_cpu"] >= 0


async def test_ingest_benchmark_refuses_a_named_store_with_events(redis_url):
    store = await open_store(redis_url, "demo")
    await store.append([b"yesterday"])
    await store.aclose()
    with pytest.raises(SystemExit, match="hall 'demo' already has 1 events in redis://"):
        await ingest.require_empty(redis_url, "demo")
    await ingest.require_empty(redis_url, "other")  # an empty hall is fine
