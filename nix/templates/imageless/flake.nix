{
  description = "One imageless guest for reconcile (tmpfs root, the store over virtiofs)";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    # Where reconcile's flake is (its nix/ directory). Change this to yours.
    reconcile.url = "path:/opt/reconcile/nix";
    reconcile.inputs.nixpkgs-lib.follows = "nixpkgs";
  };

  outputs = { self, nixpkgs, reconcile }: {
    nixosConfigurations.guest = nixpkgs.lib.nixosSystem {
      system = "x86_64-linux";
      modules = [
        reconcile.nixosModules.imageless
        reconcile.nixosModules.user
        {
          networking.hostName = "guest";
          system.stateVersion = "25.05";
          reconcile.user.name = "dev";
          reconcile.user.authorizedKeys = [ ]; # your key
        }
      ];
    };
  };
}
