"""Orchestration: one observation per run across backends, and walking a plan."""
