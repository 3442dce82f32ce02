"""Reproducible benchmarks: ``python -m benchmarks.NAME [--json]``.

* :mod:`benchmarks.engine` — the pure engine: take-number and call-next operations/s
* :mod:`benchmarks.ingest` — durable ticket issue over WebSocket: throughput and latency
* :mod:`benchmarks.recovery` — start-up time on a store holding a busy day
* :mod:`benchmarks.sim` — the simulator: a peak Monday in virtual time, Erlang C, live latency

:mod:`benchmarks._report` holds the shared convention (table, ``--json`` rows of
``{"metric", "value", "unit", "target"}``, machine details); the measured figures are in
the README's benchmark table.
"""
