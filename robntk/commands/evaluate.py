"""``robntk evaluate``: the robustness of a training run's latest checkpoint, with the
benchmark's metric names (clean, FGSM, PGD, APGD-CE, APGD-T, Square, the AutoAttack-style
ensemble; :mod:`robntk.train.evaluation`).

Flags are generated from :class:`robntk.train.evaluation.EvalConfig` (radii in [0, 1] pixel units,
``--eps 3/255 8/255``). The split is the benchmark's evaluation split (test; ImageNet16-120:
val), optionally a class-balanced subset (``--limit``). The output is checked for writability,
and the run directory (config, checkpoint, network) is loaded and checked, before the data are
read.
"""

from __future__ import annotations

import argparse
import json
import sys

from robntk.data.datasets import load_split
from robntk.train.evaluation import EvalConfig, evaluate_run
from robntk.core.paths import atomic_write
from robntk.core.tables import check_writable
from robntk.train.loop import load_trained
from robntk.commands.flags import add_dataclass_flags, config_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``robntk evaluate``."""
    p.add_argument("--checkpoint", required=True, help="training run directory (robntk train --out)")
    p.add_argument("--out", required=True, help="metrics JSON path")
    p.add_argument("--limit", type=int, default=None, help="evaluate a class-balanced subset of N test images")
    add_dataclass_flags(p.add_argument_group("evaluation configuration"), EvalConfig)
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Evaluate; write the record (metrics, configs, timing, warnings) to ``--out``. Returns 0."""
    cfg = config_from_args(EvalConfig, args)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be an integer >= 1, got {args.limit}")
    out = check_writable(args.out, "--out")
    trained = load_trained(args.checkpoint)
    tcfg = trained[0]
    cfg.resolved(tcfg.num_classes)  # preset checks (e.g. APGD-T needs >= 4 classes) before the data
    x, y = load_split(tcfg.dataset, "test", args.data_dir, args.limit, seed=0)
    record = evaluate_run(args.checkpoint, x, y, cfg, progress=not args.no_progress, trained=trained)
    record["data"] = {"split": "test" if tcfg.dataset != "ImageNet16-120" else "val", "limit": args.limit,
                      "subset": "class-balanced, numpy default_rng(0)" if args.limit else "full"}
    with atomic_write(out) as fh:
        json.dump(record, fh, indent=2, sort_keys=True)
    print(json.dumps(record["metrics"], indent=2, sort_keys=True))
    for w in record["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return 0
