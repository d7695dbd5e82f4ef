"""Benchmarks (not run in CI): figures against a raw ceiling measured in the same run."""
