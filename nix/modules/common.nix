# What every reconcile system has, whatever its backend: the backend's name, a console on
# the serial port reconcile reads, NixOS bootspec (`boot.json` in the toplevel), and the
# readiness line `reconcile-ready: <toplevel>` (reconcile/orchestration/guests.py,
# READY_PREFIX) printed on that console once the system is up.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;
  cfg = config.reconcile;
in
{
  options.reconcile = {
    backend = mkOption {
      type = types.enum [ "imageless" "disk" "baremetal" ];
      description = ''
        How reconcile runs this system. Set by the backend module imported
        (`nixosModules.imageless`, `.disk` or `.baremetal`); importing two is an error.
      '';
    };
    console = mkOption {
      type = types.nullOr types.str;
      default = "ttyS0,115200";
      description = ''
        `console=` kernel parameter for the serial console reconcile reads readiness from
        (libvirt's `<serial>` port 0). `null` adds none.
      '';
    };
    readiness = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Print `reconcile-ready: <toplevel>` on the serial console when the system is up:
          the line reconcile waits for after starting a guest.
        '';
      };
      after = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "sshd.service" ];
        description = "Units the readiness line waits for (ordering and a `Wants=`).";
      };
    };
  };

  config = {
    boot.kernelParams = lib.optional (cfg.console != null) "console=${cfg.console}";
    # `boot.json` in the toplevel: what reconcile reads the init and initrd from.
    boot.bootspec.enable = true;

    systemd.services.reconcile-ready = lib.mkIf cfg.readiness.enable {
      description = "reconcile: print the readiness line on the serial console";
      wantedBy = [ "multi-user.target" ];
      wants = cfg.readiness.after;
      after = [ "basic.target" ] ++ cfg.readiness.after;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
      };
      # /dev/console is the last console= given; the line must reach ttyS0 (what reconcile
      # reads) whichever that is, so it goes there as well when the console is elsewhere.
      script = ''
        line="reconcile-ready: $(readlink /run/current-system)"
        echo "$line" >/dev/console
        active=$(cat /sys/class/tty/console/active 2>/dev/null || true)
        if [ "''${active##* }" != ttyS0 ] && [ -c /dev/ttyS0 ]; then
          echo "$line" >/dev/ttyS0 || true
        fi
      '';
    };
  };
}
