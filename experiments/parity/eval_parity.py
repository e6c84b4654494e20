"""Evaluation parity on CIFAR-10 test images: robntk's evaluator vs the benchmark's (PyTorch,
torchattacks 3.4.0 FGSM / PGD-20 / AutoAttack standard), same weights, same images.

    ROBNTK_DATA=../shared/data nice -n 19 python experiments/parity/eval_parity.py \
        --checkpoint runs/parity_eval_2581 --n 1000 --aa-limit 1000

The weights are the latest checkpoint of a ``robntk train`` run directory (README.md here says
which run). Writes ``eval_parity.json`` here (per-metric accuracies of both, per-image agreement
counts and the disagreeing indices, timings).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax
import torch

from robntk.data.datasets import load_split
from robntk.parity.eval_parity import run_eval_parity
from robntk.train.loop import load_trained

OUT = Path(__file__).resolve().parent / "eval_parity.json"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default="runs/parity_eval_2581")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--aa-limit", type=int, default=1000)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--min-batch", type=int, default=8)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    data_dir = os.environ.get("ROBNTK_DATA", "../shared/data")
    cfg, model, variables, meta = load_trained(args.checkpoint)
    x, y = load_split("cifar10", "test", data_dir, args.n, seed=0)
    t = time.perf_counter()
    r = run_eval_parity(
        model,
        variables,
        cfg.arch,
        x,
        y,
        aa_limit=args.aa_limit,
        C=cfg.C,
        N=cfg.N,
        torch_threads=args.torch_threads,
        min_batch=args.min_batch,
    )
    r.update(
        wall_s=time.perf_counter() - t,
        checkpoint={"run_dir": args.checkpoint, "epoch": meta.get("epoch"), "step": meta.get("step")},
        train_config=cfg.to_dict(),
        images="robntk.data.datasets.load_split('cifar10', 'test', limit=n, seed=0): class-balanced subset",
        versions={"jax": jax.__version__, "torch": torch.__version__, "torchattacks": "3.4.0"},
        torch_threads=args.torch_threads,
        command=" ".join(sys.argv),
    )
    out = Path(args.out)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(r, indent=1))
    tmp.replace(out)
    print(json.dumps({k: r[k] for k in ("n", "n_aa", "accuracy", "seconds")}, indent=1))
    print({k: (v["agree"], v["disagree"]) for k, v in r["agreement"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
