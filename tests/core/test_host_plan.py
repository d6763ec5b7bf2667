"""Pure core for baremetal hosts: probe -> diff -> plan -> report."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconcile.core.errors import ManifestError, ReconcileError
from reconcile.core.hosts.baremetal import (
    HostChangeKind,
    HostIntent,
    HostObservation,
    diff_host,
    parse_probe,
)
from reconcile.core.manifest import parse_manifest
from reconcile.core.plan.actions import Activate, CheckHealth, Reboot
from reconcile.core.plan.diff import Diff
from reconcile.core.plan.graph import make_plan
from reconcile.core.plan.report import render_json, render_text
from reconcile.core.plan.select import select

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHf0ZbUiv2XH5hs3mSz0t8Kb0cYt6a9eXr0JqG3VZbWc"
OLD, NEW = "/nix/store/old-system", "/nix/store/new-system"


def host(extra: str = "", name: str = "bm1") -> HostIntent:
    text = f"""
[lab]
name = "t"
state_dir = "/state"
[hosts.{name}]
system = "sys"
ssh = {{ target = "root@10.0.0.2", host_key = "{KEY}" }}
tags = ["rack1"]
{extra}
"""
    manifest = parse_manifest(text.encode(), Path("/lab/m.toml"))
    return HostIntent(manifest.hosts[name], NEW, "path:/lab#sys")


def seen(current: str | None = OLD, **more: object) -> HostObservation:
    values: dict[str, object] = {
        "current": current,
        "booted": current,
        "boot_id": "boot-1",
        "systemd": "running",
        "profile": current,
        "confirmed": current,
    }
    values.update(more)
    return HostObservation(**values)  # type: ignore[arg-type]


def plan_keys(*changes: object, unbuilt: dict[str, str] | None = None) -> list[str]:
    diff = Diff("t", (), (), hosts=tuple(changes))  # type: ignore[arg-type]
    return make_plan(diff, unbuilt or {}).action_keys()


def test_probe_reads_profile_and_confirmation() -> None:
    out = (
        "current=/a\nbooted=/a\nprofile=/b\nconfirmed=\nboot_id=x\nloader=systemd-boot\n"
        "systemd=absent\nend=ok\n"
    )
    got = parse_probe(out)
    assert (got.profile, got.confirmed, got.has_systemd) == ("/b", None, False)
    assert got.loader == "systemd-boot"
    assert parse_probe(out.replace("systemd-boot", "")).loader == ""


def test_a_reboot_boots_the_new_system_once_where_systemd_boot_is() -> None:
    boot = 'activation = "boot"\nreboot = true'
    once = seen(loader="systemd-boot")
    change = diff_host(host(boot), once)
    assert change.kind is HostChangeKind.SWITCH
    assert "once (systemd-boot" in change.note
    plan = make_plan(Diff("t", (), (), hosts=(change,)), {"bm1": "path:/lab#sys"})
    reboot = next(a for a in plan.actions() if isinstance(a, Reboot))
    assert reboot.fallback == OLD  # what it booted: the default until the new one is confirmed
    # another boot loader, boot_once = false, or nothing booted yet: an ordinary reboot
    for intent, observed in (
        (host(boot), seen()),
        (host(boot + "\nboot_once = false"), once),
        (host(boot), seen(loader="systemd-boot", booted=None)),
    ):
        change = diff_host(intent, observed)
        assert "once" not in change.note
        plan = make_plan(Diff("t", (), (), hosts=(change,)), {"bm1": "path:/lab#sys"})
        assert next(a for a in plan.actions() if isinstance(a, Reboot)).fallback == ""
    # profile already set, not booted: the reboot alone, once as well
    change = diff_host(host(boot), seen(loader="systemd-boot", profile=NEW))
    assert change.kind is HostChangeKind.REBOOT and "once (systemd-boot" in change.note
    plan = make_plan(Diff("t", (), (), hosts=(change,)), {})
    assert next(a for a in plan.actions() if isinstance(a, Reboot)).fallback == OLD


def test_switch_chain_and_its_previous_system() -> None:
    change = diff_host(host(), seen())
    assert change.kind is HostChangeKind.SWITCH
    assert (change.before, change.after) == (OLD, NEW)
    diff = Diff("t", (), (), hosts=(change,))
    plan = make_plan(diff, {"bm1": "path:/lab#sys"})
    assert plan.action_keys() == ["build", "bm1/copy", "bm1/profile", "bm1/activate", "bm1/health"]
    assert plan.dependencies("bm1/copy") == ["build"]
    # the steps that can roll back know what to: the system before this run
    activate, health = plan.action("bm1/activate"), plan.action("bm1/health")
    assert isinstance(activate, Activate) and isinstance(health, CheckHealth)
    assert activate.previous == health.previous == OLD
    assert plan.to_build == ("path:/lab#sys",)


def test_test_activation_leaves_the_profile_alone() -> None:
    change = diff_host(host('activation = "test"'), seen())
    assert plan_keys(change) == ["bm1/copy", "bm1/activate", "bm1/health"]


def test_in_sync_and_confirmed_is_a_noop() -> None:
    change = diff_host(host(), seen(NEW))
    assert change.kind is HostChangeKind.NOOP
    assert plan_keys(change) == []
    degraded = diff_host(host(), seen(NEW, systemd="degraded"))
    assert degraded.kind is HostChangeKind.NOOP and degraded.note == "systemd: degraded"


def test_active_but_never_confirmed_is_verified() -> None:
    change = diff_host(host(), seen(NEW, confirmed=OLD))
    assert change.kind is HostChangeKind.VERIFY
    keys = plan_keys(change)
    assert keys == ["bm1/health"]


def test_boot_without_reboot_policy_never_reboots() -> None:
    change = diff_host(host('activation = "boot"'), seen())
    assert change.kind is HostChangeKind.SWITCH and not change.reboot
    assert "reboot = false" in change.note
    assert "bm1/reboot" not in plan_keys(change)
    # set to boot, not booted, no reboot allowed: nothing to do now
    waiting = diff_host(host('activation = "boot"'), seen(profile=NEW))
    assert waiting.kind is HostChangeKind.NOOP and "next reboot" in waiting.note


def test_boot_with_reboot_policy_reboots_and_waits() -> None:
    change = diff_host(host('activation = "boot"\nreboot = true'), seen())
    assert plan_keys(change) == [
        "bm1/copy",
        "bm1/profile",
        "bm1/activate",
        "bm1/reboot",
        "bm1/health",
    ]
    booted_old = diff_host(host('activation = "boot"\nreboot = true'), seen(profile=NEW))
    assert booted_old.kind is HostChangeKind.REBOOT
    assert plan_keys(booted_old) == ["bm1/reboot", "bm1/health"]


def test_unknown_host_gets_no_actions_and_is_reported() -> None:
    change = diff_host(host(), None, "unreachable: timed out")
    assert change.kind is HostChangeKind.UNKNOWN
    diff = Diff("t", (), (), hosts=(change,))
    plan = make_plan(diff, {"bm1": "x"})
    assert plan.action_keys() == [] and plan.to_build == ()
    assert plan.unknown() == {"bm1": "unreachable: timed out"}
    text = render_text(plan)
    assert "? host bm1 (root@10.0.0.2:22) is unknown and left alone" in text
    assert "Warning: 1 guest(s) or host(s) could not be planned" in text


def test_report_text_and_json() -> None:
    change = diff_host(host(), seen())
    plan = make_plan(Diff("t", (), (), hosts=(change,)), {})
    text = render_text(plan)
    assert "~ host bm1 (root@10.0.0.2:22) will be switched to its new system" in text
    assert f"system: {OLD} -> {NEW}" in text
    assert text.rstrip().endswith("Plan: 1 host(s) to switch.")
    doc = render_json(plan)
    assert doc["hosts"] == [
        {
            "host": "bm1",
            "target": "root@10.0.0.2:22",
            "change": "switch",
            "before": OLD,
            "after": NEW,
            "note": "switch",
            "desired": {"system": NEW, "activation": "switch", "reboot": False},
        }
    ]
    assert doc["host_summary"]["switch"] == 1
    assert [a["key"] for a in doc["actions"]] == [
        "bm1/copy",
        "bm1/profile",
        "bm1/activate",
        "bm1/health",
    ]


def test_target_selects_hosts_by_name_and_tag() -> None:
    manifest = parse_manifest(
        f"""
