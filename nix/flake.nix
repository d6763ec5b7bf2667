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
  # nixpkgs, for packages.<system>.reconcile and apps (package.nix) only. By default it is
  # the lib above, which has no packages, so nothing is fetched and those two outputs are
  # absent; a lab's flake gives its own nixpkgs (`inputs.reconcile.inputs.nixpkgs.follows
  # = "nixpkgs"`, or nixpkgs-lib's, which this follows), or the command line does
  # (`--override-input nixpkgs github:NixOS/nixpkgs/nixos-unstable`).
  inputs.nixpkgs.follows = "nixpkgs-lib";

  outputs = { self, nixpkgs-lib, nixpkgs }:
    let
      system = "x86_64-linux";
      # bb/ holds more than busybox (the disk guests' inputs, below): only busybox goes into
      # this store path, which therefore stays the one every closure was built with.
      bb = "${builtins.path { path = ./bb; name = "busybox"; filter = p: _: baseNameOf p == "busybox"; }}/busybox";
      lib = nixpkgs-lib.lib;
      # What scripts/setup.sh copies from the host into bb/ (gitignored) for the disk
      # backend: each its own store path, imported only when a disk system is evaluated.
      fromSetup = file: name:
        let path = ./bb + "/${file}"; in
        if builtins.pathExists path then builtins.path { inherit path name; }
        else throw "nix/bb/${file} is missing: run `make setup` (scripts/setup.sh), which copies the disk guests' kernel, tools and the controller's demo SSH key there";
      disk = {
        kernel = fromSetup "disk/kernel" "linux-debian";
        tools = fromSetup "disk/tools" "disk-image-tools";
        nix = fromSetup "disk/nix" "nix-debian";
        dropbear = fromSetup "disk/dropbear" "dropbear-debian";
        bash = fromSetup "disk/bash" "bash-static-debian";
        authorizedKey = builtins.replaceStrings [ "\n" ] [ "" ]
          (builtins.readFile (fromSetup "authorized_keys" "authorized_keys"));
      };
      platform = import ./platform { inherit bb system disk; };
      systems = import ./systems.nix;
      reserved = [ "busybox" "initrd" "demo-seed" ];
      backends = {
        imageless = self.nixosModules.imageless;
        # Disk systems accept the controller's demo key (scripts/setup.sh) and get a small
        # image (the module's default, 8 GiB, would be stored whole as the raw variant).
        # Their systems.nix `shares` (tag -> mount point: read-only, nofail; or the
        # share's options) are reconcile.mounts.shares, mounted at stage 2 (platform/).
        disk = { config, lib, ... }: {
          imports = [ self.nixosModules.disk self.nixosModules.shares ];
          options.demo.shares = lib.mkOption {
            type = with lib.types; attrsOf (either str (submodule {
              options = {
                mountPoint = lib.mkOption { type = str; };
                readOnly = lib.mkOption { type = bool; default = true; };
                required = lib.mkOption { type = bool; default = false; };
              };
            }));
            default = { };
            description = "virtiofs tags to mount points (reconcile.mounts.shares).";
          };
          config = {
            reconcile.ssh.authorizedKeys = [ disk.authorizedKey ];
            reconcile.disk.size = lib.mkDefault 512;
            reconcile.mounts.shares = lib.mapAttrs
              (_: s: if builtins.isString s then { mountPoint = s; readOnly = true; } else s)
              config.demo.shares;
          };
        };
      };
      # A demo system: the exported backend module (systems.nix's `backend`, imageless
      # unless said) on the demo platform, with its settings (systems.nix; an unknown one
      # is an evaluation error).
      demo = name: settings: lib.evalModules {
        modules = [
          (backends.${settings.backend or "imageless"}
            or (throw "nix/systems.nix (${name}): backend must be one of ${toString (builtins.attrNames backends)}"))
          platform
          {
            _file = "nix/systems.nix (${name})";
            networking.hostName = name;
            demo = removeAttrs settings [ "backend" ];
          }
        ];
      };
      nixosConfigurations = builtins.mapAttrs
        (name: settings:
          if builtins.elem name reserved
          then throw "nix/systems.nix: ${name} is a reserved name"
          else demo name settings)
        systems;
      toplevels = builtins.mapAttrs (_: s: s.config.system.build.toplevel) nixosConfigurations;
      builders = import ./lib.nix { inherit bb system; };
      inherit (builders) busybox;
      # reconcile itself, where nixpkgs is a real one (see the nixpkgs input)
      withPackages = nixpkgs ? legacyPackages;
      reconcile = nixpkgs.legacyPackages.${system}.callPackage ./package.nix { };
    in
    {
      inherit nixosConfigurations;
      packages.${system} = toplevels // {
        inherit busybox;
        # The initrd of every demo system (they have the same file systems).
        initrd = (demo "demo" { }).config.system.build.initialRamdisk;
        # A config share's content for tests (a share whose source is a store path the
        # lab's flake built): seed.txt, one line.
        demo-seed = builders.run "reconcile-demo-seed" { seed = "reconcile demo seed"; } ''
          set -e
          ${bb} mkdir $out
          ${bb} printf '%s\n' "$seed" > $out/seed.txt
        '';
      } // lib.optionalAttrs withPackages { inherit reconcile; default = reconcile; };

      apps.${system} = lib.optionalAttrs withPackages {
        default = { type = "app"; program = "${reconcile}/bin/reconcile"; };
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

      # pkgs.reconcile for systems that have nixpkgs (package.nix).
      overlays.default = final: prev: { reconcile = final.callPackage ./package.nix { }; };

      templates = {
        lab = { path = ./templates/lab; description = "a reconcile lab: lab.toml, an imageless and a disk system"; };
        imageless = { path = ./templates/imageless; description = "one imageless guest and its manifest"; };
        disk = { path = ./templates/disk; description = "one disk guest and its manifest"; };
      };
    };
}
