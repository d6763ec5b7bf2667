"""The NixOS modules of nix/modules, evaluated offline with nixpkgs' lib alone.

nix/tests/eval.nix evaluates them against nix/tests/nixos-stub.nix (the NixOS options
they set, with nixpkgs' names and types). Real NixOS is not evaluated here: no nixpkgs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

# ../shared/vendor beside the checkout, as CI and developers have it (NIXPKGS_LIB overrides).
LIB = Path(os.environ.get("NIXPKGS_LIB", ROOT.parent / "shared" / "vendor" / "nixpkgs-lib"))
NIX = shutil.which("nix")
# No skips: nix, the vendored lib, nix/bb/busybox and /bin/busybox all come with the
# README's set-up (scripts/setup.sh and ../shared); a missing one is a failure to see.
assert NIX is not None, "nix not found: run scripts/setup.sh"
assert (LIB / "lib" / "default.nix").exists(), f"no vendored nixpkgs lib at {LIB}"
NIX_FLAGS = ["--extra-experimental-features", "nix-command flakes"]


def nix_eval(expr: str) -> subprocess.CompletedProcess[str]:
    argv = [str(NIX), *NIX_FLAGS, "eval", "--json", "--impure", "--expr", expr]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def expression(modules: list[str], config: str, select: str) -> str:
    names = " ".join(f'"{m}"' for m in modules)
    return f"""
      let
        e = import {ROOT}/nix/tests/eval.nix {{ libPath = {LIB}/lib; }};
        files = e.index.backends // e.index.modules;
        s = e.system (map (n: files.${{n}}) [ {names} ] ++ [ ({config}) ]);
      in s.{select}
    """


def evaluate(modules: list[str], config: dict[str, Any], select: str, tmp: Path) -> Any:
    data = tmp / "config.json"
    data.write_text(json.dumps(config))
    proc = nix_eval(expression(modules, f"builtins.fromJSON (builtins.readFile {data})", select))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def fails(modules: list[str], config: str, select: str = "config.system.build") -> str:
    proc = nix_eval(expression(modules, config, select))
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


def test_imageless_mounts_the_store_and_modules_over_virtiofs_on_a_tmpfs_root(
    tmp_path: Path,
) -> None:
    fs = evaluate(["imageless"], {}, "config.fileSystems", tmp_path)
    assert (fs["/"]["device"], fs["/"]["fsType"]) == ("tmpfs", "tmpfs")
    assert fs["/nix/store"]["device"] == "store"
    assert fs["/nix/store"]["fsType"] == "virtiofs"
    assert "ro" in fs["/nix/store"]["options"]
    assert fs["/nix/store"]["neededForBoot"]
    assert (fs["/lib/modules"]["device"], fs["/lib/modules"]["fsType"]) == ("modules", "virtiofs")
    boot = evaluate(["imageless"], {}, "config.boot", tmp_path)
    assert "root=tmpfs" in boot["kernelParams"]
    assert "console=ttyS0,115200" in boot["kernelParams"]
    assert boot["bootspec"]["enable"] is True
    assert boot["loader"]["grub"]["enable"] is False


def test_the_readiness_line_is_the_one_reconcile_waits_for(tmp_path: Path) -> None:
    from reconcile.orchestration.guests import READY_PREFIX  # noqa: PLC0415

    unit = evaluate(["imageless"], {}, "config.systemd.services.reconcile-ready", tmp_path)
    assert f'line="{READY_PREFIX}$(readlink /run/current-system)"' in unit["script"]
    assert "/dev/ttyS0" in unit["script"]
    assert unit["wantedBy"] == ["multi-user.target"]


def test_the_root_size_comes_from_its_option(tmp_path: Path) -> None:
    config = {"reconcile": {"imageless": {"rootSize": "2G", "modules": False}}}
    fs = evaluate(["imageless"], config, "config.fileSystems", tmp_path)
    assert "size=2G" in fs["/"]["options"]
    assert "/lib/modules" not in fs


def test_disk_builds_its_image_through_system_build_images_with_the_size_option(
    tmp_path: Path,
) -> None:
    config = {"reconcile": {"disk": {"size": 20480}}}
    image = evaluate(["disk"], config, "config.system.build.images.qemu.passthru.config", tmp_path)
    assert image["virtualisation"]["diskSize"] == 20480
    assert image["image"]["efiSupport"] is False
    assert image["image"]["format"] == "qcow2"
    fs = evaluate(["disk"], config, 'config.fileSystems."/"', tmp_path)
    assert fs["fsType"] == "ext4"
    assert fs["autoResize"]
    assert evaluate(["disk"], config, "config.services.openssh.enable", tmp_path)


def test_baremetal_is_reached_over_ssh_and_prints_no_readiness_line(tmp_path: Path) -> None:
    config = {"reconcile": {"ssh": {"authorizedKeys": ["ssh-ed25519 AAAA deploy"]}}}
    got = evaluate(["baremetal"], config, "config", tmp_path)
    assert got["services"]["openssh"]["enable"]
    assert got["users"]["users"]["root"]["openssh"]["authorizedKeys"]["keys"] == [
        "ssh-ed25519 AAAA deploy"
    ]
    assert "reconcile-ready" not in got["systemd"]["services"]
    assert got["reconcile"]["backend"] == "baremetal"


def test_services_reconcile_is_the_unit_pair_install_timer_writes(tmp_path: Path) -> None:
    config = {
        "services": {
            "reconcile": {
                "enable": True,
                "manifest": "/etc/reconcile/lab.toml",
                "interval": "5min",
                "stateDir": "/var/lib/reconcile/lab",
                "metricsPath": "/var/lib/prometheus/node-exporter/reconcile.prom",
                "startTimeout": "2h",
            }
        }
    }
    systemd = evaluate(["imageless", "reconcile"], config, "config.systemd", tmp_path)
    timer = systemd["timers"]["reconcile-gitops"]
    assert timer["timerConfig"]["OnUnitInactiveSec"] == "5min"
    assert timer["wantedBy"] == ["timers.target"]
    service = systemd["services"]["reconcile-gitops"]
    sc = service["serviceConfig"]
    assert sc["Type"] == "oneshot"
    assert sc["TimeoutStartSec"] == "2h"
    assert sc["SuccessExitStatus"] == "2 3 4"
    assert sc["NoNewPrivileges"] is True
    assert "ProtectSystem" not in sc  # its mount namespace would hide the views from libvirt
    assert service["restartIfChanged"] is False
    argv = shlex.split(sc["ExecStart"])
    assert argv[0].endswith("-reconcile/bin/reconcile")
    assert argv[1:] == [
        "gitops",
        "/etc/reconcile/lab.toml",
        "--report-dir",
        "/var/lib/reconcile/lab/reports",
        "--lock-timeout",
        "60s",
        "--metrics",
        "/var/lib/prometheus/node-exporter/reconcile.prom",
    ]
    assert "d /var/lib/reconcile/lab 0750 root root -" in systemd["tmpfiles"]["rules"]


def test_exec_start_keeps_percent_and_dollar_literal(tmp_path: Path) -> None:
    config = {"services": {"reconcile": {"enable": True, "manifest": "/etc/r/100%$x.toml"}}}
    sc = evaluate(
        ["reconcile"], config, "config.systemd.services.reconcile-gitops.serviceConfig", tmp_path
    )
    assert '"/etc/r/100%%$$x.toml"' in sc["ExecStart"]


def test_a_manifest_given_as_a_nix_path_gives_the_state_dir_and_interval(tmp_path: Path) -> None:
    manifest = tmp_path / "lab.toml"
    manifest.write_text(
        '[lab]\nname = "x"\nstate_dir = "/var/lib/reconcile/x"\n[gitops]\ninterval = "7min"\n'
    )
    config = f"{{ services.reconcile = {{ enable = true; manifest = {manifest}; }}; }}"
    proc = nix_eval(expression(["reconcile"], config, "config.systemd"))
    assert proc.returncode == 0, proc.stderr
    systemd = json.loads(proc.stdout)
    assert systemd["timers"]["reconcile-gitops"]["timerConfig"]["OnUnitInactiveSec"] == "7min"
    argv = shlex.split(systemd["services"]["reconcile-gitops"]["serviceConfig"]["ExecStart"])
    assert argv[2].startswith("/nix/store/") and argv[2].endswith("-lab.toml")
    assert argv[argv.index("--report-dir") + 1] == "/var/lib/reconcile/x/reports"
    wrong = (
        f"{{ services.reconcile = {{ enable = true; manifest = {manifest}; "
        'stateDir = "/var/lib/other"; }; }'
    )
    assert "is not the manifest's lab.state_dir" in fails(["reconcile"], wrong, "config.systemd")


@pytest.mark.parametrize(
    ("modules", "config"),
    [
        (["imageless"], '{ reconcile.imageles.rootSize = "1G"; }'),
        (["imageless"], '{ fileSystems."/srv".fstype = "xfs"; }'),
        (["imageless", "reconcile"], '{ services.reconcile.intervall = "5min"; }'),
        (["disk"], "{ reconcile.disk.sise = 10; }"),
        (["disk"], "{ image.modules.qemu.virtualisation.diskSise = 10; }"),
    ],
    ids=["reconcile-option", "nixos-suboption", "service-option", "disk", "image-variant"],
)
def test_a_misspelt_option_fails_evaluation(modules: list[str], config: str) -> None:
    # --json forces the whole configuration, the image variants' too
    assert "does not exist" in fails(modules, config, "config")


def test_a_wrongly_typed_value_fails_evaluation() -> None:
    err = fails(["disk"], '{ reconcile.disk.size = "20G"; }', "config.reconcile.disk.size")
    assert "is not of type" in err


def test_two_backends_conflict() -> None:
    err = fails(["imageless", "disk"], "{ }", "config.reconcile.backend")
    assert "conflicting definition" in err or "has conflicting" in err


def test_shares_mount_their_tags_and_refuse_the_backend_tags(tmp_path: Path) -> None:
    config = {
        "reconcile": {
            "mounts": {"shares": {"results": {"mountPoint": "/results"}, "src": {"readOnly": True}}}
        }
    }
    fs = evaluate(["imageless", "shares"], config, "config.fileSystems", tmp_path)
    assert fs["/results"]["device"] == "results"
    assert fs["/results"]["fsType"] == "virtiofs"
    assert fs["/mnt/src"]["options"] == ["ro", "nofail"]
    err = fails(["imageless", "shares"], "{ reconcile.mounts.shares.store = { }; }", "config")
    assert "a share's tag is" in err


def test_storage_volumes_are_file_systems(tmp_path: Path) -> None:
    config = {
        "reconcile": {"mounts": {"storage": {"scratch": {"device": "/dev/vdb", "fsType": "xfs"}}}}
    }
    fs = evaluate(["imageless", "storage"], config, "config.fileSystems", tmp_path)
    assert fs["/srv/scratch"]["device"] == "/dev/vdb"
    assert fs["/srv/scratch"]["fsType"] == "xfs"


def test_user_gets_keys_and_sudo(tmp_path: Path) -> None:
    config = {"reconcile": {"user": {"name": "dev", "authorizedKeys": ["ssh-ed25519 AAAA me"]}}}
    got = evaluate(["imageless", "user"], config, "config", tmp_path)
    user = got["users"]["users"]["dev"]
    assert user["isNormalUser"] and user["extraGroups"] == ["wheel"]
    assert user["openssh"]["authorizedKeys"]["keys"] == ["ssh-ed25519 AAAA me"]
    assert got["security"]["sudo"]["wheelNeedsPassword"] is False


def test_monitoring_points_the_node_exporter_at_reconciles_textfile_dir(tmp_path: Path) -> None:
    node = evaluate(
        ["imageless", "monitoring"], {}, "config.services.prometheus.exporters.node", tmp_path
    )
    assert node["enable"]
    assert "textfile" in node["enabledCollectors"]
    assert "--collector.textfile.directory=/var/lib/prometheus/node-exporter" in node["extraFlags"]
    config = {"services": {"reconcile": {"enable": True, "manifest": "/etc/reconcile/lab.toml"}}}
    sc = evaluate(
        ["imageless", "controller"],
        config,
        "config.systemd.services.reconcile-gitops.serviceConfig",
        tmp_path,
    )
    assert '"--metrics" "/var/lib/prometheus/node-exporter/reconcile.prom"' in sc["ExecStart"]


def test_fstests_runs_from_its_options_and_writes_results_to_the_share(tmp_path: Path) -> None:
    suite = {
        "enable": True,
        "testDev": "/dev/vdb",
        "scratchDev": "/dev/vdc",
        "tests": ["-g", "auto"],
    }
    config = {"reconcile": {"testSuites": {"fstests": suite}}}
    got = evaluate(["imageless", "fstests"], config, "config", tmp_path)
    text = got["environment"]["etc"]["xfstests/local.config"]["text"]
    assert "export TEST_DEV=/dev/vdb" in text and "export FSTYP=xfs" in text
    unit = got["systemd"]["services"]["fstests"]
    assert "xfstests-check -g auto" in unit["script"]
    assert "/results/fstests/$(hostname)" in unit["script"]
    assert unit["wantedBy"] == ["multi-user.target"]
    assert got["fileSystems"]["/results"]["device"] == "results"


BLKTESTS = {"type": "derivation", "name": "blktests", "outPath": "/nix/store/" + "0" * 32 + "-b"}


def test_blktests_runs_from_its_options(tmp_path: Path) -> None:
    suite = {"enable": True, "testDevs": ["/dev/vdb"], "package": BLKTESTS}
    config = {"reconcile": {"testSuites": {"blktests": suite}}}
    got = evaluate(["imageless", "blktests"], config, "config", tmp_path)
    assert "TEST_DEVS=(/dev/vdb)" in got["environment"]["etc"]["blktests/config"]["text"]
    assert "blktests -c /etc/blktests/config" in got["systemd"]["services"]["blktests"]["script"]


def test_every_backend_and_profile_evaluates() -> None:
    proc = nix_eval(
        f"let e = import {ROOT}/nix/tests/eval.nix {{ libPath = {LIB}/lib; }}; "
        "in map (s: builtins.seq (e.summary s) s.name) e.matrix"
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 3 * 5


def test_flake_check_passes_with_the_vendored_lib() -> None:
    argv = [str(NIX), *NIX_FLAGS, "flake", "check", "--no-write-lock-file"]
    argv += ["--override-input", "nixpkgs-lib", f"path:{LIB}", f"path:{ROOT / 'nix'}"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr


def demo_flake(tmp_path: Path) -> Path:
    """A copy of nix/ with busybox in place, for editing its modules or systems."""
    copy = tmp_path / "flake"
    shutil.copytree(ROOT / "nix", copy, ignore=shutil.ignore_patterns("result*", "bb"))
    (copy / "bb").mkdir()
    shutil.copy2("/bin/busybox", copy / "bb" / "busybox")
    return copy


def flake_eval(flake: Path, attr: str) -> subprocess.CompletedProcess[str]:
    argv = [str(NIX), *NIX_FLAGS, "eval", "--json", "--no-write-lock-file"]
    argv += ["--override-input", "nixpkgs-lib", f"path:{LIB}", f"path:{flake}#{attr}"]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)


def demo_config(flake: Path, system: str, select: str) -> Any:
    proc = flake_eval(flake, f"nixosConfigurations.{system}.config.{select}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_demo_systems_are_the_imageless_backend_on_the_demo_platform(tmp_path: Path) -> None:
    flake = demo_flake(tmp_path)
    assert demo_config(flake, "demo-a", "reconcile.backend") == "imageless"
    build = "system.build"
    # the initrd mounts the module's file systems, parents first (nix/stage-1-init.sh)
    assert demo_config(flake, "demo-a", f"{build}.initialRamdisk.mounts").splitlines() == [
        "tmpfs / tmpfs mode=0755,size=50% 0",
        "modules /lib/modules virtiofs ro 1",
        "store /nix/store virtiofs ro 0",
    ]
    params = demo_config(flake, "demo-a", f"{build}.toplevel.kernelParams").split()
    assert sorted(params) == ["console=ttyS0,115200", "root=tmpfs"]
    services = demo_config(flake, "demo-a", f"{build}.toplevel.serviceNames")
    assert services == "reconcile-ready"  # the module's readiness unit, run by stage 2
    a = demo_config(flake, "demo-a", f"{build}.initialRamdisk.drvPath")
    assert demo_config(flake, "demo-b", f"{build}.initialRamdisk.drvPath") == a

    module = flake / "modules" / "imageless.nix"
    module.write_text(module.read_text().replace('device = "store";', 'device = "stor";'))
    mounts = demo_config(flake, "demo-a", f"{build}.initialRamdisk.mounts")
    assert "stor /nix/store virtiofs ro 0" in mounts.splitlines()  # tests/real boots it


def test_a_misspelt_demo_setting_fails_evaluation(tmp_path: Path) -> None:
    flake = demo_flake(tmp_path)
    systems = flake / "systems.nix"
    systems.write_text(systems.read_text().replace("demo-c = { message", "demo-c = { mesage"))
    proc = flake_eval(flake, "packages.x86_64-linux.demo-c.drvPath")
    assert proc.returncode != 0
    assert "demo.mesage' does not exist" in proc.stderr
    assert "nix/systems.nix (demo-c)" in proc.stderr


def platform_system(config: str) -> subprocess.CompletedProcess[str]:
    return nix_eval(
        f"""
        let
          lib = import {LIB}/lib;
          platform = import {ROOT}/nix/platform {{ bb = "/bin/busybox"; system = "x86_64-linux"; }};
          s = lib.evalModules {{
            modules = [ {ROOT}/nix/modules/imageless.nix {ROOT}/nix/modules/shares.nix platform
              {{ networking.hostName = "t"; }} ({config}) ];
          }};
        in s.config.system.build.toplevel.drvPath
        """
    )


def test_the_demo_platform_refuses_what_it_does_not_implement() -> None:
    assert platform_system("{ }").returncode == 0
    proc = platform_system("{ reconcile.mounts.shares.results = { }; }")
    assert proc.returncode != 0
    assert "mounts only file systems needed for boot, not /mnt/results" in proc.stderr
    proc = platform_system("{ boot.loader.grub.enable = lib.mkForce true; }")
    assert "has no boot loader" in proc.stderr
    proc = platform_system("{ environment.systemPackages = [ ]; }")
    assert "does not exist" in proc.stderr


@pytest.mark.parametrize("template", ["lab", "imageless", "disk"])
def test_template_manifests_validate(template: str, tmp_path: Path) -> None:
    copy = tmp_path / template
    shutil.copytree(ROOT / "nix" / "templates" / template, copy)
    proc = subprocess.run(
        [sys.executable, "-m", "reconcile", "validate", str(copy / "lab.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_nix_reference_is_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_nix_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_the_package_takes_the_python_source_and_nothing_else() -> None:
    # package.nix needs nixpkgs' python3Packages; stand-ins show what it is given.
    proc = nix_eval(
        f"""
        let
          lib = import {LIB}/lib;
          fake = name: {{ type = "derivation"; inherit name; outPath = "/nix/store/x-${{name}}"; }};
          deps = [ "tomlkit" "jsonschema" "networkx" "libvirt" "fabric" "structlog" ];
          py = lib.genAttrs deps fake // {{
            buildPythonApplication = a: a;
            setuptools = fake "setuptools";
          }};
          p = import {ROOT}/nix/package.nix {{
            inherit lib;
            python3Packages = py;
            nix = fake "nix"; git = fake "git"; openssh = fake "openssh";
            qemu-utils = fake "qemu-utils";
          }};
        in {{
          inherit (p) pname version;
          src = "${{p.src}}";
          deps = map (d: d.name) p.dependencies;
        }}
        """
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert (got["pname"], got["version"]) == ("reconcile", "0.1.0")
    src = Path(got["src"])
    assert sorted(p.name for p in src.iterdir()) == [
        "README.md",
        "pyproject.toml",
        "reconcile",
        "schema",
    ]
    assert (src / "reconcile" / "cli.py").exists()
    assert not list(src.rglob("__pycache__"))
    assert got["deps"] == ["tomlkit", "jsonschema", "networkx", "libvirt", "fabric", "structlog"]


def repo_flake(tmp_path: Path) -> str:
    """This repository's package sources and nix/ as a git repository: the shape users
    fetch (`git+...?dir=nix`), where package.nix finds the Python source at `../`."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, repo / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "bb", "result*")
    for name in ("reconcile", "schema", "nix"):
        shutil.copytree(ROOT / name, repo / name, ignore=skip)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "sources"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return f"git+file://{repo}?dir=nix"


