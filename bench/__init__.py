"""Benchmarks of bpd-rag: answer latency, load, ingest, cold start and scale (`make bench`).

Run `python -m bench --help`; results go to docs/benchmarks.md and docs/benchmarks-*.png.
"""
