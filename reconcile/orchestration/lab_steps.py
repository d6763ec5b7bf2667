"""Performing the lab's own steps: building closures and kernels, pruning kernel builds,
making read-only views anew. What every kind of machine may depend on."""

from __future__ import annotations

from pathlib import Path

from reconcile.adapters import kernel_build, nix, views
from reconcile.adapters.kernel_build import KernelJob
from reconcile.core.builders import builders_option
from reconcile.core.desired import KernelBuild
from reconcile.core.errors import ReconcileError
from reconcile.core.guests.observed import ViewState
from reconcile.core.guests.placement import stale_copies
from reconcile.core.plan.actions import BuildClosures, BuildKernel, LabStep, MakeView, RemoveKernel
from reconcile.orchestration.executor import Check, StaleError
from reconcile.orchestration.pipeline import Context, kernel_builds_in_use, observe


class LabStepPerformer:
    """The executor's Performer for builds, kernel removals and views."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def check(self, action: LabStep) -> Check:
        match action:
            case BuildClosures():
                return Check.NEEDED  # one `nix build` of what was missing at plan time
            case BuildKernel():
                done = (action.directory / "complete").exists()
                return Check.SATISFIED if done else Check.NEEDED
            case RemoveKernel() if action.hypervisor is not None:
                return self._copy_still_unused(action.hypervisor, action.directory)
            case RemoveKernel():
                if not action.directory.exists():
                    return Check.SATISFIED
                self._still_unused(action.directory)
                return Check.NEEDED
            case MakeView():
                if action.hypervisor is not None:
                    machine = self.ctx.machine(action.hypervisor)
                    states = machine.observe([action.view], self.ctx.manifest.lab.layout).views
                else:
                    states = views.observe([action.view])
                ready = states[action.view] is ViewState.READ_ONLY
                return Check.SATISFIED if ready else Check.NEEDED

    def _still_unused(self, build: Path) -> None:
        """Look again, just before deleting: a domain defined since the plan keeps it."""
        observations = observe(self.ctx, every_domain=True)
        if any(o.domains is None or o.unknown for o in observations.values()):
            raise StaleError(f"kept {build.name}: a hypervisor or domain is unknown now")
        if build.name in kernel_builds_in_use(build.parent, observations):
            raise StaleError(f"kept {build.name}: a domain boots it now")

    def _copy_still_unused(self, hypervisor: str, directory: Path) -> Check:
        """Look again there, just before deleting: a domain defined since the plan keeps it."""
        layout = self.ctx.manifest.lab.layout
        if directory.parent != layout.placed_kernels:
            raise StaleError(f"kept {directory}: not a kernel copy of this lab")
        facts = self.ctx.machine(hypervisor).observe((), layout)
        if directory.name not in facts.kernel_copies:
            return Check.SATISFIED
        seen = self.ctx.hypervisor(hypervisor).observe("")  # every domain: any may boot it
        if not stale_copies(layout, seen, [directory.name], ()):
            raise StaleError(f"kept {directory.name} on '{hypervisor}': unknown or booted now")
        return Check.NEEDED

    def perform(self, action: LabStep) -> None:
        lab = self.ctx.manifest.lab
        match action:
            case BuildClosures():
                machines = self.ctx.manifest.builders.values()
                nix.build(
                    action.installables,
                    lab.build_timeout_s,
                    builders=builders_option(machines),
                    local=lab.build_locally,
                )
            case RemoveKernel() if action.hypervisor is not None:
                self.ctx.machine(action.hypervisor).remove_kernel_copy(action.directory)
            case RemoveKernel():
                kernel_build.remove(lab.layout, action.directory)
            case MakeView() if action.hypervisor is not None:
                self.ctx.machine(action.hypervisor).ensure_views([action.view], lab.layout)
            case MakeView():
                views.ensure(lab.layout.views_lock, [action.view])
            case BuildKernel():
                kernel = self.ctx.manifest.kernels[action.name]
                if not isinstance(kernel.source, KernelBuild):
                    raise ReconcileError(f"kernel '{kernel.name}' is prebuilt: nothing to build")
                key = action.directory.name.removeprefix(f"{kernel.name}-")
                job = KernelJob(kernel.name, kernel.source, key, lab.layout, lab.build_timeout_s)
                kernel_build.build(job, self._compile_on(kernel.source.builder))

    def _compile_on(self, builder: str | None) -> kernel_build.Compile | None:
        """A kernel's compile on its builder (None: here); SSH is loaded only then."""
        if builder is None:
            return None
        from reconcile.adapters.kernel_builder import KernelBuilder  # noqa: PLC0415 - paramiko

        lab = self.ctx.manifest.lab
        machine = self.ctx.manifest.builders[builder]
        return KernelBuilder(machine, lab.layout, lab.build_timeout_s).compile
