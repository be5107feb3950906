"""Benchmark results: ingestion (JSON Lines, JUnit XML), series keys, change points and slow-node
statistics. Pure functions over plain records (no I/O beyond parsing the bytes handed in)."""

from gpufleet.results.model import DEFAULT_SERIES_KEY, Result, TestCase, series_key
from gpufleet.results.ingest import parse_jsonl, parse_junit

__all__ = ["DEFAULT_SERIES_KEY", "Result", "TestCase", "parse_jsonl", "parse_junit", "series_key"]
