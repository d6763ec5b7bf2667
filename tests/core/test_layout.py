"""Every path of a lab's state directory, pinned: a file that moves is a visible change.

A running lab's lock, GC roots, views and console logs must be found where an earlier
version left them, so these are spelled out here, not computed from the layout.
"""

from __future__ import annotations

from pathlib import Path

from reconcile.core.layout import StateLayout
from reconcile.core.manifest import parse_manifest
from reconcile.core.statedir import SIGNATURES

ROOT = Path("/var/lib/reconcile/demo")
LAYOUT = StateLayout(ROOT)


def test_every_path_of_the_layout_is_where_it_always_was() -> None:
    paths = {
        "mark": LAYOUT.mark,
        "lock": LAYOUT.lock,
        "history": LAYOUT.history,
        "eval_cache": LAYOUT.eval_cache,
        "kernel_digests": LAYOUT.kernel_digests,
        "kernels": LAYOUT.kernels,
        "kernel_build": LAYOUT.kernel_build("k", "0123abcd"),
        "kernel_build_lock": LAYOUT.kernel_build_lock(LAYOUT.kernel_build("k", "0123abcd")),
        "gcroots": LAYOUT.gcroots,
        "gcroot": LAYOUT.gcroot("a"),
        "guests": LAYOUT.guests,
        "guest_dir": LAYOUT.guest_dir("a"),
        "serial_log": LAYOUT.serial_log("a"),
        "initrd_dir": LAYOUT.initrd_dir,
        "store_view": LAYOUT.store_view,
        "views_dir": LAYOUT.views_dir,
        "view": LAYOUT.view(Path("/lib/modules")),
        "view of the store": LAYOUT.view(Path("/nix/store")),
        "views_lock": LAYOUT.views_lock,
        "ssh_dir": LAYOUT.ssh_dir,
        "host_known_hosts": LAYOUT.host_known_hosts("bm1"),
        "builder_known_hosts": LAYOUT.builder_known_hosts("b1"),
        "gitops_dir": LAYOUT.gitops_dir,
        "reports_dir": LAYOUT.reports_dir,
        "generations": LAYOUT.generations,
        "pins": LAYOUT.pins,
        "qemu_dir": LAYOUT.qemu_dir("local"),
    }
    assert {name: str(path) for name, path in paths.items()} == {
        "mark": "/var/lib/reconcile/demo/.reconcile-lab",
        "lock": "/var/lib/reconcile/demo/lock",
        "history": "/var/lib/reconcile/demo/history.sqlite",
        "eval_cache": "/var/lib/reconcile/demo/eval-cache.json",
        "kernel_digests": "/var/lib/reconcile/demo/kernel-digests.json",
        "kernels": "/var/lib/reconcile/demo/kernels",
        "kernel_build": "/var/lib/reconcile/demo/kernels/k-0123abcd",
        "kernel_build_lock": "/var/lib/reconcile/demo/kernels/.k-0123abcd.lock",
        "gcroots": "/var/lib/reconcile/demo/gcroots",
        "gcroot": "/var/lib/reconcile/demo/gcroots/a",
        "guests": "/var/lib/reconcile/demo/guests",
        "guest_dir": "/var/lib/reconcile/demo/guests/a",
        "serial_log": "/var/lib/reconcile/demo/guests/a/serial.log",
        "initrd_dir": "/var/lib/reconcile/demo/initrd",
        "store_view": "/var/lib/reconcile/demo/store",
        "views_dir": "/var/lib/reconcile/demo/views",
        # the first 16 hex digits of sha256("/lib/modules")
        "view": "/var/lib/reconcile/demo/views/e289323796d4ef47",
        "view of the store": "/var/lib/reconcile/demo/store",
        "views_lock": "/var/lib/reconcile/demo/views.lock",
        "ssh_dir": "/var/lib/reconcile/demo/ssh",
        "host_known_hosts": "/var/lib/reconcile/demo/ssh/bm1.known_hosts",
        "builder_known_hosts": "/var/lib/reconcile/demo/ssh/builder.b1.known_hosts",
        "gitops_dir": "/var/lib/reconcile/demo/gitops",
        "reports_dir": "/var/lib/reconcile/demo/reports",
        "generations": "/var/lib/reconcile/demo/generations",
        "pins": "/var/lib/reconcile/demo/pins.json",
        "qemu_dir": "/var/lib/reconcile/demo/qemu/local",
    }


def test_an_older_reconciles_directory_is_known_by_these_entries() -> None:
    assert frozenset({"history.sqlite", "gcroots", "kernels", "eval-cache.json"}) == SIGNATURES


def test_the_lab_reaches_one_layout_of_its_state_directory() -> None:
    text = b'[lab]\nname = "demo"\nflake = "."\nstate_dir = "/var/lib/reconcile/<name>"\n'
    lab = parse_manifest(text, Path("/lab/m.toml")).lab
    assert lab.layout == LAYOUT
    assert lab.layout is lab.layout  # made once per lab
