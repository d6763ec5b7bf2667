"""Real-stack fixtures shared by tests/ and bench/.

Machines in network namespaces with a real sshd (`testbed.hosts`) and the mount-aware
helpers the libvirt stack needs (`testbed.mounts`). Both the test suite and the benchmarks
import from here; neither imports the other. The `reconcile` package never imports
`testbed` (an import-linter contract in pyproject.toml), and the wheel does not ship it.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the flake is ROOT / "nix")."""
