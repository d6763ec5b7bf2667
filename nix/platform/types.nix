# The option helpers that the demo platform's declarations (./options.nix) and the module
# checks' stub (../tests/nixos-stub.nix) share: one spelling of a systemd unit's options.
lib:
let
  inherit (lib) mkOption types;
in
rec {
  opt = type: default: mkOption { inherit type default; };
  strs = opt (types.listOf types.str) [ ];
  unitOption = types.oneOf [ types.bool types.int types.str (types.listOf types.str) ];
  # What nixpkgs' lib/systemd-unit-options.nix declares for every unit, as far as used here.
  unitCommon = {
    description = opt types.str "";
    wantedBy = strs;
    wants = strs;
    requires = strs;
    after = strs;
    before = strs;
    unitConfig = opt (types.attrsOf unitOption) { };
  };
}
