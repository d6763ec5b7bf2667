"""The entry point: parses arguments, configures logging, prints results, and exits.

This is the only module that prints or exits. Everything below it raises ReconcileError
(with a hint) for expected failures; those print as `error: ...` without a traceback
unless --debug is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from reconcile import __version__
from reconcile.adapters import files
from reconcile.core.drift import FORMATS as DRIFT_FORMATS
from reconcile.core.errors import ManifestError, ReconcileError
from reconcile.core.exits import ExitCode
from reconcile.core.gitops import timer_units
from reconcile.core.plan.report import render_dot
from reconcile.core.units import parse_duration
from reconcile.logs import configure_logging
from reconcile.orchestration import pipeline, runs

if TYPE_CHECKING:
    from reconcile.orchestration.executor import Result

EPILOG = """\
exit codes:
  0  success, no changes
  1  error (invalid manifest, failed action, unreachable host, lock held, ...)
  2  changes present (plan --detailed-exitcode, drift)
  3  apply: done, but a host's switch-to-configuration reported failed units (degraded)
  4  apply: a host failed activation or health checks and was rolled back

Run `reconcile COMMAND --help` for a command's options.
"""


def _cmd_validate(args: argparse.Namespace) -> ExitCode:
    manifest = pipeline.load(args.manifest, full=True)
    print(
        f"{args.manifest}: valid (lab '{manifest.lab.name}': {len(manifest.hypervisors)} "
        f"hypervisor(s), {len(manifest.kernels)} kernel(s), {len(manifest.guests)} guest(s), "
        f"{len(manifest.hosts)} host(s))"
    )
    return ExitCode.OK


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 5min)") from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1: {text!r}")
    return int(text)


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME|tag:TAG",
        help="limit to this guest, or to guests with this tag (repeatable)",
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="destroy guests of this lab that the manifest no longer has (never protected ones)",
    )


def _add_show_unmanaged(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--show-unmanaged",
        action="store_true",
        help="list every domain that is not this lab's (the text counts them per hypervisor; "
        "JSON always lists them)",
    )


def _cmd_plan(args: argparse.Namespace) -> ExitCode:
    if args.graph and args.json:
        raise ReconcileError("give --graph or --json, not both")
    outcome = runs.plan(
        args.manifest, runs.PlanOptions(tuple(args.target), args.prune), saved=args.out
    )
    if args.graph:  # the DAG alone on stdout, for `dot -Tsvg`
        print(render_dot(outcome.plan), end="")
    else:
        print(outcome.rendered(json_output=args.json, show_unmanaged=args.show_unmanaged), end="")
    if args.out:
        print(
            f"Saved the plan to {args.out}; apply it with: reconcile apply {args.out}",
            file=sys.stderr,
        )
    if outcome.lock_warning:
        print(f"warning: {outcome.lock_warning}", file=sys.stderr)
    unknown = outcome.plan.unknown()
    if unknown:
        print(
            f"error: the plan is incomplete: {', '.join(sorted(unknown))} could not be observed",
            file=sys.stderr,
        )
    conflicts = outcome.plan.conflicts()
    for name, why in sorted(conflicts.items()):
        print(f"error: the plan cannot converge: conflict at {name}: {why}", file=sys.stderr)
    blocked = outcome.plan.blocked  # `after` what could not be planned: not clean either
    for name, why in sorted(blocked.items()):
        print(f"error: the plan cannot converge: {name} is blocked: {why}", file=sys.stderr)
    if unknown or conflicts or blocked:
        return ExitCode.ERROR
    if args.detailed_exitcode and outcome.plan.has_changes():
        return ExitCode.CHANGES
    return ExitCode.OK


def _confirm() -> bool:
    if not sys.stdin.isatty():
        raise ReconcileError(
            "refusing to apply without confirmation (standard input is not a terminal)",
            hint="pass --yes to apply without asking",
        )
    answer = input("Apply these changes? Only 'yes' is accepted: ")
    return answer.strip() == "yes"


def _summary(
    results: list[Result],
    unknown: dict[str, str],
    conflicts: dict[str, str],
    blocked: Mapping[str, str] | None = None,
) -> str:
    """Per guest and host: its status, each step's outcome and time, and what went wrong.
    `blocked`: machines the plan left out, `after` one that could not be planned."""
    from reconcile.orchestration.executor import (  # noqa: PLC0415 - see _cmd_apply
        Outcome,
        SubjectStatus,
        by_subject,
        exit_code,
        subject_status,
    )

    blocked = blocked or {}
    subjects = by_subject(results)
    lines = ["", "Apply results:"]
    width = max((len(s) for s in [*subjects, *unknown, *conflicts, *blocked]), default=0)
    for subject, items in sorted(subjects.items()):
        steps = ", ".join(
            f"{r.action.kind.value} {r.outcome.value} {r.seconds:.1f}s" for r in items
        )
        lines.append(f"  {subject.ljust(width)}  {subject_status(items):11}  {steps}")
        for r in items:
            if r.message:
                message = r.message.replace("\n", "\n      ")
                lines.append(f"      {r.action.kind.value} {r.outcome.value}: {message}")
    named_by_status = (
        (SubjectStatus.UNKNOWN, unknown),
        (SubjectStatus.CONFLICT, conflicts),
        (SubjectStatus.BLOCKED, blocked),
    )
    for status, named in named_by_status:
        for subject, why in sorted(named.items()):
            lines.append(f"  {subject.ljust(width)}  {status:11}  not acted on: {why}")
    counts = {o: sum(1 for r in results if r.outcome is o) for o in Outcome}
    code = exit_code(results, [*unknown, *conflicts, *blocked])
    head = {
        ExitCode.OK: "Apply complete: ",
        ExitCode.DEGRADED: "Apply complete, DEGRADED: ",
        ExitCode.ROLLED_BACK: "Apply ROLLED BACK: ",
    }.get(code, "Apply FAILED: ")
    parts = [f"{n} {o.value}" for o, n in counts.items() if n]
    if unknown:
        parts.append(f"{len(unknown)} unknown ({', '.join(sorted(unknown))})")
    if conflicts:
        parts.append(f"{len(conflicts)} conflict(s) ({', '.join(sorted(conflicts))})")
    if blocked:
        parts.append(f"{len(blocked)} not planned ({', '.join(sorted(blocked))})")
    lines.append(head + (", ".join(parts) or "nothing to do") + f" (exit {code}).")
    return "\n".join(lines) + "\n"


def _cmd_apply(args: argparse.Namespace) -> ExitCode:
    # What only apply needs is imported here, not for every command: most of a no-op
    # plan's time is imports (docs/performance.md, "A no-op plan").
    from reconcile.orchestration import apply_record  # noqa: PLC0415
    from reconcile.orchestration.executor import exit_code  # noqa: PLC0415

    plan_options = runs.PlanOptions(tuple(args.target), args.prune)
    options = runs.ApplyOptions(
        yes=args.yes,
        parallel=args.parallel,
        lock_timeout_s=args.lock_timeout,
        json_output=args.json,
    )
    started = time.time()
    with runs.session(args.manifest, plan_options, options) as session:
        plan = session.planned.plan
        rendered = session.planned.rendered(
            json_output=args.json, show_unmanaged=args.show_unmanaged
        )
        print(rendered, end="")
        unknown = plan.unknown()
        conflicts = plan.conflicts()
        results: list[Result] = []
        if plan.actions():
            wiped = plan.recreates()
            if wiped and args.yes and not args.allow_recreate:
                raise ReconcileError(
                    f"the plan wipes the disk of {', '.join(wiped)} (recreate); refusing "
                    "with --yes alone",
                    hint="pass --allow-recreate as well, or apply without --yes and answer "
                    "the question",
                )
            if not args.yes and not _confirm():
                print("Apply cancelled.", file=sys.stderr)
                return ExitCode.ERROR
            # progress on stderr: a line per finished step, the running ones on a terminal
            # (with --log-format json the log's start and done events are the progress)
            from reconcile import apply_progress  # noqa: PLC0415 - only with steps to show

            with apply_progress.Progress(
                sys.stderr, len(plan.actions()), enabled=args.log_format == "console"
            ) as shown:
                results = session.apply(
                    options, shown.finished, on_start=shown.started, on_progress=shown.progress
                )
        # a conflict cannot converge: the apply is not a success, like an unknown guest;
        # nor is one with a machine blocked `after` either
        blocked = dict(plan.blocked)
        code = exit_code(results, [*unknown, *conflicts, *blocked])
        manifest = session.ctx.manifest
    if results or unknown or conflicts or blocked:
        _print_results(results, unknown, conflicts, code, json_output=args.json, blocked=blocked)
    try:
        apply_record.record_apply(
            manifest, started, code, results, unknown=unknown, conflicts=conflicts
        )
    except ReconcileError as error:  # the apply happened: say so, and that it is unrecorded
        _report(error)
        print("error: this apply is not in the lab's history (see above)", file=sys.stderr)
        return ExitCode.ERROR
    return code


def _print_results(
    results: list[Result],
    unknown: dict[str, str],
    conflicts: dict[str, str],
    code: ExitCode,
    *,
    json_output: bool,
    blocked: dict[str, str] | None = None,
) -> None:
    if json_output:
        print(
            json.dumps(
                {
                    "exit_code": code,
                    "unknown": unknown,
                    "conflicts": conflicts,
                    "blocked": blocked or {},
                    "results": [
                        {
                            "key": r.action.key,
                            "outcome": r.outcome.value,
                            "seconds": round(r.seconds, 3),
                            "message": r.message,
                        }
                        for r in results
                    ],
                },
                indent=2,
            )
        )
    else:
        print(_summary(results, unknown, conflicts, blocked), end="")


def _cmd_drift(args: argparse.Namespace) -> ExitCode:
    from reconcile.orchestration import drift_runs  # noqa: PLC0415 - see _cmd_apply

    report = drift_runs.drift(
        args.manifest, drift_runs.DriftOptions(tuple(args.target), metrics=args.metrics)
    )
    text = drift_runs.rendered(report, args.format, show_unmanaged=args.show_unmanaged)
    if args.out:
        files.write_atomic(args.out, text)
        print(f"Wrote the {args.format} drift report to {args.out}", file=sys.stderr)
    else:
        print(text, end="")
    return report.exit_code


def _cmd_history(args: argparse.Namespace) -> ExitCode:
    from reconcile.orchestration import drift_runs  # noqa: PLC0415 - see _cmd_apply

    runs_ = drift_runs.recent(args.manifest, args.limit, args.kind)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in runs_], indent=2))
        return ExitCode.OK
    if not runs_:
        print("No runs recorded yet.")
        return ExitCode.OK
    print(f"{'id':>5}  {'started (UTC)':20}  {'kind':7}  {'outcome':12}  exit  {'took':>7}  commit")
    for r in runs_:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.started))
        print(
            f"{r.id:>5}  {when:20}  {r.kind:7}  {r.outcome:12}  {r.exit_code:>4}  "
            f"{r.duration_s:>6.1f}s  {r.commit[:12]}"
        )
        if r.summary.get("stage"):  # a gitops cycle that failed: where, and why
            lines = str(r.summary.get("message", "")).splitlines() or [""]
            print(f"{'':5}  failed at {r.summary['stage']}: {lines[0][:200]}")
    return ExitCode.OK


def _cmd_gitops(args: argparse.Namespace) -> ExitCode:
    if args.install_timer:
        return _install_timer(args)
    from reconcile.orchestration import gitops  # noqa: PLC0415 - only this command needs it

    result = gitops.cycle(
        args.manifest,
        gitops.CycleOptions(
            lock_timeout_s=args.lock_timeout,
            parallel=args.parallel,
            retry=args.retry,
            report_dir=args.report_dir,
            metrics=args.metrics,
        ),
    )
    if result.plan_text:
        print(result.plan_text, end="")
    if result.results:
        print(_summary(result.results, {}, {}), end="")
    print(f"gitops: {result.message} (exit {result.code})")
    if result.stage is not None:
        print(f"error: the cycle stopped at {result.stage}: {result.outcome}", file=sys.stderr)
        if result.hint:
            print(f"hint: {result.hint}", file=sys.stderr)
    return result.code


def _install_timer(args: argparse.Namespace) -> ExitCode:
    from reconcile.orchestration import gitops  # noqa: PLC0415 - only this command needs it

    manifest = pipeline.load(args.manifest)
    settings = gitops.settings(manifest)
    argv = [sys.executable, "-m", "reconcile", "gitops", str(args.manifest.resolve())]
    argv += ["--report-dir", str(args.report_dir or manifest.lab.layout.reports_dir)]
    if args.metrics:
        argv += ["--metrics", str(args.metrics.resolve())]
    service = args.unit_dir / timer_units.SERVICE
    timer = args.unit_dir / timer_units.TIMER
    files.write_atomic(service, timer_units.service_unit(argv, args.start_timeout))
    files.write_atomic(timer, timer_units.timer_unit(settings.interval_s))
    print(f"Wrote {service} and {timer} (a cycle every {settings.interval_s:g}s).")
    print(f"Enable them: systemctl daemon-reload && systemctl enable --now {timer_units.TIMER}")
    return ExitCode.OK


# what `add_subparsers` returns: each _add_* function registers one command on it
_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _add_validate(sub: _Commands) -> None:
    validate = sub.add_parser(
        "validate",
        help="check a manifest against the schema and its references",
        description="Check a manifest: TOML syntax, the JSON Schema, and references between "
        "its parts. Prints every problem as FILE:LINE: key.path: message. Touches nothing.",
        epilog="exit codes: 0 valid, 1 invalid",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument("manifest", type=Path, metavar="MANIFEST", help="the lab's .toml file")
    validate.set_defaults(func=_cmd_validate)


def _add_plan(sub: _Commands) -> None:
    plan = sub.add_parser(
        "plan",
        help="show what apply would change, and why; touches nothing",
        description="Evaluate the lab's systems (cached by the flake's narHash), observe the "
        "hypervisors and hosts (one SSH round trip each), and show what apply would do to each "
        "guest and host, field by field. Builds nothing, defines nothing, takes no lock.",
        epilog="exit codes: 0 success (with --detailed-exitcode: no changes), 1 error or "
        "something could not be observed, 2 changes present (only with --detailed-exitcode)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plan.add_argument("manifest", type=Path, metavar="MANIFEST", help="the lab's .toml file")
    _add_selection(plan)
    _add_show_unmanaged(plan)
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="save the plan; `reconcile apply FILE` applies exactly it",
    )
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 2 when there are changes, 0 when none",
    )
    plan.add_argument(
        "--graph",
        action="store_true",
        help="print the plan's actions and their order as a Graphviz DOT graph "
        "(e.g. | dot -Tsvg > plan.svg), and nothing else",
    )
    plan.set_defaults(func=_cmd_plan)


def _add_apply(sub: _Commands) -> None:
    apply = sub.add_parser(
        "apply",
        help="make the lab match the manifest",
        description="Plan, show the plan, ask for confirmation, then build kernels and "
        "closures, define, start and restart guests, and copy, activate and health-check "
        "hosts (rolling back a host that fails), in dependency order, in parallel where "
        "possible. Running "
        "it twice changes nothing the second time. Given a saved plan (from `plan --out`), "
        "applies exactly that plan, or refuses it when the manifest or the lab changed.",
        epilog="exit codes: 0 success, 1 error, a failed action or an unknown guest or host "
        "(the summary names it), 3 done but a host degraded, 4 a host rolled back",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    apply.add_argument(
        "manifest",
        type=Path,
        metavar="MANIFEST|PLAN",
        help="the lab's .toml file, or a plan saved by `plan --out`",
    )
    _add_selection(apply)
    _add_show_unmanaged(apply)
    apply.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    apply.add_argument(
        "--allow-recreate",
        action="store_true",
        help="with --yes: let the plan recreate disk guests, wiping their disks (data disks "
        "are kept); without it such a plan is refused unless confirmed interactively",
    )
    apply.add_argument(
        "--parallel",
        type=_positive,
        default=4,
        metavar="N",
        help="run at most N actions at once (default: 4)",
    )
    apply.add_argument(
        "--lock-timeout",
        type=_duration,
        default=0.0,
        metavar="DURATION",
        help="wait this long for the lab's lock (default: fail at once)",
    )
    apply.add_argument("--json", action="store_true", help="print the plan and results as JSON")
    apply.set_defaults(func=_cmd_apply)


def _add_drift(sub: _Commands) -> None:
    drift = sub.add_parser(
        "drift",
        help="report what differs from the manifest, and since when; changes nothing",
        description="Observe the lab as `plan` does (no lock that blocks apply) and report, "
        "for every guest and host, whether it is in sync, drifted (field by field, desired "
        "against observed), missing or unknown, with the time each difference was first seen "
        "(from the run history in the lab's state directory). Unmanaged domains are counted "
        "apart (--show-unmanaged lists them). The manifest's [drift] ignore patterns accept "
        "known differences.",
        epilog="exit codes: 0 in sync, 2 drift, 1 error or something unknown "
        "(see docs/drift-format.md)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    drift.add_argument("manifest", type=Path, metavar="MANIFEST", help="the lab's .toml file")
    drift.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="NAME|tag:TAG",
        help="limit to this guest or host, or to those with this tag (repeatable)",
    )
    drift.add_argument(
        "--format",
        choices=DRIFT_FORMATS,
        default="text",
        help="text (default), json (docs/drift-format.md), markdown, or html (one page)",
    )
    drift.add_argument("--out", type=Path, metavar="FILE", help="write the report here")
    _add_show_unmanaged(drift)
    drift.add_argument(
        "--metrics",
        type=Path,
        metavar="FILE",
        help="also write Prometheus metrics (node_exporter textfile format, atomically)",
    )
    drift.set_defaults(func=_cmd_drift)


def _add_history(sub: _Commands) -> None:
    hist = sub.add_parser(
        "history",
        help="list recent runs (drift, apply, gitops) with their outcome",
        description="The lab's recorded runs, newest first, from its state directory.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hist.add_argument("manifest", type=Path, metavar="MANIFEST", help="the lab's .toml file")
    hist.add_argument("--limit", type=_positive, default=20, metavar="N", help="default: 20")
    hist.add_argument("--kind", choices=("drift", "apply", "gitops"), help="only these runs")
    hist.add_argument("--json", action="store_true", help="print the runs as JSON")
    hist.set_defaults(func=_cmd_history)


def _add_gitops(sub: _Commands) -> None:
    cycle = sub.add_parser(
        "gitops",
        help="one GitOps cycle: fetch the lab's repository, plan, apply by policy, report",
        description="Run one cycle, as the controller's timer does: fetch gitops.branch of "
        "gitops.repo into the state directory; refuse a head that does not descend from the "
        "last applied commit (unless gitops.allow_rewrites), or that is not signed by "
        "gitops.allowed_signers (unless gitops.require_signed = false); refuse a repository "
        "manifest naming host paths outside gitops.allowed_paths; plan the repository's "
        "manifest; apply it when gitops.apply is "
        '"auto"; record the commit, plan and outcome in the history; write the drift report '
        "and metrics. A commit whose apply failed is not retried until a new commit arrives "
        "(or --retry). MANIFEST is the controller's copy of the lab's manifest (its [gitops] "
        "and [lab]).",
        epilog="exit codes: 0 converged, nothing to do, or skipped (lock held); 1 error, "
        "refused commit, or failed apply; 2 plan-only and changes present; 3 degraded; "
        "4 rolled back",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cycle.add_argument("manifest", type=Path, metavar="MANIFEST", help="the controller's .toml")
    cycle.add_argument(
        "--lock-timeout",
        type=_duration,
        default=60.0,
        metavar="DURATION",
        help="wait this long for the lab's lock, then skip the cycle (default: 60s)",
    )
    cycle.add_argument(
        "--parallel", type=_positive, default=4, metavar="N", help="actions at once (default: 4)"
    )
    cycle.add_argument(
        "--retry", action="store_true", help="apply a commit that failed before, once more"
    )
    cycle.add_argument(
        "--report-dir",
        type=Path,
        metavar="DIR",
        help="write drift.html, drift.json and drift.md of the lab there after the cycle",
    )
    cycle.add_argument(
        "--metrics", type=Path, metavar="FILE", help="write Prometheus metrics (textfile format)"
    )
    cycle.add_argument(
        "--install-timer",
        action="store_true",
        help="instead of a cycle, write the systemd service and timer that run one every "
        "gitops.interval",
    )
    cycle.add_argument(
        "--start-timeout",
        type=_duration,
        default=timer_units.START_TIMEOUT_S,
        metavar="DURATION",
        help="with --install-timer: stop a cycle that runs longer (TimeoutStartSec=; default: 1h)",
    )
    cycle.add_argument(
        "--unit-dir",
        type=Path,
        default=Path("/etc/systemd/system"),
        metavar="DIR",
        help="where --install-timer writes the units (default: /etc/systemd/system)",
    )
    cycle.set_defaults(func=_cmd_gitops)


# -- operating the lab: console, ssh, inventory, completion (orchestration/operate.py) ---


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number (0 or more): {text!r}")
    return int(text)


def _cmd_console(args: argparse.Namespace) -> ExitCode:
    import os  # noqa: PLC0415 - only for a closed pipe

    from reconcile.orchestration import operate  # noqa: PLC0415 - only these commands need it

    out = sys.stdout.buffer

    def emit(data: bytes) -> None:
        if data:
            out.write(data)
            out.flush()

    def note(text: str) -> None:
        print(f"reconcile console: {text}", file=sys.stderr, flush=True)

    try:
        operate.console(
            args.manifest,
            args.guest,
            lines=args.lines,
            follow=not args.no_follow,
            raw=args.raw,
            emit=emit,
            note=note,
        )
    except KeyboardInterrupt:  # Ctrl-C is how following ends: not an error
        return ExitCode.OK
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    return ExitCode.OK


def _cmd_ssh(args: argparse.Namespace) -> ExitCode:
    from reconcile.orchestration import operate  # noqa: PLC0415 - only these commands need it

    operate.ssh(args.manifest, args.name, args.command)  # replaces this process


def _cmd_inventory(args: argparse.Namespace) -> ExitCode:
    from reconcile.orchestration import operate  # noqa: PLC0415 - only these commands need it

    print(operate.inventory(args.manifest, args.format), end="")
    return ExitCode.OK


def _cmd_completion(args: argparse.Namespace) -> ExitCode:
    from reconcile.core import completion  # noqa: PLC0415 - only this command needs it

    print(completion.render(args.shell, completion.spec(build_parser())), end="")
    return ExitCode.OK


def _cmd_generations(args: argparse.Namespace) -> ExitCode:
    from reconcile.orchestration import operate  # noqa: PLC0415 - only these commands need it

    known, pinned = operate.guest_generations(args.manifest, args.guest)
    if not known:
        print(f"guest {args.guest} has no generations yet (they are kept from its next define)")
        return ExitCode.OK
    print(f"{'#':>4}  {'since (UTC)':20}  system")
    for g in known:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(g.since))
        mark = "  (pinned by rollback)" if g.toplevel == pinned else ""
        print(f"{g.number:>4}  {since:20}  {g.toplevel}{mark}")
    return ExitCode.OK


def _cmd_rollback(args: argparse.Namespace) -> ExitCode:
    from reconcile.orchestration import operate  # noqa: PLC0415 - only these commands need it

    if args.release:
        was = operate.release(args.manifest, args.guest)
        print(
            f"guest {args.guest} follows the manifest again"
            if was
            else f"guest {args.guest} was not pinned: nothing to release"
        )
    else:
        chosen = operate.rollback(args.manifest, args.guest, args.to)
        print(f"guest {args.guest} is pinned to generation {chosen.number}: {chosen.toplevel}")
    print(f"apply it: reconcile apply {args.manifest} --target {args.guest}")
    return ExitCode.OK


def _add_generations(sub: _Commands) -> None:
    gens = sub.add_parser(
        "generations",
        help="list a guest's generations (the systems it kept, with dates); touches nothing",
        description="The last systems a guest was defined with (lab.generations of them), "
        "oldest first, each kept by a GC root of the lab; the one `rollback` pinned it to "
        "is marked.",
    )
    gens.add_argument("manifest", type=Path, metavar="MANIFEST", help="the lab's .toml file")
    gens.add_argument("guest", metavar="GUEST", help="the guest's name")
    gens.set_defaults(func=_cmd_generations)


def _add_rollback(sub: _Commands) -> None:
    back = sub.add_parser(
        "rollback",
        help="pin a guest to one of its generations, for the next apply (or --release it)",
        description="Pin GUEST to generation N (default: the one before its newest): the "
        "next plan and apply boot it there instead of the manifest's system, as for any "
        "change (a restart), until `rollback GUEST --release`. Writes only the pin.",
    )
    back.add_argument("manifest", type=Path, metavar="MANIFEST", help="the lab's .toml file")
    back.add_argument("guest", metavar="GUEST", help="the guest's name")
    which = back.add_mutually_exclusive_group()
    which.add_argument("--to", type=_count, metavar="N", help="the generation's number")
    which.add_argument("--release", action="store_true", help="follow the manifest's system again")
    back.set_defaults(func=_cmd_rollback)


def _add_console(sub: _Commands) -> None:
    console = sub.add_parser(
        "console",
        help="follow a guest's serial console (like tail -f); touches nothing",
        description="Print the last lines of a guest's serial console, the file its driver "
        "writes (<state_dir>/guests/GUEST/serial.log), then follow what the guest writes "
        "until Ctrl-C, reopening the log when the guest starts again. Control characters "
        "and escape sequences other than colours are shown, not sent to the terminal "
        "(--raw sends them). Only reads: no lock, no hypervisor connection.",
        epilog="exit codes: 0 stopped with Ctrl-C (or done, with --no-follow), 1 error "
        "(unknown guest, no log yet)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    console.add_argument("manifest", type=Path, metavar="MANIFEST", help="the lab's .toml file")
    console.add_argument("guest", metavar="GUEST", help="the guest's name")
    console.add_argument(
        "-n",
        "--lines",
        type=_count,
        default=50,
        metavar="N",
        help="start with the last N lines (default: 50)",
    )
    console.add_argument("--no-follow", action="store_true", help="print the last lines and exit")
    console.add_argument(
        "--raw", action="store_true", help="pass the console's bytes to the terminal unchanged"
    )
    console.set_defaults(func=_cmd_console)


def _add_ssh(sub: _Commands) -> None:
    ssh = sub.add_parser(
        "ssh",
        help="log in to a host (or a disk guest) over SSH with its pinned key",
        description="Run OpenSSH to a host of the manifest, or to a guest that has an ssh "
        "table (disk guests; imageless guests have none: use `console`), as its ssh table "
        "says (user, port, identity), trusting only its pinned key: StrictHostKeyChecking=yes "
        "against a known_hosts file holding only that key (written to <state_dir>/ssh/), no "
        "ssh_config. An unknown or changed key is refused; nothing is ever trusted on first "
        "use. With CMD (after --), runs it instead of a login shell: its words go to ssh as "
        "separate arguments, and OpenSSH joins them with spaces for the remote shell, as "
        "`ssh HOST CMD...` does (quote for that shell). reconcile is replaced by ssh: the "
        "terminal and the exit code are ssh's.",
        epilog="exit codes: ssh's (255 for a connection or host key failure, else the remote "
        "command's), 1 when reconcile refuses (unknown name, no pinned key)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ssh.add_argument("manifest", type=Path, metavar="MANIFEST", help="the lab's .toml file")
    ssh.add_argument("name", metavar="NAME", help="the host's (or disk guest's) name")
    ssh.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- CMD",
        help="a command to run instead of a login shell",
    )
    ssh.set_defaults(func=_cmd_ssh)


def _add_inventory(sub: _Commands) -> None:
    from reconcile.core.inventory import FORMATS  # noqa: PLC0415 - pure and small

    inventory = sub.add_parser(
        "inventory",
        help="list hosts and guests with their SSH addresses, grouped by tag (Ansible, JSON)",
        description="List every host and guest of the manifest with its SSH address (a "
        "host's ssh.target, a disk guest's ssh table; a guest without one has no address, "
        "never a guessed one), grouped by tag. ansible: a YAML inventory for "
        "`ansible -i` (one group per tag); json: a stable document; names: one name a line. "
        "Reads the manifest only: no network traffic.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inventory.add_argument("manifest", type=Path, metavar="MANIFEST", help="the lab's .toml file")
    inventory.add_argument(
        "--format",
        choices=FORMATS,
        default="ansible",
        help="ansible (default: YAML), json, or names",
    )
    inventory.set_defaults(func=_cmd_inventory)


def _add_completion(sub: _Commands) -> None:
    from reconcile.core.completion import SHELLS  # noqa: PLC0415 - pure and small

    completion = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh, fish)",
        description="Print a completion script for the shell, generated from reconcile's own "
        "options: commands, options and their values, manifest and file names, and the "
        "guests and hosts of the manifest typed before GUEST or NAME. "
        "bash: source <(reconcile completion bash); zsh: source <(reconcile completion zsh) "
        "after compinit; fish: reconcile completion fish | source.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    completion.add_argument("shell", choices=SHELLS, metavar="SHELL")
    completion.set_defaults(func=_cmd_completion)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reconcile",
        description="Make a NixOS lab match its TOML manifest: kernels, closures, guests, hosts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"reconcile {__version__}")
    parser.add_argument("--debug", action="store_true", help="debug logs and tracebacks")
    parser.add_argument(
        "--log-format",
        choices=("console", "json"),
        default="console",
        help="log format on stderr (default: console)",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (
        _add_validate,
        _add_plan,
        _add_apply,
        _add_drift,
        _add_history,
        _add_gitops,
        _add_console,
        _add_ssh,
        _add_generations,
        _add_rollback,
        _add_inventory,
        _add_completion,
    ):
        add(sub)
    return parser


def _report(error: ReconcileError) -> None:
    if isinstance(error, ManifestError):
        for problem in error.problems:
            print(problem.render(), file=sys.stderr)
    print(f"error: {error.message}", file=sys.stderr)
    if error.hint:
        print(f"hint: {error.hint}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # apply runs for minutes (kernel builds, boots): its progress shows by default, on the
    # console in its display (-v adds the log's lines), with --log-format json as log events
    verbose = args.verbose + (1 if args.command == "apply" and args.log_format == "json" else 0)
    configure_logging(debug=args.debug, verbose=verbose, fmt=args.log_format)
    try:
        code: ExitCode = args.func(args)
    except ReconcileError as error:
        if args.debug:
            raise
        _report(error)
        return error.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as error:  # a bug: say so in one line; --debug shows where
        if args.debug:
            raise
        print(f"error: internal error: {type(error).__name__}: {error}", file=sys.stderr)
        print("hint: this is a bug in reconcile; --debug shows the traceback", file=sys.stderr)
        return ExitCode.ERROR
    return code
