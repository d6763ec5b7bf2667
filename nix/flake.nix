{
  description = "reconcile's offline demo: NixOS-shaped system closures built from busybox";

  # No inputs: nixpkgs cannot be fetched offline. Every derivation's builder is a static
  # busybox that the set-up copies to ./bb/busybox (never committed), which is why the
  # flake is always used as a `path:` flake. See README.md.
  outputs = { self }:
    let
      system = "x86_64-linux";
      bb = "${builtins.path { path = ./bb; name = "busybox"; }}/busybox";
      lib = import ./lib.nix { inherit bb system; };
      systems = import ./systems.nix;
      reserved = [ "busybox" "initrd" ];
      toplevels = builtins.mapAttrs
        (name: options:
          if builtins.elem name reserved
          then throw "nix/systems.nix: ${name} is a reserved name"
          else lib.mkSystem name options)
        systems;
    in
    {
      nixosConfigurations = builtins.mapAttrs
        (name: toplevel: {
          config.system.build.toplevel = toplevel;
          config.system.build.initialRamdisk = lib.initrd;
          config.networking.hostName = name;
        })
        toplevels;
      packages.${system} = toplevels // { inherit (lib) busybox initrd; };
    };
}
