"""The main job: score a random sample of NB201 architectures on a CIFAR-10 batch and correlate
the NTK scores with NAS-RobBench-201 (CIFAR-10, CIFAR-100, ImageNet16-120 metrics).

Writes into ``--out-dir`` (default ``experiments/reproduce``):

* ``scores.csv`` (+ ``scores.csv.json``: full configuration, batch hash, versions, machine),
* ``correlation.csv``: Kendall τ-b (bootstrap CI) and Spearman ρ of every score column and of the
  trivial baselines (#cell parameters, #3×3 edges) against every benchmark metric,
* ``tau_heatmap.png`` and ``scatter.png`` (λ_min of the robust mixed kernel vs PGD-8 accuracy).

The default size is chosen to finish in about 10 minutes on a 2-core CPU (a sample of
representatives, B=16, ε=8/255, 5 PGD steps); ``--sample``, ``--all`` and the score flags
change it. No setting here was tuned on benchmark correlations.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import paths, scoring
from .searchspace import SearchSpace, sample_indices

DEFAULTS = scoring.ScoreConfig(batch_size=16, eps=(8 / 255,), betas=(0.5,), pgd_steps=5)
DEFAULT_SAMPLE = 150


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``robntk reproduce``."""
    p.add_argument("--sample", type=int, default=DEFAULT_SAMPLE, help="random representatives to score")
    p.add_argument("--all", action="store_true", help="all 6,466 representatives")
    scoring.add_config_arguments(p, DEFAULTS)
    p.add_argument("--engine", choices=("auto", "dedicated", "supernet"), default="auto")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for the τ CIs")
    p.add_argument("--out-dir", default="experiments/reproduce")
    p.add_argument("--no-progress", action="store_true")


def score_indices(indices, cfg, out, data_dir, space, engine: str, progress: bool, extra: dict):
    """Score with the supernet engine (one compile for every architecture; resumable store
    ``OUT.store``) unless ``engine='dedicated'`` (one compile per architecture)."""
    if engine == "dedicated":
        return scoring.run_score(indices, cfg, out, data_dir=data_dir, space=space, progress=progress,
                                 extra_provenance=extra)
    from .engine import run_engine

    out = Path(out)
    run_engine(indices, cfg, out.with_name(out.name + ".store"), data_dir=data_dir, space=space, out=out,
               progress=progress, extra_provenance=extra)
    return scoring.read_table(out)


def run(args: argparse.Namespace) -> int:
    """``robntk reproduce``: scores → correlation table → figures, all under ``--out-dir``."""
    from .benchmark import DATASETS, RobBench
    from .correlation import correlation_table
    from .figures import tau_heatmap

    cfg = scoring.config_from_args(args)
    space = SearchSpace.load(args.data_dir)
    bench = RobBench.load(args.data_dir)  # fail early if the benchmark file is missing
    indices = list(space.representatives) if args.all else sample_indices(space, args.sample, args.seed)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = {"job": "reproduce", "sample": "all" if args.all else args.sample, "sample_seed": args.seed,
             "engine": args.engine}
    scores = score_indices(indices, cfg, out_dir / "scores.csv", args.data_dir, space, args.engine,
                           not args.no_progress, extra)
    table = correlation_table(scores, bench, datasets=DATASETS, n_boot=args.n_boot, seed=args.seed)
    paths.atomic_save(out_dir / "correlation.csv", lambda p: table.to_csv(p, index=False))
    tau_heatmap(table, out_dir / "tau_heatmap.png",
                title=f"Kendall τ-b, {len(scores)} NB201 archs, NTK scores on a CIFAR-10 batch (B={cfg.batch_size})")
    scatter(scores, bench, cfg, out_dir / "scatter.png")
    with paths.atomic_write(out_dir / "correlation.csv.json") as fh:
        json.dump({"scores": "scores.csv", "n_archs": int(len(scores)), "n_boot": args.n_boot,
                   "config": cfg.as_dict(), **extra}, fh, indent=2)
    show = table[(table["dataset"] == "cifar10") & table["metric"].isin(["val_acc", "val_pgd_8.0_acc"])]
    print(show[["score", "metric", "n", "kendall_tau", "kendall_tau_ci_low", "kendall_tau_ci_high"]]
          .to_string(index=False))
    print(f"wrote {out_dir}/scores.csv, correlation.csv, tau_heatmap.png, scatter.png")
    return 0


def scatter(scores, bench, cfg: scoring.ScoreConfig, path) -> Path:
    """λ_min (clean and robust mixed kernel, largest ε, first β) vs C10 clean / PGD-8 accuracy."""
    import numpy as np
    from matplotlib.figure import Figure

    t, b = scoring.eps_tag(cfg.eps[-1]), scoring.beta_tag(cfg.betas[0])
    cols = [("lambda_min_clean", "val_acc"), (f"lambda_min_robust_all_{t}_{b}", "val_pgd_8.0_acc")]
    fig = Figure(figsize=(9, 4))
    for ax, (col, metric) in zip(fig.subplots(1, 2), cols):
        acc = bench.values(scores["nb201_index"].to_numpy(), "cifar10", metric)
        lam = scores[col].to_numpy(dtype=float)
        ok = lam > 0
        ax.scatter(np.log10(lam[ok]), acc[ok], s=12)
        ax.set_xlabel(f"log10 {col}")
        ax.set_ylabel(f"cifar10 {metric}")
        ax.set_title(f"n={int(ok.sum())} (λ_min=0 dropped: {int((~ok).sum())})", fontsize=9)
    fig.tight_layout()
    return paths.atomic_save(path, lambda p: fig.savefig(p, dpi=120))
