"""Benchmarks of the real server process (waitress + worker process) on loopback; results in BENCHMARKS.md.

    python -m bench                      # all of them; rewrites BENCHMARKS.md (about 10 minutes)
    python -m bench --only idle_gap      # some of them (comma separated), still into BENCHMARKS.md
    python -m bench.idle_gap             # one of them alone, printed (--json for the raw figures)

Modules, one per benchmark: idle_gap (1), polling_load (2), forecast_accuracy (3), queue_scale (4),
mac_mflux (5, for Apple Silicon; `--dry-run` runs it on the demo engine), model_switching (6), scale_out (7),
api_memory (8).
Shared: harness (starting servers, the driver's HTTP client), loadgen (the load generator process), workload
(seeded workloads, the driver that plays them, forecast accuracy), stats (percentiles, MAPE), machine (CPU,
memory, competing load), report (tables, verdicts, BENCHMARKS.md). tests/test_bench_smoke.py runs each in a
tiny configuration.
"""
