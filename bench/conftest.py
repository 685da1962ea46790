"""Micro-benchmarks run with pytest-benchmark: `python -m pytest bench`."""
