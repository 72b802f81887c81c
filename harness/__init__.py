"""The real-server harness the tests and the benchmarks share: `server.py` as a subprocess on a loopback port."""
