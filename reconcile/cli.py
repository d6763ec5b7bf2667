"""The entry point: parses arguments, configures logging, prints results, and exits.

This is the only module that prints or exits. Everything below it raises ReconcileError
(with a hint) for expected failures; those print as `error: ...` without a traceback
unless --debug is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from reconcile import __version__
from reconcile.adapters import files
from reconcile.core.errors import ManifestError, ReconcileError
from reconcile.core.manifest import parse_manifest
from reconcile.core.units import parse_duration
from reconcile.logs import configure_logging
from reconcile.orchestration import runs
from reconcile.orchestration.executor import Outcome, Result

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_DEGRADED = 3
EXIT_ROLLED_BACK = 4

EPILOG = """\
exit codes:
  0  success, no changes
  1  error (invalid manifest, failed action, unreachable host, lock held, ...)
  2  changes present (plan --detailed-exitcode, drift)
  3  apply: done, but a host's switch-to-configuration reported failed units (degraded)
  4  apply: a host failed activation or health checks and was rolled back

Run `reconcile COMMAND --help` for a command's options.
"""


def _cmd_validate(args: argparse.Namespace) -> int:
    manifest = parse_manifest(files.read_manifest(args.manifest), args.manifest)
    print(
        f"{args.manifest}: valid (lab '{manifest.lab.name}': {len(manifest.hypervisors)} "
        f"hypervisor(s), {len(manifest.kernels)} kernel(s), {len(manifest.guests)} guest(s), "
        f"{len(manifest.hosts)} host(s))"
    )
    return EXIT_OK


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


def _cmd_plan(args: argparse.Namespace) -> int:
    outcome = runs.plan(
        args.manifest, runs.PlanOptions(tuple(args.target), args.prune), saved=args.out
    )
    print(outcome.rendered(json_output=args.json), end="")
    if args.out:
        print(
            f"Saved the plan to {args.out}; apply it with: reconcile apply {args.out}",
            file=sys.stderr,
        )
    unknown = outcome.plan.unknown()
    if unknown:
        print(
            f"error: the plan is incomplete: {', '.join(sorted(unknown))} could not be observed",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if args.detailed_exitcode and outcome.plan.has_changes():
        return EXIT_CHANGES
    return EXIT_OK


def _confirm() -> bool:
    if not sys.stdin.isatty():
        raise ReconcileError(
            "refusing to apply without confirmation (standard input is not a terminal)",
            hint="pass --yes to apply without asking",
        )
    answer = input("Apply these changes? Only 'yes' is accepted: ")
    return answer.strip() == "yes"


def _status(items: list[Result]) -> str:
    """One subject's status. Its steps after a rollback are blocked: that is the rollback."""
    outcomes = {r.outcome for r in items}
    if outcomes & {Outcome.FAILED, Outcome.STALE}:
        return "FAILED"
    if Outcome.ROLLED_BACK in outcomes:
        return "ROLLED BACK"
    if Outcome.BLOCKED in outcomes:
        return "FAILED"
    if Outcome.DEGRADED in outcomes:
        return "DEGRADED"
    return "ok"


def _by_subject(results: list[Result]) -> dict[str, list[Result]]:
    by_subject: dict[str, list[Result]] = {}
    for result in results:
        by_subject.setdefault(result.action.subject, []).append(result)
    return by_subject


def _exit_code(results: list[Result], unknown: list[str]) -> int:
    """1 beats 4 beats 3: an error needs a person before anything else does."""
    statuses = {_status(items) for items in _by_subject(results).values()}
    if unknown or "FAILED" in statuses:
        return EXIT_ERROR
    if "ROLLED BACK" in statuses:
        return EXIT_ROLLED_BACK
    if "DEGRADED" in statuses:
        return EXIT_DEGRADED
    return EXIT_OK


