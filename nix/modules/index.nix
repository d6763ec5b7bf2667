# The module set, name -> file: what the flake exports as `nixosModules.<name>`, what the
# offline tests evaluate and what docs/nix.md is generated from.
{
  backends = {
    imageless = ./imageless.nix;
    disk = ./disk.nix;
    baremetal = ./baremetal.nix;
  };
  modules = {
    user = ./user.nix;
    shares = ./shares.nix;
    storage = ./storage.nix;
    devel = ./profiles/devel.nix;
    build-tools = ./profiles/build-tools.nix;
    monitoring = ./profiles/monitoring.nix;
    controller = ./profiles/controller.nix;
    fstests = ./test-suites/fstests.nix;
    blktests = ./test-suites/blktests.nix;
    reconcile = ./reconcile-service.nix;
  };
  profiles = [ "devel" "build-tools" "monitoring" "controller" ];
}
