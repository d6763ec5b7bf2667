"""Drift: items from a diff, the report, metrics."""
