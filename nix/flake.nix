{
  description = "reconcile's offline demo: NixOS-shaped system closures built from busybox";

  # No inputs: nixpkgs cannot be fetched offline. Every derivation's builder is a static
  # busybox that the set-up copies to ./bb (never committed), which is why the flake is
  # always used as a `path:` flake.
  outputs = { self }:
    let
      system = "x86_64-linux";
      bb = "${builtins.path { path = ./bb; name = "busybox"; }}/busybox";
      lib = import ./lib.nix { inherit bb system; };
      systems = import ./systems.nix;
      toplevels = builtins.mapAttrs (name: options: lib.mkSystem name options) systems;
    in
    {
      nixosConfigurations = builtins.mapAttrs
        (name: toplevel: { config.system.build.toplevel = toplevel; })
        toplevels;
      packages.${system} = toplevels // { initrd = lib.initrd; };
    };
}
