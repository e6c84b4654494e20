"""Command-line interface: ``robntk <command> ...``.

Each command is a module of :mod:`robntk.commands` with ``add_arguments(parser)`` (flags generated
from configuration dataclasses, whose ``__post_init__`` validates them) and ``run(args) -> int``;
this file wires them together and is the one error boundary: every
expected error (bad input, a missing or unwritable file, a store that holds another
configuration) becomes one line ``robntk <command>: error: ...`` and exit code 2; so does running
out of memory (a last resort: sizes are range-checked before any work). Every command takes
``--data-dir`` (default ``$ROBNTK_DATA``, then ``./data`` when it exists, then the user data directory
``~/.local/share/robntk``, where ``robntk data fetch`` puts the files) and ``--download`` (a missing
data file is fetched from its official source, checksummed, into the data directory, and the command
goes on: :func:`robntk.data.fetch.download_missing`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys

from robntk.core import compile_cache

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
    "predict": ("robntk.commands.predict", "few-shot predictor: fit on your labelled archs, rank all the others"),
    "robnets": ("robntk.commands.robnets", "RobNets: architectures, attacks, findings on NB201, one-shot search"),
    "train": ("robntk.commands.train", "adversarially train an NB201 arch as NAS-RobBench-201 did"),
    "evaluate": ("robntk.commands.evaluate", "evaluate a checkpoint: clean, FGSM, PGD, APGD, Square, AA-style"),
    "bound": ("robntk.commands.bound", "numerical check of the λ_min lower bounds (theory setting)"),
    "data": ("robntk.commands.data", "data files: status, and fetch from the official sources (checksummed)"),
}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other error of the CLI:
    ``robntk <command>: error: argument --flag: ... (see robntk <command> --help)``, exit code 2
    (argparse would print the whole usage block first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


_DOWNLOAD_HELP = (
    "fetch a missing data file from its official source (checksummed; $ROBNTK_DATA_MIRROR for a "
    "mirror) into the data directory and go on"
)


def _download_flag_on_subcommands(parser: argparse.ArgumentParser) -> None:
    """Accept ``--download`` after a command's own sub-command too (``robntk robnets train --download``);
    default SUPPRESS, so the command-level value stands when it is not given there."""
    help_ = next(a.help for a in parser._actions if a.dest == "download")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                if not any(a.dest == "download" for a in sub._actions):
                    sub.add_argument("--download", action="store_true", default=argparse.SUPPRESS, help=help_)
                _download_flag_on_subcommands(sub)


def _downloads(args: argparse.Namespace):
    """``--download``: while the command runs, readers fetch missing data files
    (:func:`robntk.data.fetch.download_missing`) instead of failing."""
    if not getattr(args, "download", False):
        return contextlib.nullcontext()
    from robntk.data.fetch import download_missing

    return download_missing()


def build_parser() -> argparse.ArgumentParser:
    """The ``robntk`` parser with one sub-parser per available command."""
    parser = _Parser(prog="robntk", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (modname, help_) in COMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:  # command not built in this version
            if exc.name != modname:
                raise
            continue
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument(
            "--data-dir",
            default=None,
            help="data directory (default $ROBNTK_DATA, then ./data if it exists, then ~/.local/share/robntk)",
        )
        p.add_argument("--download", action="store_true", help=_DOWNLOAD_HELP)
        mod.add_arguments(p)
        compile_cache.add_arguments(p)  # documented here; cli_hook takes them out before parsing
        _download_flag_on_subcommands(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``robntk`` script. Returns the exit code (2 for bad input, 130 when
    interrupted)."""
    try:
        args = build_parser().parse_args(compile_cache.cli_hook(argv))
    except SystemExit as exc:  # usage errors (argparse prints them) and --help
        return int(exc.code or 0)
    try:
        with _downloads(args):
            return int(args._module.run(args) or 0)
    except (ValueError, OSError) as exc:  # OSError: missing / unwritable files (the message names them)
        print(f"robntk {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:  # sizes are range-checked up front; this is the last resort
        print(
            f"robntk {args.command}: error: out of memory ({exc or 'MemoryError'}); use smaller settings "
            "(completed work in a result store is kept)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"robntk {args.command}: interrupted (completed work is kept; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
