{
  description = "reconcile's offline demo: NixOS-shaped system closures built from busybox";

  # Every derivation's builder is a static busybox that the set-up copies to ./bb/busybox
  # (never committed), which is why the flake is always used as a `path:` flake. See
  # README.md.
  #
  # nixpkgs' lib (the module system) is the one input: the demo systems are evaluated with
  # it (platform/), so are the module checks and the docs (nixosModules need none: NixOS
  # passes its own lib). flake.lock pins it to the copy vendored here, which
  # scripts/setup.sh adds to the store under the lock's hash, so nothing is ever fetched.
  inputs.nixpkgs-lib.url = "github:nix-community/nixpkgs.lib";

  outputs = { self, nixpkgs-lib }:
    let
      system = "x86_64-linux";
      bb = "${builtins.path { path = ./bb; name = "busybox"; }}/busybox";
      lib = nixpkgs-lib.lib;
      platform = import ./platform { inherit bb system; };
      systems = import ./systems.nix;
      reserved = [ "busybox" "initrd" ];
      # A demo system: the exported imageless backend on the demo platform, with its
      # settings (systems.nix; an unknown one is an evaluation error).
      demo = name: settings: lib.evalModules {
        modules = [
          self.nixosModules.imageless
          platform
          { _file = "nix/systems.nix (${name})"; networking.hostName = name; demo = settings; }
        ];
      };
      nixosConfigurations = builtins.mapAttrs
        (name: settings:
          if builtins.elem name reserved
          then throw "nix/systems.nix: ${name} is a reserved name"
          else demo name settings)
        systems;
      toplevels = builtins.mapAttrs (_: s: s.config.system.build.toplevel) nixosConfigurations;
      busybox = (import ./lib.nix { inherit bb system; }).busybox;
    in
    {
      inherit nixosConfigurations;
      packages.${system} = toplevels // {
        inherit busybox;
        # The initrd of every demo system (they have the same file systems).
        initrd = (demo "demo" { }).config.system.build.initialRamdisk;
      };

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
      checks.${system} = import ./tests/checks.nix { inherit bb system lib; };

      # pkgs.reconcile for systems that have nixpkgs (package.nix; not evaluated here).
      overlays.default = final: prev: { reconcile = final.callPackage ./package.nix { }; };

      templates = {
        lab = { path = ./templates/lab; description = "a reconcile lab: lab.toml, an imageless and a disk system"; };
        imageless = { path = ./templates/imageless; description = "one imageless guest and its manifest"; };
        disk = { path = ./templates/disk; description = "one disk guest and its manifest"; };
      };
    };
}