[lab]
name = "t"
state_dir = "/s"
[hosts.bm1]
system = "s"
ssh = {{ target = "h1", host_key = "{KEY}" }}
tags = ["rack1"]
[hosts.bm2]
system = "s"
ssh = {{ target = "h2", host_key = "{KEY}" }}
""".encode(),
        Path("/m.toml"),
    )
    assert [h.name for h in select(manifest, ["tag:rack1"])[1]] == ["bm1"]
    assert [h.name for h in select(manifest, ["bm2"])[1]] == ["bm2"]
    with pytest.raises(ReconcileError, match="matches no guest or host"):
        select(manifest, ["bm3"])


def test_confirm_timeout_outlasts_the_health_checks_and_counts_whole_seconds() -> None:
    assert host().host.confirm_timeout_s == 120  # the default, 2min
    assert host('confirm_timeout = "45s"\nhealth_timeout = "30s"').host.confirm_timeout_s == 45
    for extra, said in (
        # 30s of checks + 10s to log in (connect_timeout): the host would roll back meanwhile
        ('confirm_timeout = "40s"\nhealth_timeout = "30s"', "must be longer than health_timeout"),
        ('confirm_timeout = "90500ms"', "must be a whole number of seconds"),
    ):
        with pytest.raises(ManifestError) as refused:
            host(extra)
        problems = [p.render() for p in refused.value.problems]
        assert any("hosts.bm1.confirm_timeout: " + said in p for p in problems), problems


def test_build_on_host_builds_there_first_and_not_in_the_plans_build() -> None:
    change = diff_host(host('build_on = "host"'), seen())
    diff = Diff("t", (), (), hosts=(change,))
    plan = make_plan(diff, {"bm1": "path:/lab#sys"})
    assert plan.action_keys() == [
        "bm1/build-on-host",
        "bm1/copy",
        "bm1/profile",
        "bm1/activate",
        "bm1/health",
    ]
    assert plan.to_build == ()
    assert 'built on the host (build_on = "host")' in render_text(plan)
