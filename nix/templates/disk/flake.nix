{
  description = "One disk guest for reconcile (a qcow2 image, updated in place over SSH)";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    # Where reconcile's flake is (its nix/ directory). Change this to yours.
    reconcile.url = "path:/opt/reconcile/nix";
    reconcile.inputs.nixpkgs-lib.follows = "nixpkgs";
  };

  outputs = { self, nixpkgs, reconcile }: {
    nixosConfigurations.server = nixpkgs.lib.nixosSystem {
      system = "x86_64-linux";
      modules = [
        reconcile.nixosModules.disk
        {
          networking.hostName = "server";
          system.stateVersion = "25.05";
          reconcile.disk.size = 20480; # MiB
          reconcile.ssh.authorizedKeys = [ ]; # the controller's deploy key
        }
      ];
    };
  };
}
