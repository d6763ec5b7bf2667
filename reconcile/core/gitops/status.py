"""What a GitOps cycle reports about itself: the stage it failed at, whether it ran unsigned.
Pure; the cycle records these in the history, the drift report and the metrics."""

from __future__ import annotations

from enum import StrEnum

from reconcile.core.metrics import Metric, Sample


class Stage(StrEnum):
    """A cycle's steps, in order; a failure names the one it happened in."""

    FETCH = "fetch"  # git fetch of the branch
    VERIFY = "verify"  # descends from the last accepted commit, signature, not retried
    LOAD = "load"  # check out, read and validate the manifest, confine its paths
    PLAN = "plan"  # evaluate, observe, diff
    APPLY = "apply"  # act, observe again

    @property
    def rank(self) -> int:
        """Its place in the cycle: FETCH is 0."""
        return list(Stage).index(self)


def unsigned_notice(sha: str) -> str:
    short = sha[:12] or "the head"
    return (
        f"commit {short} was used without checking its signature: "
        "gitops.require_signed = false in the controller's manifest"
    )


def cycle_metrics(lab: str, *, failed: Stage | None, unsigned: bool) -> list[Metric]:
    """`reconcile_gitops_unsigned` and one `reconcile_gitops_failed` sample per stage."""
    labels = {"lab": lab}
    return [
        Metric(
            "reconcile_gitops_unsigned",
            "1 when the last GitOps cycle ran without checking commit signatures "
            "(gitops.require_signed = false).",
            "gauge",
            [Sample(1.0 if unsigned else 0.0, labels)],
        ),
        Metric(
            "reconcile_gitops_failed",
            "1 for the stage the last GitOps cycle failed or refused its commit at, else 0.",
            "gauge",
            [
                Sample(1.0 if stage is failed else 0.0, {**labels, "stage": stage.value})
                for stage in Stage
            ],
        ),
    ]
