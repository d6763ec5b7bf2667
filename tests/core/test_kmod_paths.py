"""modules.dep paths cannot leave their directory."""

from __future__ import annotations

import pytest

from reconcile.core.kernels.kmod import ModulePathError, check_module_path, load_order


@pytest.mark.parametrize("path", ["kernel/fs/fuse/fuse.ko", "updates/x.ko.xz", "a.ko"])
def test_relative_paths_below_are_fine(path: str) -> None:
    assert check_module_path(path) == path


@pytest.mark.parametrize("path", ["/etc/shadow", "../../etc/shadow", "kernel/../../x.ko", ""])
def test_escaping_paths_are_refused(path: str) -> None:
    with pytest.raises(ModulePathError, match="leaves the modules directory"):
        check_module_path(path)


@pytest.mark.parametrize(
    "dep",
    [
        "/etc/shadow:\n",
        "kernel/virtiofs.ko: ../../../etc/shadow\n../../../etc/shadow:\n",
        "../../../root/virtiofs.ko:\n",
    ],
)
def test_load_order_refuses_an_escaping_module_or_dependency(dep: str) -> None:
    wanted = ("shadow",) if dep.startswith("/etc") else ("virtiofs",)
    with pytest.raises(ModulePathError):
        load_order(dep, wanted)
