"""The pure core: values and decisions, no I/O. Tested with plain data."""
