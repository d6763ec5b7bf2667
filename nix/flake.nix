{
  description = "reconcile's offline demo: NixOS-shaped system closures built from busybox";

  # The demo systems need no input: nixpkgs cannot be fetched offline. Every derivation's
  # builder is a static busybox that the set-up copies to ./bb/busybox (never committed),
  # which is why the flake is always used as a `path:` flake. See README.md.
  #
  # nixpkgs' lib is an input for the module checks and the docs only (nixosModules need
  # none: NixOS passes its own lib). flake.lock pins it, so building a demo system never
  # fetches it; here, use `--override-input nixpkgs-lib path:/work/shared/vendor/nixpkgs-lib`.
  inputs.nixpkgs-lib.url = "github:nix-community/nixpkgs.lib";

  outputs = { self, nixpkgs-lib }:
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

      # The NixOS module set (modules/index.nix; docs/nix.md). Each is a module importing
      # its file, so a file imported twice (controller imports monitoring) counts once.
      nixosModules =
        let
          index = import ./modules/index.nix;
          wrap = name: file: { _file = "reconcile#nixosModules.${name}"; imports = [ file ]; };
        in
        builtins.mapAttrs wrap (index.backends // index.modules)
        // { default = { imports = builtins.attrValues index.modules; }; };

      # Every backend evaluated, and every profile on each, against the NixOS option stubs
      # of tests/nixos-stub.nix (nixpkgs' lib only; real NixOS is not evaluated here).
      checks.${system} = import ./tests/checks.nix { inherit bb system; lib = nixpkgs-lib.lib; };

      # pkgs.reconcile for systems that have nixpkgs (package.nix; not evaluated here).
      overlays.default = final: prev: { reconcile = final.callPackage ./package.nix { }; };

      templates = {
        lab = { path = ./templates/lab; description = "a reconcile lab: lab.toml, an imageless and a disk system"; };
        imageless = { path = ./templates/imageless; description = "one imageless guest and its manifest"; };
        disk = { path = ./templates/disk; description = "one disk guest and its manifest"; };
      };
    };
}
