"""``robntk bound``: numerical check of the λ_min lower bounds in the theory setting.

Runs :func:`robntk.theory.experiment.run_experiment` over activations × skip patterns × depth ×
ρ × β × width (plus a residual CNN over filter sizes) and writes ``bounds.csv``,
``config.json``, ``summary.md`` and PNG figures atomically to ``--out``.

Examples::

    robntk bound --quick --out /tmp/bounds            # seconds; the test configuration
    robntk bound                                      # full grid → experiments/bounds/results
    robntk bound --config my.json --no-plots          # overrides merged into the default grid
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_OUT = Path("experiments") / "bounds" / "results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``bound`` command's options (``--data-dir`` is added by robntk.cli; unused:
    the theory setting uses synthetic points on the unit sphere)."""
    parser.add_argument("--quick", action="store_true", help="small grid (tests, smoke runs; ~10-20 s)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--config", default=None,
                        help="JSON file of overrides merged into the default (or --quick) configuration")
    parser.add_argument("--widths", default=None, help="comma-separated FCN widths, e.g. 128,512,2048")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--progress", action="store_true", help="print one line per architecture")


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--{what} must be comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    """Execute the command; prints the summary table. Returns 0 on success.

    Raises:
        ValueError: bad configuration values (robntk.cli turns this into exit code 2).
        FileNotFoundError: ``--config`` file missing.
    """
    from .experiment import run_experiment, summarise, summary_markdown

    override: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        override = json.loads(path.read_text())
        if not isinstance(override, dict):
            raise ValueError(f"config file {path} must hold a JSON object")
    if args.widths:
        override.setdefault("fcn", {})["widths"] = _ints(args.widths, "widths")
    if args.seeds:
        override["seeds"] = _ints(args.seeds, "seeds")
    df = run_experiment(override, args.out, quick=args.quick, plots=not args.no_plots, progress=args.progress)
    print(summary_markdown(summarise(df)), end="")
    print(f"results written to {args.out}")
    return 0
