"""Benchmarks: run each file as a script (see bench/README.md)."""
