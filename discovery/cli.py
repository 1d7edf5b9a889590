"""The ``discovery`` command line.

Each sub-command lives in its own module under ``discovery/commands/`` and
exposes ``register(subparsers)``, which adds its parser and sets
``run=<function(args, overrides) -> int>``. Arguments a command does not
declare are config overrides (``--key value`` or ``--key=value``), checked
against the typed config of that command, so W&B sweep agents can pass any
config field.

Before any command module is imported (they import jax), :func:`main` sets
XLA's host device count (:mod:`discovery.runtime.devices`: one CPU device per usable
core) and, with ``--distributed``, joins the cluster (:mod:`discovery.runtime.distributed`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import urllib.error

from discovery.runtime import devices, distributed
from discovery.runtime.errors import UserError

# Order is the order of `discovery --help`.
COMMAND_MODULES = [
    "discovery.commands.train",
    "discovery.commands.meta_train",
    "discovery.commands.evaluate",
    "discovery.commands.distill",
    "discovery.commands.plot_drift",
    "discovery.commands.sweep",
    "discovery.commands.drifts",
    "discovery.commands.ship",
    "discovery.commands.compare_runs",
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
        importlib.import_module(module_name).register(subparsers)
    for name in distributed.COMMANDS:
        if name in subparsers.choices:
            distributed.add_arguments(subparsers.choices[name])
    return parser


def _command_name(argv: list[str]) -> str:
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # XLA:CPU runs LAPACK (the QR of orthogonal initialisation) on its own worker threads; a
    # multi-threaded OpenBLAS inside them oversubscribes the cores (docs/PERFORMANCE.md). Read when
    # OpenBLAS loads, i.e. here, before numpy/scipy are imported.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    command = _command_name(argv)
    try:
        # Both must happen before jax is imported: the command modules below import it.
        devices.configure_host_devices()
        devices.micro_batch(), devices.layout_choice()  # a bad DISCOVERY_MICRO_BATCH or DISCOVERY_LAYOUT: one line now
        use_cluster, timeout = distributed.pre_parse(argv)
        if use_cluster and command in distributed.COMMANDS:
            distributed.initialize(command, timeout)
    except UserError as error:
        print(f"discovery{' ' + command if command else ''}: error: {error}", file=sys.stderr)
        return UserError.exit_code
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    distributed.redirect_outputs(args)
    try:
        code = args.run(args, extra)
    except UserError as error:
        if distributed.active():
            distributed.exit_after_failure(str(error), UserError.exit_code)
        print(f"discovery {args.command}: error: {error}", file=sys.stderr)
        return UserError.exit_code
    except urllib.error.URLError as error:  # a task that fetches data on first use (MNISTBandit-bsuite: MNIST)
        message = (
            f"a download this task needs failed ({error.reason}): MNISTBandit-bsuite fetches MNIST on first use, so "
            "run it once with internet access (the data is then cached) or choose another task"
        )
        if distributed.active():
            distributed.exit_after_failure(message, UserError.exit_code)
        print(f"discovery {args.command}: error: {message}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        if distributed.active():
            distributed.exit_after_failure("interrupted", 130)
        print("discovery: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if distributed.active():
            distributed.exit_after_failure(None, 1, error)
        raise
    finally:
        from discovery.io.outputs import release_all_run_dirs  # not at the top: it imports jax

        release_all_run_dirs()  # the command is over: its --out may be used again
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
