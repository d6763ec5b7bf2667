"""The `reconcile` command (and `python -m reconcile`): the CLI as a whole process."""

import gc


def run() -> int:
    # The collector is off while the modules load (they make ~100,000 objects that live
    # until exit: about 7 ms of every command), and what they made is frozen, so that it
    # is never walked again (about 20 ms more of a 1000-guest no-op plan).
    gc.disable()
    from reconcile.cli import main  # noqa: PLC0415 - after the collector is off

    gc.freeze()
    gc.enable()
    return main()


if __name__ == "__main__":
    raise SystemExit(run())
