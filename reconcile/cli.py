"""The entry point: parses arguments, configures logging, prints results, and exits.

This is the only module that prints or exits. Everything below it raises ReconcileError
(with a hint) for expected failures; those print as `error: ...` without a traceback
unless --debug is given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from reconcile import __version__
from reconcile.adapters import files
from reconcile.core.errors import ManifestError, ReconcileError
from reconcile.core.manifest import parse_manifest
from reconcile.logs import configure_logging

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2

EPILOG = """\
exit codes:
  0  success, no changes
  1  error (invalid manifest, failed action, lock held, ...)
  2  changes present (plan --detailed-exitcode, drift)

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
    configure_logging(debug=args.debug, verbose=args.verbose, fmt=args.log_format)
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
