"""Benchmarks: `python -m bench.<name>` from the repo root (see docs/performance.md)."""
