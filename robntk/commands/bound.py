"""``robntk bound``: numerical check of the λ_min lower bounds in the theory setting.

Runs :func:`robntk.theory.experiment.run_experiment` over activations × skip patterns × depth ×
ρ × β × width (plus a residual CNN over filter sizes) and writes ``bounds.csv``,
``config.json``, ``summary.md`` and PNG figures atomically to ``--out``.

The grid is a JSON-like dict (:data:`robntk.theory.experiment.DEFAULT_CONFIG`), not a dataclass,
so the flags are written here; ``--config`` overrides are type-checked against the default grid
(:func:`check_override`) before anything runs.

Examples::

    robntk bound --quick --out /tmp/bounds            # seconds; the test configuration
    robntk bound                                      # full grid → experiments/bounds/results
    robntk bound --config my.json --no-plots          # overrides merged into the default grid
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from robntk.core.tables import check_writable

DEFAULT_OUT = Path("experiments") / "bounds" / "results"
#: Grid keys whose value may be null.
NULLABLE = ("attack_width",)
#: Top-level grid axes that must list at least one value.
NON_EMPTY = ("seeds", "rhos", "betas")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``bound`` command's options (``--data-dir`` is added by robntk.cli; unused:
    the theory setting uses synthetic points on the unit sphere)."""
    parser.add_argument("--quick", action="store_true", help="small grid (tests, smoke runs; ~10-20 s)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--config", default=None,
                        help="JSON file of overrides merged into the default (or --quick) configuration")
    parser.add_argument("--widths", default=None, help="comma-separated FCN widths, e.g. 128,512,2048")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (integers >= 0), e.g. 0,1")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--progress", action="store_true", help="print one line per architecture")


def parse_ints(text: str, what: str) -> list[int]:
    """``'0,1'`` → ``[0, 1]``.

    Raises:
        ValueError: a non-integer item, or no item at all (names the flag).
    """
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--{what} must be comma-separated integers, got {text!r}") from None
    if not vals:
        raise ValueError(f"--{what} must list at least one integer, got {text!r}")
    return vals


def _kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "number"
    return {dict: "object", list: "list", str: "string", type(None): "null"}.get(type(v), type(v).__name__)


def _check_value(v: Any, template: Any, name: str) -> None:
    """Raise ValueError unless ``v`` has the structure and types of ``template``."""
    if isinstance(template, dict):
        if not isinstance(v, dict):
            raise ValueError(f"config key {name!r} must be an object, got {_kind(v)} {v!r}")
        for k, sub in v.items():
            if k not in template:
                raise ValueError(f"unknown config key {name + '.' + k!r}; allowed: {', '.join(template)}")
            _check_value(sub, template[k], f"{name}.{k}")
        return
    if isinstance(template, list):
        if not isinstance(v, list):
            raise ValueError(f"config key {name!r} must be a list, got {_kind(v)} {v!r}")
        if not template:
            return
        kinds = {_kind(t) for t in template}
        if len(kinds) > 1 and not isinstance(template[0], list):  # a fixed-length record, e.g. [depth, pattern]
            if len(v) != len(template):
                raise ValueError(f"config key {name!r} must be a list like {template!r}, got {v!r}")
            for i, (item, t) in enumerate(zip(v, template)):
                _check_value(item, t, f"{name}[{i}]")
            return
        for i, item in enumerate(v):
            _check_value(item, template[0], f"{name}[{i}]")
        return
    if v is None and name.split(".")[-1] in NULLABLE:
        return
    want = _kind(template)
    ok = _kind(v) == want or (want == "number" and _kind(v) == "int")
    if not ok:
        raise ValueError(f"config key {name!r} must be {'a' if want[0] not in 'aeiou' else 'an'} {want}, "
                         f"got {_kind(v)} {v!r}")


def check_override(override: Any, template: dict | None = None) -> dict:
    """Type-check a ``--config`` override against the default grid: every key known, objects
    where the grid has objects, lists where it has lists (elements of the grid's element type;
    ``[depth, pattern]`` records positionally), ints / numbers / strings where it has them;
    seeds ≥ 0 and :data:`NON_EMPTY` lists non-empty. Range checks (β ∈ [0, 1], widths ≥ 1, known
    activations) are :func:`robntk.theory.experiment.validate_config`'s.

    Returns:
        ``override``.

    Raises:
        ValueError: naming the key, the expected type and the value.
    """
    from robntk.theory.experiment import DEFAULT_CONFIG

    template = DEFAULT_CONFIG if template is None else template
    if not isinstance(override, dict):
        raise ValueError(f"the configuration must be a JSON object, got {_kind(override)}")
    for k, v in override.items():
        if k not in template:
            raise ValueError(f"unknown config key {k!r}; allowed: {', '.join(template)}")
        _check_value(v, template[k], k)
    for k in NON_EMPTY:
        if k in override and not override[k]:
            raise ValueError(f"config key {k!r} must list at least one value")
    for s in override.get("seeds", []):
        if s < 0:
            raise ValueError(f"seeds must be integers >= 0, got {s}")
    return override


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

    override = read_override(args.config) if args.config else {}
    if args.widths is not None:
        override.setdefault("fcn", {})
        if isinstance(override["fcn"], dict):
            override["fcn"]["widths"] = parse_ints(args.widths, "widths")
    if args.seeds is not None:
        override["seeds"] = parse_ints(args.seeds, "seeds")
    check_override(override)
    check_writable(args.out, "--out")
    df = run_experiment(override, args.out, quick=args.quick, plots=not args.no_plots, progress=args.progress)
    print(summary_markdown(summarise(df)), end="")
    print(f"results written to {args.out}")
    return 0
