"""A lab lock held too long: worth a line in plan, drift and the metrics.

A run that holds the lock for hours is usually a hung apply or a forgotten terminal; every
later apply and GitOps cycle waits on it. Pure: the caller reads who holds it and since when.
"""

from __future__ import annotations

from reconcile.core.metrics import Metric, Sample


def held_too_long(holder: str, age_s: float, limit_s: float) -> str | None:
    """The warning for a lock held past `limit_s`, or None."""
    if age_s <= limit_s:
        return None
    return (
        f"the lab's lock has been held for {_span(age_s)} by {holder} "
        f"(lab.lock_warn_after = {_span(limit_s)}); applies and GitOps cycles wait on it"
    )


def lock_metric(lab: str, age_s: float) -> Metric:
    return Metric(
        "reconcile_lock_held_seconds",
        "How long the lab's lock has been held by its current holder (0: free).",
        "gauge",
        [Sample(round(age_s, 3), {"lab": lab})],
    )


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes}min" if minutes else f"{int(seconds)}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}min" if minutes else f"{hours}h"
