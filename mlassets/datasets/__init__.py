"""Readers for the real dataset formats (no Dagster here)."""
