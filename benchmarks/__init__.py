"""Benchmark helpers for hotpatch (baseline models, table reproduction)."""
