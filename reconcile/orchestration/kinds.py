"""The kinds of machine, and the table the executor's actions are routed by.

Each kind has its steps (action types, core/plan/actions.py) and the performer that carries
them out and re-checks them. The lab's own steps (builds, views) are a kind of their own,
which every machine kind may depend on.

Adding a kind of machine: its pure definition in the core (as core/guests/imageless.py is for
imageless guests), its action types, its performer module here, one row in `KINDS`, and
its part of the manifest schema. Nothing registers itself on import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args

from reconcile.core.desired import GuestMode
from reconcile.core.plan.actions import Action, DiskStep, GuestStep, HostStep, LabStep
from reconcile.orchestration.disk_guests import DiskGuestPerformer
from reconcile.orchestration.executor import Check, Performer
from reconcile.orchestration.guests import GuestPerformer
from reconcile.orchestration.lab_steps import LabStepPerformer
from reconcile.orchestration.pipeline import Context


@dataclass(frozen=True)
class Kind:
    name: str
    steps: tuple[type, ...]  # the action types its performer carries out
    performer: Callable[[Context], Performer[Any]]  # made on the first of its actions
    mode: str | None = None  # a guest kind: the steps of guests of this mode (GuestRef.mode)


def _hosts(ctx: Context) -> Performer[HostStep]:
    # Imported here: it brings in the SSH adapter (fabric, paramiko: ~60 ms), which a lab
    # without hosts never needs.
    from reconcile.orchestration.hosts import HostPerformer  # noqa: PLC0415

    return HostPerformer(ctx)


KINDS: tuple[Kind, ...] = (
    Kind("lab", get_args(LabStep), LabStepPerformer),
    Kind("imageless guest", get_args(GuestStep), GuestPerformer, GuestMode.IMAGELESS.value),
    Kind(
        "disk guest",
        (*get_args(GuestStep), *get_args(DiskStep)),
        DiskGuestPerformer,
        GuestMode.DISK.value,
    ),
    Kind("baremetal host", get_args(HostStep), _hosts),
)


class Router:
    """The executor's Performer for a whole lab: each action goes to its kind's performer."""

    def __init__(self, ctx: Context, kinds: tuple[Kind, ...] = KINDS) -> None:
        self.ctx = ctx
        self._kinds = {(step, kind.mode): kind for kind in kinds for step in kind.steps}
        self._performers: dict[str, Performer[Any]] = {}

    def _for(self, action: Action) -> Performer[Any]:
        guest = getattr(action, "guest", None)  # guest steps name their guest's mode
        kind = self._kinds.get((type(action), guest.mode if guest is not None else None))
        if kind is None:
            raise TypeError(f"no machine kind performs {type(action).__name__}")
        if kind.name not in self._performers:
            self._performers[kind.name] = kind.performer(self.ctx)
        return self._performers[kind.name]

    def check(self, action: Action) -> Check:
        return self._for(action).check(action)

    def perform(self, action: Action) -> None:
        self._for(action).perform(action)
