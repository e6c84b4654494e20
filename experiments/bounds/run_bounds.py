"""Run the λ_min bound check (robntk.theory) with this directory's config.json.

    python experiments/bounds/run_bounds.py            # full grid → experiments/bounds/results/
    python experiments/bounds/run_bounds.py --quick    # test-sized grid → results_quick/

Equivalent to ``robntk bound --config experiments/bounds/config.json --out experiments/bounds/results``.
The overrides in config.json are merged into robntk.theory.grid.DEFAULT_CONFIG (or
QUICK_CONFIG with --quick); the resolved configuration, timing and summary are written to
results/config.json next to bounds.csv, summary.md and the figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run from a checkout without installing

from robntk import cli  # noqa: E402


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    out = HERE / ("results_quick" if quick else "results")
    args = ["bound", "--out", str(out), "--progress"] + (
        ["--quick"] if quick else ["--config", str(HERE / "config.json")]
    )
    return cli.main(args + [a for a in argv if a != "--quick"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
