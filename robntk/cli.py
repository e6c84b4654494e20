"""Command-line interface: ``robntk <command> ...``.

Each command is a module of :mod:`robntk.commands` with ``add_arguments(parser)`` and
``run(args) -> int``; this file wires them together and is the one error boundary: every
expected error (bad input, a missing or unwritable file, a store that holds another
configuration) becomes one line ``robntk <command>: error: ...`` and exit code 2. Every command
takes ``--data-dir`` (default ``$ROBNTK_DATA``, then ``./data``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command name → (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("robntk.commands.score", "NTK scores (λ_min of the robust kernel family) for NB201 archs"),
    "correlate": ("robntk.commands.correlate", "Kendall τ / Spearman of score columns vs benchmark metrics"),
    "reproduce": ("robntk.commands.reproduce", "main job: score a random sample on CIFAR-10 and correlate"),
    "merge": ("robntk.commands.merge", "merge shard result stores of `score --shard K/N`"),
    "report": ("robntk.commands.report", "the benchmark's own analyses (NAS-RobBench-201 §3): figures + CSVs"),
    "search": ("robntk.commands.search", "NAS on the benchmark: random, evolution, local, training-free search"),
    "proxies": ("robntk.commands.proxies", "zero-cost proxies (NASLib definitions) of NB201 archs"),
    "combine": ("robntk.commands.combine", "combine training-free scores (zero-shot rank votes and learned)"),
    "robnets": ("robntk.commands.robnets", "RobNets: architectures, attacks, findings on NB201, one-shot search"),
    "train": ("robntk.commands.train", "adversarially train an NB201 arch as NAS-RobBench-201 did"),
    "evaluate": ("robntk.commands.evaluate", "evaluate a checkpoint: clean, FGSM, PGD, APGD, Square, AA-style"),
    "bound": ("robntk.commands.bound", "numerical check of the λ_min lower bounds (theory setting)"),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``robntk`` parser with one sub-parser per available command."""
    parser = argparse.ArgumentParser(prog="robntk", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (modname, help_) in COMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:  # command not built in this version
            if exc.name != modname:
                raise
            continue
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--data-dir", default=None, help="data directory (default $ROBNTK_DATA, then ./data)")
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``robntk`` script. Returns the exit code (2 for bad input, 130 when
    interrupted)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors (argparse prints them) and --help
        return int(exc.code or 0)
    try:
        return int(args._module.run(args) or 0)
    except (ValueError, OSError) as exc:  # OSError: missing / unwritable files (the message names them)
        print(f"robntk {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robntk {args.command}: interrupted (completed work is kept; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
