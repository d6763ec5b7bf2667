"""Closure diffs (core/closures.py): versions, additions, removals, sizes, bounded text."""

from __future__ import annotations

import pytest

from reconcile.core.closures import diff_closures, document, human, package, text_lines

H = "0" * 32


def p(name: str) -> str:
    return f"/nix/store/{H}-{name}"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (p("hello-2.12"), ("hello", "2.12")),
        (p("openssl-3.0.7-bin"), ("openssl", "3.0.7-bin")),
        (p("nixos-system-demo-a"), ("nixos-system-demo-a", "")),
        (p("linux-6.1.0-modules"), ("linux", "6.1.0-modules")),
        (p("python3.11-foo-1.0"), ("python3.11-foo", "1.0")),
    ],
)
def test_names_and_versions_split_where_nix_splits_them(
    path: str, expected: tuple[str, str]
) -> None:
    assert package(path) == expected


OLD = {p("sys-a"): 100, p("hello-2.12"): 1000, p("gone-1.0"): 50, p("same-1"): 7}
NEW = {p("sys-b"): 120, p("hello-2.13"): 1500, p("new-0.1"): 4000, p("same-1"): 7}


def test_the_diff_names_each_package_change_largest_first() -> None:
    d = diff_closures(p("sys-a"), p("sys-b"), OLD, NEW)
    assert [(c.name, c.kind, c.before, c.after, c.size_delta) for c in d.packages] == [
        ("new", "added", (), ("0.1",), 4000),
        ("hello", "changed", ("2.12",), ("2.13",), 500),
        ("sys-b", "added", (), ("",), 120),
        ("sys-a", "removed", ("",), (), -100),
        ("gone", "removed", ("1.0",), (), -50),
    ]
    assert (d.size_before, d.size_after) == (1157, 5627)
    assert (d.to_copy, d.to_copy_bytes) == (3, 5620)  # same-1 is already there
    assert d.counts() == {"changed": 1, "added": 2, "removed": 2, "resized": 0}


def test_the_text_is_a_summary_then_the_top_n() -> None:
    d = diff_closures(p("sys-a"), p("sys-b"), OLD, NEW)
    lines = text_lines(d, indent="", top=2)
    assert lines[0] == (
        "closure: 1 changed, 2 added, 2 removed; 1.1 KiB -> 5.5 KiB (+4.4 KiB); "
        "3 paths (5.5 KiB) not in the old one"
    )
    assert lines[1:] == [
        "  + new 0.1 (+3.9 KiB)",
        "  ~ hello: 2.12 -> 2.13 (+500 B)",
        "  ... and 3 more (--json lists all)",
    ]
    assert len(document(d)["packages"]) == 5


def test_an_unchanged_closure_has_no_entries() -> None:
    d = diff_closures(p("sys-a"), p("sys-a"), OLD, OLD)
    assert d.packages == () and d.to_copy == 0


def test_what_is_not_in_the_store_is_said_not_guessed() -> None:
    unbuilt = diff_closures(p("sys-a"), p("sys-b"), OLD, None)
    assert text_lines(unbuilt, indent="") == [
        "closure: not built yet (apply builds it; the diff shows once it is)"
    ]
    collected = diff_closures(p("sys-a"), p("sys-b"), None, NEW)
    assert text_lines(collected, indent="") == [
        "closure: 5.5 KiB (the old system is not in this machine's store: no diff)"
    ]
    assert document(collected)["counts"] is None


def test_human_sizes() -> None:
    assert [human(n) for n in (512, 2048, 5 << 20, 3 << 30)] == [
        "512 B",
        "2.0 KiB",
        "5.0 MiB",
        "3.0 GiB",
    ]


def test_drift_reports_carry_the_closure_diff_in_every_format() -> None:
    from reconcile.core.drift.report import (  # noqa: PLC0415
        DriftField,
        DriftItem,
        DriftReport,
        DriftStatus,
        render_html,
        render_json,
        render_markdown,
        render_text,
    )

    closure = diff_closures(p("sys-a"), p("sys-b"), OLD, NEW)
    item = DriftItem(
        "guest",
        "a",
        DriftStatus.DRIFTED,
        fields=(DriftField("system", p("sys-b"), p("sys-a")),),
        where="local",
        closure=closure,
    )
    report = DriftReport(lab="t", manifest="/lab.toml", generated_at=0.0, items=(item,))
    summary = text_lines(closure, indent="")[0]
    assert summary in render_text(report)
    assert render_json(report)["items"][0]["closure"]["counts"]["added"] == 2
    assert "closure: 1 changed, 2 added, 2 removed" in render_markdown(report)
    assert "closure: 1 changed, 2 added, 2 removed" in render_html(report)


def test_kernel_configs_differ_option_by_option() -> None:
    from reconcile.core.kernels.kconfig import diff_configs  # noqa: PLC0415

    old = {"PRINTK": "y", "SMP": "y", "LOG_BUF_SHIFT": "14"}
    new = {"PRINTK": "y", "PRINTK_TIME": "y", "LOG_BUF_SHIFT": "17", "SMP": "n"}
    assert diff_configs(old, new) == (
        ("LOG_BUF_SHIFT", "14", "17"),
        ("PRINTK_TIME", "n", "y"),
        ("SMP", "y", "n"),
    )
