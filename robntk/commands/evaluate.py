"""``robntk evaluate``: the robustness of a training run's latest checkpoint, with the
benchmark's metric names (clean, FGSM, PGD, APGD-CE, APGD-T, Square, the AutoAttack-style
ensemble; :mod:`robntk.train.evaluation`).

Flags are generated from :class:`robntk.train.eval_config.EvalConfig` (radii in [0, 1] pixel units,
``--eps 3/255 8/255``) and :class:`EvaluateOptions`. The split is the benchmark's evaluation
split (test; ImageNet16-120: val), optionally a class-balanced subset (``--limit``). The output
is checked for writability, and the run directory (config, checkpoint, network) is loaded and
checked, before the data are read.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field

from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.core.tables import check_writable, write_json
from robntk.data.datasets import load_split
from robntk.train.eval_config import EvalConfig
from robntk.train.evaluation import evaluate_run
from robntk.train.loop import load_trained


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    """The options of ``robntk evaluate`` besides :class:`~robntk.train.eval_config.EvalConfig`.

    Attributes:
        checkpoint: the training run directory (``robntk train --out``).
        out: the metrics JSON path.
        limit: evaluate a class-balanced subset of this many test images (None: all).
        no_progress: hide the progress bars.

    Raises:
        ValueError: ``--limit`` < 1, ``--out`` not a ``.json`` path.
    """

    checkpoint: str = field(metadata=flag("training run directory (robntk train --out)"))
    out: str = field(metadata=flag("metrics JSON path"))
    limit: int | None = field(default=None, metadata=flag("evaluate a class-balanced subset of N test images"))
    no_progress: bool = field(default=False, metadata=flag("no progress bars"))

    def __post_init__(self):
        v = self.limit
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"--limit must be an integer >= 1, got {v}")
        if not str(self.out).lower().endswith(".json"):
            raise ValueError(f"--out must end in .json (the metrics record), got {self.out!r}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``robntk evaluate``."""
    add_dataclass_flags(p, EvaluateOptions, include=("checkpoint", "out", "limit"))
    add_dataclass_flags(p.add_argument_group("evaluation configuration"), EvalConfig)
    add_dataclass_flags(p, EvaluateOptions, include=("no_progress",))


def run(args: argparse.Namespace) -> int:
    """Evaluate; write the record (metrics, configs, timing, warnings) to ``--out``. Returns 0."""
    opts = config_from_args(EvaluateOptions, args)
    cfg = config_from_args(EvalConfig, args)
    out = check_writable(opts.out, "--out", kind="file")
    trained = load_trained(opts.checkpoint)
    tcfg = trained[0]
    cfg.resolved(tcfg.num_classes)  # preset checks (e.g. APGD-T needs >= 4 classes) before the data
    x, y = load_split(tcfg.dataset, "test", args.data_dir, opts.limit, seed=0)
    if opts.limit is not None and opts.limit > len(y):  # load_split takes them all: say so
        raise ValueError(f"--limit must be at most the {len(y)} evaluation images of {tcfg.dataset}, got {opts.limit}")
    record = evaluate_run(opts.checkpoint, x, y, cfg, progress=not opts.no_progress, trained=trained)
    record["data"] = {
        "split": "test" if tcfg.dataset != "ImageNet16-120" else "val",
        "limit": opts.limit,
        "subset": "class-balanced, numpy default_rng(0)" if opts.limit else "full",
    }
    write_json(record, out)
    print(json.dumps(record["metrics"], indent=2, sort_keys=True))
    for w in record["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return 0
