{
  description = "A reconcile lab: one imageless and one disk system, run by lab.toml";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    # Where reconcile's flake is (its nix/ directory): a checkout, or its git repository
    # with `?dir=nix`. Change this to yours.
    reconcile.url = "path:/opt/reconcile/nix";
    # reconcile's flake takes nixpkgs' lib for its checks, and nixpkgs for its package
    # (packages.x86_64-linux.reconcile); its `nixpkgs` input follows `nixpkgs-lib`, so
    # this one line gives it yours for both.
    reconcile.inputs.nixpkgs-lib.follows = "nixpkgs";
  };

  outputs = { self, nixpkgs, reconcile }:
    let
      system = name: modules: nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = modules ++ [{ networking.hostName = name; system.stateVersion = "25.05"; }];
      };
    in
    {
      # The names lab.toml's `system = ...` refer to.
      nixosConfigurations = {
        worker = system "worker" [
          reconcile.nixosModules.imageless
          reconcile.nixosModules.shares
          reconcile.nixosModules.devel
          {
            # the guest's side of lab.toml's `shares`
            reconcile.mounts.shares.results.mountPoint = "/results";
          }
        ];
        server = system "server" [
          reconcile.nixosModules.disk
          reconcile.nixosModules.monitoring
          {
            reconcile.disk.size = 20480;
            reconcile.ssh.authorizedKeys = [ ]; # the controller's deploy key
          }
        ];
      };
    };
}
