"""What a guest's virtiofs shares serve: the store, the kernel's modules, the manifest's own.

A share that is not writable is served from a read-only view of its directory, so that a
guest mounting it read-write gets EROFS from the host's kernel.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reconcile.core.layout import NIX_STORE, StateLayout

__all__ = ["MODULES_TAG", "NIX_STORE", "STORE_TAG", "ShareSpec", "View", "share_spec", "views_of"]

STORE_TAG = "store"
MODULES_TAG = "modules"


@dataclass(frozen=True)
class View:
    """A bind of `source` at `path` that is read-only on the host: what a read-only share serves.

    libvirt 9.0 refuses `<readonly/>` on virtiofs and QEMU 7.2's virtiofsd has no read-only
    option: without it, a guest that mounts its tag read-write writes to the host.
    """

    path: Path
    source: Path


@dataclass(frozen=True)
class ShareSpec:
    tag: str
    source: str  # what virtiofsd serves: `origin` itself, or its read-only view
    writable: bool
    origin: str  # the host directory the guest sees

    @property
    def view(self) -> View | None:
        return None if self.writable else _view(self.source, self.origin)


@functools.lru_cache(maxsize=4096)
def _view(source: str, origin: str) -> View:
    """One value per distinct share (a view is frozen): 1000 guests share a few, and making
    paths anew per guest and per look cost ~30 ms of a no-op plan."""
    return View(Path(source), Path(origin))


@functools.lru_cache(maxsize=4096)
def share_spec(layout: StateLayout, tag: str, origin: Path, writable: bool) -> ShareSpec:
    """A read-only share serves its view (`StateLayout.view`), a writable one its origin."""
    source = origin if writable else layout.view(origin)
    return ShareSpec(tag, str(source), writable, str(origin))


def views_of(shares: Iterable[ShareSpec]) -> tuple[View, ...]:
    return tuple(v for s in shares if (v := s.view) is not None)
