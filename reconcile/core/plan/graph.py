"""The plan: a networkx DAG of actions, ordered deterministically.

Pure: changes in, graph out. networkx is imported here and nowhere else; the actions
themselves are made by core/plan/steps.py, loaded only for a plan with something to do.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from reconcile.core.errors import PlanError
from reconcile.core.guests.diff import ChangeKind
from reconcile.core.hosts.baremetal import HostChangeKind
from reconcile.core.plan.diff import Diff

if TYPE_CHECKING:
    import networkx as nx

    from reconcile.core.plan.actions import Action

BUILD_KEY = "build"


def _networkx() -> types.ModuleType:
    # Imported on first use: a no-op plan has no graph to walk, and networkx is a tenth of a
    # no-op plan's time (docs/performance.md).
    import networkx  # noqa: PLC0415

    return networkx


@dataclass(frozen=True)
class Plan:
    diff: Diff
    nodes: Mapping[str, Action]  # by action key
    edges: tuple[tuple[str, str], ...]  # (dependency, dependent)
    to_build: tuple[str, ...]  # installables not yet in the store
    kernels_to_build: tuple[tuple[str, str], ...] = ()  # (kernel name, build directory)
    kernels_to_remove: tuple[str, ...] = ()  # build directories nothing uses (--prune)
    # (hypervisor, directory): kernel copies on remote hypervisors nothing there boots
    kernel_copies_to_remove: tuple[tuple[str, str], ...] = ()
    # Machines whose changes are not planned, with why: each comes `after` one that is
    # unknown, in conflict or blocked itself (a plan with any is not clean, like unknown).
    blocked: Mapping[str, str] = field(default_factory=dict)
    # Where the closures are built: "here", and each remote builder's name and target.
    built_on: tuple[str, ...] = ("here",)
    # Kernels to build whose make runs on a builder, with where (`builder NAME (user@host)`).
    kernels_built_on: Mapping[str, str] = field(default_factory=dict)

    def has_changes(self) -> bool:
        """Whether applying the plan changes anything (a blocked machine's changes do not
        count: nothing of them is planned)."""
        diff = self.diff
        if self.blocked:
            diff = replace(
                diff,
                changes=tuple(c for c in diff.changes if c.name not in self.blocked),
                hosts=tuple(h for h in diff.hosts if h.name not in self.blocked),
            )
        return (
            diff.has_changes() or bool(self.kernels_to_remove) or bool(self.kernel_copies_to_remove)
        )

    def conflicts(self) -> dict[str, str]:
        """What blocks convergence (a domain that is not ours where a guest must be, a copy
        of a guest's mark), with why: such a plan is not clean."""
        return self.diff.conflicts()

    def unknown(self) -> dict[str, str]:
        """What could not be observed, with why: the plan says nothing about it."""
        found = {c.name: c.note for c in self.diff.changes if c.kind is ChangeKind.UNKNOWN}
        found.update((h.name, h.note) for h in self.diff.hosts if h.kind is HostChangeKind.UNKNOWN)
        return found

    @functools.cached_property
    def graph(self) -> nx.DiGraph[str]:
        graph: nx.DiGraph[str] = _networkx().DiGraph()
        graph.add_nodes_from(self.nodes)
        graph.add_edges_from(self.edges)
        return graph

    def actions(self) -> list[Action]:
        """Every action in a deterministic topological order."""
        return [self.nodes[k] for k in self.action_keys()]

    def action_keys(self) -> list[str]:
        """Action keys in a deterministic topological order."""
        return order(self.graph) if self.nodes else []

    def action(self, key: str) -> Action:
        return self.nodes[key]

    def recreates(self) -> list[str]:
        """Guests whose disk the plan wipes (a recreate): apply asks for that explicitly."""
        if not self.nodes:
            return []
        from reconcile.core.plan.actions import WipeDisk  # noqa: PLC0415 - loaded with the nodes

        return sorted({a.subject for a in self.actions() if isinstance(a, WipeDisk)})

    def dependencies(self, key: str) -> list[str]:
        return sorted(a for a, b in self.edges if b == key)

    def dependents(self, key: str) -> list[str]:
        return sorted(b for a, b in self.edges if a == key)

    def descendants(self, key: str) -> set[str]:
        return set(_networkx().descendants(self.graph, key))


def order(graph: nx.DiGraph[str]) -> list[str]:
    nx = _networkx()
    try:
        return [str(key) for key in nx.lexicographical_topological_sort(graph)]
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(graph)
        edges = ", ".join(f"{a} -> {b}" for a, b in cycle)
        raise PlanError(f"the plan has a cycle: {edges}") from None


def make_plan(
    diff: Diff,
    unbuilt: dict[str, str],
    kernels: Mapping[str, str] | None = None,
    *,
    stale_kernels: tuple[str, ...] = (),
    stale_copies: tuple[tuple[str, str], ...] = (),
) -> Plan:
    """The plan for `diff`. `unbuilt` maps each guest's installable to build, by guest name;
    `kernels` maps each kernel to build to its build directory."""
    if not diff.has_changes() and not stale_kernels and not stale_copies:
        # Nothing to do, so nothing to build, order or block (what steps.make_plan gives for
        # such a diff, tests/core/test_plan.py): the actions' module is not even loaded.
        return Plan(diff=diff, nodes={}, edges=(), to_build=())
    from reconcile.core.plan import steps  # noqa: PLC0415 - only a plan with something to do

    return steps.make_plan(
        diff, unbuilt, kernels, stale_kernels=stale_kernels, stale_copies=stale_copies
    )
