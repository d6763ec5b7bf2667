"""GC roots of a guest's closures: which must exist, and what is wrong with those observed.

Pure. A guest keeps one root per closure that its persistent or running definition boots,
at `<state_dir>/gcroots/<guest>/<toplevel name>`, each registered in Nix's gcroots/auto
(adapters/nix.py makes and reads them). Observation is a readlink or two per root: no Nix
call, so a no-op plan stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath

from reconcile.core.guests.observed import GcRootFacts, ObservedDomain


class RootState(StrEnum):
    MISSING = "missing"  # no link: the closure is collectable
    ELSEWHERE = "elsewhere"  # a link of that name points at something else
    UNREGISTERED = "unregistered"  # the link is there, but Nix's gcroots/auto forgot it

    @property
    def problem(self) -> str:
        return _PROBLEMS[self]


_PROBLEMS = {
    RootState.MISSING: "missing",
    RootState.ELSEWHERE: "points elsewhere",
    RootState.UNREGISTERED: "not registered in /nix/var/nix/gcroots/auto",
}


def closures_in_use(domain: ObservedDomain) -> set[str]:
    """The closures the domain's persistent and running definitions boot (from our marks),
    and a disk guest's base image: its overlay reads it for as long as the overlay lives."""
    used: set[str] = set()
    for facts in (domain.config, domain.live):
        if facts is not None and facts.mark is not None:
            used.update(p for p in (facts.mark.toplevel, facts.mark.image) if p)
    return used


def link_name(toplevel: str) -> str:
    return PurePosixPath(toplevel).name


@dataclass(frozen=True)
class RootProblem:
    toplevel: str  # the closure that must be kept
    state: RootState
    observed: str  # where the link points ("" when missing)


def root_problems(wanted: set[str], seen: Mapping[str, GcRootFacts]) -> tuple[RootProblem, ...]:
    """What is wrong with a guest's roots, given the closures it must keep. Extra roots
    are not a problem here: the next sync releases them."""
    problems = []
    for toplevel in sorted(wanted):
        facts = seen.get(link_name(toplevel))
        if facts is None:
            problems.append(RootProblem(toplevel, RootState.MISSING, ""))
        elif facts.target != toplevel:
            problems.append(RootProblem(toplevel, RootState.ELSEWHERE, facts.target))
        elif not facts.registered:
            problems.append(RootProblem(toplevel, RootState.UNREGISTERED, facts.target))
    return tuple(problems)
