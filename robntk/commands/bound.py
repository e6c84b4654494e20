"""``robntk bound``: numerical check of the λ_min lower bounds in the theory setting.

Runs :func:`robntk.theory.experiment.run_experiment` over activations × skip patterns × depth ×
ρ × β × width (plus a residual CNN over filter sizes) and writes ``bounds.csv``,
``config.json``, ``summary.md`` and PNG figures atomically to ``--out``.

The grid is a JSON-like dict (:data:`robntk.theory.grid.DEFAULT_CONFIG`); ``--config``
overrides are type-checked against the default grid (:func:`robntk.theory.grid.check_override`)
before anything runs.

Examples::

    robntk bound --quick --out /tmp/bounds            # seconds; the test configuration
    robntk bound                                      # full grid → experiments/bounds/results
    robntk bound --config my.json --no-plots          # overrides merged into the default grid
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.core.registry import check_seed
from robntk.core.tables import check_writable

DEFAULT_OUT = Path("experiments") / "bounds" / "results"


def parse_ints(text: str, what: str) -> list[int]:
    """``'0,1'`` → ``[0, 1]``.

    Raises:
        ValueError: a non-integer item, or no item at all (names the flag ``--{what}``).
    """
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--{what} must be comma-separated integers, got {text!r}") from None
    if not vals:
        raise ValueError(f"--{what} must list at least one integer, got {text!r}")
    return vals


@dataclass(frozen=True, kw_only=True)
class BoundOptions:
    """The options of ``robntk bound`` (``--data-dir`` is unused: the theory setting uses
    synthetic points on the unit sphere).

    Attributes:
        quick: start from :data:`robntk.theory.grid.QUICK_CONFIG` (seconds).
        out: output directory. config: a JSON file of grid overrides.
        widths, seeds: comma-separated FCN widths / seeds overriding the grid's.
        no_plots: skip the PNG figures. progress: print one line per architecture.

    Raises:
        ValueError: ``--widths`` / ``--seeds`` not comma-separated integers, a width < 1, a seed
            outside [0, 2**32 − 1] (names the flag).
    """

    quick: bool = field(default=False, metadata=flag("small grid (tests, smoke runs; ~10-20 s)"))
    out: str = field(default=str(DEFAULT_OUT), metadata=flag("output directory"))
    config: str | None = field(
        default=None, metadata=flag("JSON file of overrides merged into the default (or --quick) configuration")
    )
    widths: str | None = field(default=None, metadata=flag("comma-separated FCN widths, e.g. 128,512,2048"))
    seeds: str | None = field(default=None, metadata=flag("comma-separated seeds (integers >= 0), e.g. 0,1"))
    no_plots: bool = field(default=False, metadata=flag("skip the PNG figures"))
    progress: bool = field(default=False, metadata=flag("print one line per architecture"))

    def __post_init__(self):
        for name in ("widths", "seeds"):
            if getattr(self, name) is not None:
                parse_ints(getattr(self, name), name)
        for w in parse_ints(self.widths, "widths") if self.widths is not None else ():
            if w < 1:
                raise ValueError(f"--widths must be integers >= 1, got {w}")
        for seed in parse_ints(self.seeds, "seeds") if self.seeds is not None else ():
            check_seed(seed, "--seeds")

    def override(self) -> dict:
        """The grid override: ``--config``'s JSON object with ``--widths`` / ``--seeds`` applied.

        Raises:
            FileNotFoundError: ``--config`` missing. ValueError: not JSON or not an object.
        """
        override = read_override(self.config) if self.config else {}
        if self.widths is not None:
            override.setdefault("fcn", {})
            if isinstance(override["fcn"], dict):
                override["fcn"]["widths"] = parse_ints(self.widths, "widths")
        if self.seeds is not None:
            override["seeds"] = parse_ints(self.seeds, "seeds")
        return override


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``bound`` command's options (``--data-dir`` is added by robntk.cli; unused)."""
    add_dataclass_flags(parser, BoundOptions)


def read_override(path: str | Path) -> dict:
    """The JSON object of ``--config``.

    Raises:
        FileNotFoundError: missing file. ValueError: not JSON or not an object (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        override = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(override, dict):
        raise ValueError(f"config file {path} must hold a JSON object")
    return override


def run(args: argparse.Namespace) -> int:
    """Execute the command; prints the summary table. Returns 0 on success.

    Raises:
        ValueError: bad configuration values (robntk.cli turns this into exit code 2).
        FileNotFoundError: ``--config`` file missing. PermissionError: ``--out`` not writable.
    """
    from robntk.theory.experiment import run_experiment, summarise, summary_markdown
    from robntk.theory.grid import DEFAULT_CONFIG, QUICK_CONFIG, check_override, merge_config, validate_config

    opts = config_from_args(BoundOptions, args)
    override = check_override(opts.override())
    for seed in override.get("seeds", []):
        check_seed(seed, "seeds (--seeds / --config)")
    validate_config(merge_config(QUICK_CONFIG if opts.quick else DEFAULT_CONFIG, override))  # ranges, before work
    check_writable(opts.out, "--out", kind="dir")
    df = run_experiment(override, opts.out, quick=opts.quick, plots=not opts.no_plots, progress=opts.progress)
    print(summary_markdown(summarise(df)), end="")
    print(f"results written to {opts.out}")
    return 0
