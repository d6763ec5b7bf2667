"""The plan: a networkx DAG of actions, ordered deterministically.

Pure: changes in, graph out. networkx is imported here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import networkx as nx

from reconcile.core.actions import Action, ActionKind
from reconcile.core.desired import GuestState
from reconcile.core.diff import ChangeKind, Diff, GuestChange
from reconcile.core.errors import PlanError

BUILD_KEY = "build"


@dataclass(frozen=True)
class Plan:
    diff: Diff
    graph: nx.DiGraph[str]  # nodes: action keys with attribute "action"; edges: dependencies
    to_build: tuple[str, ...]  # installables not yet in the store

    def actions(self) -> list[Action]:
        """Every action in a deterministic topological order."""
        return [self.graph.nodes[k]["action"] for k in order(self.graph)]

    def action_keys(self) -> list[str]:
        """Action keys in a deterministic topological order."""
        return order(self.graph)

    def action(self, key: str) -> Action:
        found: Action = self.graph.nodes[key]["action"]
        return found

    def dependencies(self, key: str) -> list[str]:
        return sorted(self.graph.predecessors(key))

    def dependents(self, key: str) -> list[str]:
        return sorted(self.graph.successors(key))

    def descendants(self, key: str) -> set[str]:
        found: set[str] = nx.descendants(self.graph, key)
        return found

    def has_changes(self) -> bool:
        return self.diff.has_changes()


def order(graph: nx.DiGraph[str]) -> list[str]:
    try:
        return list(nx.lexicographical_topological_sort(graph))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(graph)
        edges = ", ".join(f"{a} -> {b}" for a, b in cycle)
        raise PlanError(f"the plan has a cycle: {edges}") from None


def _guest_actions(change: GuestChange, needs_build: bool) -> Iterator[tuple[Action, list[str]]]:
    """Each action of one guest with the keys it depends on, in order."""
    intent = change.intent
    name, hv, dom = change.name, change.hypervisor, change.domain
    previous: list[str] = []

    def act(kind: ActionKind, timeout_s: float = 0.0) -> Action:
        return Action(kind, name, hypervisor=hv, domain=dom, intent=intent, timeout_s=timeout_s)

    def step(action: Action) -> tuple[Action, list[str]]:
        nonlocal previous
        deps = previous
        previous = [action.key]
        return action, deps

    match change.kind:
        case ChangeKind.DESTROY:
            if change.running:
                yield step(act(ActionKind.DESTROY))
            yield step(act(ActionKind.UNDEFINE))
            return
        case ChangeKind.NOOP | ChangeKind.KEEP | ChangeKind.UNKNOWN | ChangeKind.CONFLICT:
            return
        case ChangeKind.WAIT:
            yield step(
                act(
                    ActionKind.WAIT_READY,
                    change.intent.guest.boot_timeout_s if change.intent else 0.0,
                )
            )
            return
        case ChangeKind.CREATE | ChangeKind.START | ChangeKind.REDEFINE | ChangeKind.RESTART:
            pass
        case ChangeKind.STOP:
            pass
    assert intent is not None
    if change.redefine:
        define = act(ActionKind.DEFINE)
        yield define, [BUILD_KEY] if needs_build else []
        previous = [define.key]
    if change.kind in (ChangeKind.RESTART, ChangeKind.STOP):
        yield step(act(ActionKind.SHUTDOWN, intent.guest.shutdown_timeout_s))
    starts = change.kind in (ChangeKind.CREATE, ChangeKind.START, ChangeKind.RESTART)
    if starts and intent.guest.state is GuestState.RUNNING:
        yield step(act(ActionKind.START))
        yield step(act(ActionKind.WAIT_READY, intent.guest.boot_timeout_s))


def make_plan(diff: Diff, unbuilt: dict[str, str]) -> Plan:
    """The plan for `diff`. `unbuilt` maps each guest's installable to build, by guest name."""
    graph: nx.DiGraph[str] = nx.DiGraph()
    defining = [c for c in diff.changes if c.redefine and c.kind.is_change()]
    to_build = tuple(sorted({unbuilt[c.name] for c in defining if c.name in unbuilt}))
    if to_build:
        graph.add_node(
            BUILD_KEY, action=Action(ActionKind.BUILD, "closures", installables=to_build)
        )
    for change in diff.changes:
        for action, deps in _guest_actions(change, change.name in unbuilt):
            graph.add_node(action.key, action=action)
            for dep in deps:
                graph.add_edge(dep, action.key)
    order(graph)  # a cycle is a bug: fail here, not half-way through apply
    return Plan(diff=diff, graph=graph, to_build=to_build)
