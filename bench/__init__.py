"""Benchmarks: `make bench` runs them against the real local broker and writes bench/results.json."""
