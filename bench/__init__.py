"""Benchmarks for huedb, compared with chromadb on the same data when it is installed."""