def package_eval(flake: str, attr: str, apply: str, *, stub: bool = True) -> Any:
    argv = [str(NIX), *NIX_FLAGS, "eval", "--json", "--no-write-lock-file"]
    argv += ["--override-input", "nixpkgs-lib", f"path:{LIB}"]
    if stub:
        argv += ["--override-input", "nixpkgs", f"path:{ROOT / 'nix' / 'tests' / 'nixpkgs-stub'}"]
    argv += [f"{flake}#{attr}", "--apply", apply]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_package_and_app_with_a_nixpkgs(tmp_path: Path) -> None:
    """packages.<system>.reconcile and apps.<system>.default, evaluated against the stub
    nixpkgs (nix/tests/nixpkgs-stub): its name and version are pyproject's, its
    dependencies pyproject's, its source this repository's package and nothing else."""
    flake = repo_flake(tmp_path)
    pkg = package_eval(
        flake,
        "packages.x86_64-linux",
        "ps: { inherit (ps.reconcile) name version; same = ps.default == ps.reconcile; "
        "deps = map (d: d.name) ps.reconcile.dependencies; src = ps.reconcile.src.outPath; "
        "main = ps.reconcile.meta.mainProgram; imports = ps.reconcile.pythonImportsCheck; }",
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert pkg["name"] == f"reconcile-{project['version']}" and pkg["same"]
    wanted = [d.split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]]
    assert pkg["deps"] == [{"libvirt-python": "libvirt"}.get(d, d) for d in wanted]
    assert sorted(os.listdir(pkg["src"])) == ["README.md", "pyproject.toml", "reconcile", "schema"]
    assert (Path(pkg["src"]) / "reconcile" / "cli.py").exists()
    assert (pkg["main"], pkg["imports"]) == ("reconcile", ["reconcile"])
    app = package_eval(flake, "apps.x86_64-linux.default", "a: a")
    assert app["type"] == "app" and app["program"].endswith(f"-{pkg['name']}/bin/reconcile")


