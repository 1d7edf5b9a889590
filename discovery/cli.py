"""The ``discovery`` command line.

Each sub-command lives in its own module under ``discovery/commands/`` and
exposes ``register(subparsers)``, which adds its parser and sets
``run=<function(args, overrides) -> int>``. Arguments a command does not
declare are config overrides (``--key value`` or ``--key=value``), checked
against the typed config of that command, so W&B sweep agents can pass any
config field.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from discovery.errors import UserError

# Order is the order of `discovery --help`.
COMMAND_MODULES = [
    "discovery.commands.train",
    "discovery.commands.meta_train",
    "discovery.commands.evaluate",
    "discovery.commands.distill",
    "discovery.commands.plot_drift",
    "discovery.commands.sweep",
    "discovery.commands.drifts",
    "discovery.commands.bench",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's default already exits 2; keep it to one line
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="discovery",
        description="Discover RL algorithms: train with a drift, meta-train LPO, distil DPO, evaluate, sweep, bench.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:  # a command not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # XLA:CPU runs LAPACK (the QR of orthogonal initialisation) on its own worker threads; a
    # multi-threaded OpenBLAS inside them oversubscribes the cores (docs/PERFORMANCE.md). Read when
    # OpenBLAS loads, i.e. here, before numpy/scipy are imported.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        code = args.run(args, extra)
    except UserError as error:
        print(f"discovery {args.command}: error: {error}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print("discovery: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
