# reconcile as a nixpkgs package: `overlays.default` (pkgs.reconcile, the default of
# services.reconcile.package), and packages.<system>.reconcile and apps.<system>.default
# where the flake's nixpkgs input is a real nixpkgs. It needs nixpkgs (its python3Packages):
# on the machines this was written on, which have no nixpkgs, it is evaluated against
# tests/nixpkgs-stub only, never built.
#
# The Python source is the repository around this flake, so the flake must be used with
# the repository in its source: `git+https://...?dir=nix` or `git+file:///...?dir=nix`,
# not a `path:` of nix/ alone (pure evaluation refuses `../`).
{ lib, python3Packages, nix, git, openssh, qemu-utils }:
let
  root = ../.;
  # pyproject.toml, README.md, reconcile/ and schema/, without caches.
  keep = [ "pyproject.toml" "README.md" "reconcile" "schema" ];
  src = lib.cleanSourceWith {
    src = root;
    name = "reconcile-source";
    filter = path: type:
      let
        rel = lib.removePrefix (toString root + "/") (toString path);
        top = builtins.head (lib.splitString "/" rel);
      in
      builtins.elem top keep && baseNameOf path != "__pycache__" && !(lib.hasSuffix ".pyc" path);
  };
in
python3Packages.buildPythonApplication {
  pname = "reconcile";
  version = (lib.importTOML (root + "/pyproject.toml")).project.version;
  pyproject = true;
  inherit src;
  build-system = [ python3Packages.setuptools ];
  dependencies = with python3Packages; [ tomlkit jsonschema networkx libvirt fabric structlog ];
  # What reconcile runs: nix, git (GitOps), ssh (hosts, signatures), qemu-img (disk guests).
  makeWrapperArgs = [ "--prefix" "PATH" ":" (lib.makeBinPath [ nix git openssh qemu-utils ]) ];
  pythonImportsCheck = [ "reconcile" ];
  meta = {
    description = "Plan and apply NixOS labs (imageless and disk guests, baremetal hosts) from one TOML manifest";
    license = lib.licenses.mit;
    mainProgram = "reconcile";
    platforms = lib.platforms.linux;
  };
}