def test_without_a_nixpkgs_there_is_no_package_and_nothing_is_fetched(tmp_path: Path) -> None:
    """The default: nixpkgs follows the lib, which has no packages; nothing to download."""
    got = package_eval(
        repo_flake(tmp_path),
        "packages.x86_64-linux",
        "ps: [ (ps ? reconcile) (ps ? default) (ps ? demo-a) ]",
        stub=False,
    )
    assert got == [False, False, True]


def test_a_lab_flake_gives_its_nixpkgs_to_the_package_by_the_templates_one_line(
    tmp_path: Path,
) -> None:
    """The `lab` template's `reconcile.inputs.nixpkgs-lib.follows = "nixpkgs"` reaches the
    package too (reconcile's `nixpkgs` follows its `nixpkgs-lib`); the stub stands in for
    the lab's nixpkgs."""
    reconcile_flake = repo_flake(tmp_path)
    lab = tmp_path / "lab"
    lab.mkdir()
    stub = ROOT / "nix" / "tests" / "nixpkgs-stub"
    (lab / "flake.nix").write_text(
        "{\n"
        f'  inputs.nixpkgs.url = "path:{stub}";\n'
        f'  inputs.reconcile.url = "{reconcile_flake}";\n'
        '  inputs.reconcile.inputs.nixpkgs-lib.follows = "nixpkgs";\n'
        "  outputs = { self, nixpkgs, reconcile }: {\n"
        "    name = reconcile.packages.x86_64-linux.reconcile.name;\n"
        "  };\n"
        "}\n"
    )
    argv = [str(NIX), *NIX_FLAGS, "eval", "--json", "--no-write-lock-file"]
    argv += ["--override-input", "nixpkgs/nixpkgs-lib", f"path:{LIB}", f"path:{lab}#name"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert json.loads(proc.stdout) == f"reconcile-{version}"


def test_blktests_without_a_package_says_nixpkgs_has_none() -> None:
    """nixpkgs has no blktests package: the suite's default fails with what to set."""
    said = fails(
        ["imageless", "blktests"],
        "{ reconcile.testSuites.blktests.enable = true; }",
        "config.environment.systemPackages",
    )
    assert "nixpkgs has no blktests; set it to a package" in said
