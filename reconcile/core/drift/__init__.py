"""Drift: items from a diff, the report, metrics."""

FORMATS = ("text", "json", "markdown", "html")  # what `reconcile drift --format` writes