def _summary(results: list[Result], unknown: dict[str, str]) -> str:
    """Per guest and host: its status, each step's outcome and time, and what went wrong."""
    by_subject = _by_subject(results)
    lines = ["", "Apply results:"]
    width = max((len(s) for s in [*by_subject, *unknown]), default=0)
    for subject, items in sorted(by_subject.items()):
        steps = ", ".join(
            f"{r.action.kind.value} {r.outcome.value} {r.seconds:.1f}s" for r in items
        )
        lines.append(f"  {subject.ljust(width)}  {_status(items):11}  {steps}")
        for r in items:
            if r.message:
                message = r.message.replace("\n", "\n      ")
                lines.append(f"      {r.action.kind.value} {r.outcome.value}: {message}")
    for subject, why in sorted(unknown.items()):
        lines.append(f"  {subject.ljust(width)}  {'UNKNOWN':11}  not acted on: {why}")
    counts = {o: sum(1 for r in results if r.outcome is o) for o in Outcome}
    code = _exit_code(results, list(unknown))
    head = {
        EXIT_OK: "Apply complete: ",
        EXIT_DEGRADED: "Apply complete, DEGRADED: ",
        EXIT_ROLLED_BACK: "Apply ROLLED BACK: ",
    }.get(code, "Apply FAILED: ")
    parts = [f"{n} {o.value}" for o, n in counts.items() if n]
    if unknown:
        parts.append(f"{len(unknown)} unknown ({', '.join(sorted(unknown))})")
    lines.append(head + (", ".join(parts) or "nothing to do") + f" (exit {code}).")
    return "\n".join(lines) + "\n"


def _cmd_apply(args: argparse.Namespace) -> int:
    plan_options = runs.PlanOptions(tuple(args.target), args.prune)
    options = runs.ApplyOptions(
        yes=args.yes,
        parallel=args.parallel,
        lock_timeout_s=args.lock_timeout,
        json_output=args.json,
    )
    with runs.session(args.manifest, plan_options, options) as session:
        plan = session.planned.plan
        print(session.planned.rendered(json_output=args.json), end="")
        unknown = plan.unknown()
        results: list[Result] = []
        if plan.actions():
            if not args.yes and not _confirm():
                print("Apply cancelled.", file=sys.stderr)
                return EXIT_ERROR
            results = session.apply(options, lambda _result: None)  # progress is in the logs
        elif not unknown:
            return EXIT_OK
    code = _exit_code(results, list(unknown))
    if args.json:
        print(
            json.dumps(
                {
                    "exit_code": code,
                    "unknown": unknown,
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
        print(_summary(results, unknown), end="")
    return code


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

    plan = sub.add_parser(
        "plan",
        help="show what apply would change, and why; touches nothing",
        description="Evaluate the lab's systems (cached by the flake's narHash), observe the "
        "hypervisors, and show what apply would do to each guest, field by field. Builds "
        "nothing, defines nothing, takes no lock.",
        epilog="exit codes: 0 success (with --detailed-exitcode: no changes), 1 error, "
        "2 changes present (only with --detailed-exitcode)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plan.add_argument("manifest", type=Path, metavar="MANIFEST", help="the lab's .toml file")
    _add_selection(plan)
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
    plan.set_defaults(func=_cmd_plan)

    apply = sub.add_parser(
        "apply",
        help="make the lab match the manifest",
        description="Plan, show the plan, ask for confirmation, then build closures, define, "
        "start and restart guests in dependency order, in parallel where possible. Running "
        "it twice changes nothing the second time. Given a saved plan (from `plan --out`), "
        "applies exactly that plan, or refuses it when the manifest or the lab changed.",
        epilog="exit codes: 0 success, 1 error or a failed action (the summary names it)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    apply.add_argument(
        "manifest",
        type=Path,
        metavar="MANIFEST|PLAN",
        help="the lab's .toml file, or a plan saved by `plan --out`",
    )
    _add_selection(apply)
    apply.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
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
    # apply runs for minutes (kernel builds, boots): show its progress by default
    verbose = args.verbose + (1 if args.command == "apply" else 0)
    configure_logging(debug=args.debug, verbose=verbose, fmt=args.log_format)
    try:
        code: int = args.func(args)
    except ReconcileError as error:
        if args.debug:
            raise
        _report(error)
        return error.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return code
