# The demo systems, as data: name -> settings (the demo platform's `demo.*` options,
# platform/default.nix). Each system is a backend module on the demo platform with these
# settings (flake.nix). Tests copy this directory and edit this file to change one
# system's closure and nothing else.
#   backend:         "imageless" (the default: nixosModules.imageless) or "disk"
#                    (nixosModules.disk: boots from its own image, system.build.images.qemu
#                    and .raw, 512 MiB; runs an SSH daemon that accepts the controller's
#                    demo key; needs `make setup`, see README.md)
#   message:         printed on the console at boot (changing it changes the closure)
#   switchBehaviour: "ok" | "fail" (exit 1, change nothing) | "degraded" (switch, exit 4)
#   failBuild:       true makes the build fail (for tests of build errors)
#   healthy:         false writes "broken" to etc/reconcile-health (for health-check tests)
#   switchDelay:     seconds switch-to-configuration waits before acting
#   sshd:            false: switch and test stop the host's SSH daemon (baremetal tests)
#   probeShares:     virtiofs tags the guest tries to write to at boot (README.md)
#   shares:          (disk systems) virtiofs tag -> mount point, mounted read-only and
#                    nofail at stage 2 (reconcile.mounts.shares; README.md), or tag ->
#                    { mountPoint; readOnly ? true; required ? false; }
{
  demo-a = { message = "demo system a"; };
  demo-b = { message = "demo system b"; };
  demo-c = { message = "demo system c"; };
  demo-broken = { failBuild = true; };
  # `seed`: a config share (e.g. packages.x86_64-linux.demo-seed), when the guest has one.
  demo-disk = { backend = "disk"; message = "demo disk system"; shares = { seed = "/etc/reconcile-seed"; }; };
  demo-disk-b = { backend = "disk"; message = "demo disk system b"; shares = { seed = "/etc/reconcile-seed"; }; };
}
