"""``robntk reproduce``: the main job — score a random sample of NB201 architectures on a
CIFAR-10 batch and correlate the NTK scores with NAS-RobBench-201 (CIFAR-10, CIFAR-100,
ImageNet16-120 metrics).

Writes into ``--out-dir`` (default ``./robntk-reproduce``; rerunning the same command resumes
from its store):

* ``scores.csv`` (+ ``scores.csv.json``: full configuration, batch hash, versions, machine) and
  the resumable store ``scores.csv.store``,
* ``correlation.csv`` (+ sidecar): Kendall τ-b (bootstrap CI) and Spearman ρ of every score
  column and of the trivial baselines (#cell parameters, #3×3 edges) against every metric,
* ``tau_heatmap.png`` and ``scatter.png`` (λ_min of the robust mixed kernel vs PGD-8 accuracy).

The protocol is :class:`robntk.scoring.config.ScoreConfig`'s defaults, the same as ``robntk
score``'s; the default sample (75 archs) is chosen to finish in about 13 minutes on a 2-core CPU.
``--sample``, ``--all`` and the score flags change it. No setting here was tuned on benchmark
correlations.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from robntk.analysis.correlation import DEFAULT_N_BOOT, check_n_boot, correlation_table
from robntk.commands._common import (
    JobOptions,
    add_engine_flags,
    add_score_flags,
    check_export_target,
    engine_options,
    score_config,
)
from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core.config import flag
from robntk.core.figures import score_scatter, tau_heatmap
from robntk.core.registry import CLEAN_METRIC, PGD8_METRIC, beta_tag, eps_tag
from robntk.core.tables import check_writable, read_table, write_table
from robntk.data.benchmark import DATASETS, RobBench
from robntk.nb201.searchspace import SearchSpace, sample_indices
from robntk.scoring.runner import run_engine

DEFAULT_SAMPLE = 75
DEFAULT_OUT_DIR = "robntk-reproduce"
#: The files written into ``--out-dir`` (besides the store ``scores.csv.store`` and the sidecars).
OUTPUTS: tuple[str, ...] = ("scores.csv", "correlation.csv", "tau_heatmap.png", "scatter.png")


@dataclass(frozen=True, kw_only=True)
class ReproduceOptions:
    """The options of ``robntk reproduce`` besides :class:`~robntk.scoring.config.ScoreConfig`
    and the engine.

    Attributes:
        sample: random representatives to score (seeded by ``--seed``). all: all 6,466 instead.
        n_boot: bootstrap resamples for the τ CIs. out_dir: output folder.
        no_progress: hide the progress bar.

    Raises:
        ValueError: ``--sample`` < 1, ``--n-boot`` outside 0..100,000.
    """

    sample: int = field(default=DEFAULT_SAMPLE, metadata=flag("random representatives to score"))
    all: bool = field(default=False, metadata=flag("all 6,466 representatives"))
    n_boot: int = field(default=DEFAULT_N_BOOT, metadata=flag("bootstrap resamples for the τ CIs"))
    out_dir: str = field(default=DEFAULT_OUT_DIR, metadata=flag("output folder"))
    no_progress: bool = field(default=False, metadata=flag("no progress bar"))

    def __post_init__(self):
        for name, v, lo in (("--sample", self.sample, 1), ("--n-boot", self.n_boot, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        check_n_boot(self.n_boot)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``robntk reproduce``."""
    add_dataclass_flags(p, ReproduceOptions)
    add_score_flags(p)
    add_engine_flags(p)


def run(args: argparse.Namespace) -> int:
    """Scores → correlation table → figures, all under ``--out-dir``."""
    opts = config_from_args(ReproduceOptions, args)
    cfg = score_config(args)
    job = config_from_args(JobOptions, args)
    engine = engine_options(args)
    out_dir = check_writable(Path(opts.out_dir), "--out-dir", kind="dir")
    out = out_dir / "scores.csv"
    store = check_writable(job.store_path(out), "--store", kind="dir")
    check_export_target(out, store, "--out-dir")
    for name in OUTPUTS[1:]:
        check_writable(out_dir / name, "--out-dir", kind="file")
    space = SearchSpace.load(args.data_dir)
    bench = RobBench.load(args.data_dir)  # fail early if the benchmark file is missing
    indices = list(space.representatives) if opts.all else sample_indices(space, opts.sample, cfg.seed)
    extra = {"job": "reproduce", "sample": "all" if opts.all else opts.sample, "sample_seed": cfg.seed}
    run_engine(
        indices,
        cfg,
        store,
        data_dir=args.data_dir,
        space=space,
        out=out,
        options=engine,
        progress=not opts.no_progress,
        extra_provenance=extra,
        time_budget_s=job.time_budget,
    )
    scores = read_table(out)
    scores = scores[scores["nb201_index"].isin(indices)]
    table = correlation_table(scores, bench, datasets=DATASETS, n_boot=opts.n_boot, seed=cfg.seed)
    write_table(
        table,
        out_dir / "correlation.csv",
        {"scores": "scores.csv", "n_archs": int(len(scores)), "n_boot": opts.n_boot, "config": cfg.as_dict(), **extra},
    )
    tau_heatmap(
        table,
        out_dir / "tau_heatmap.png",
        title=f"Kendall τ-b, {len(scores)} NB201 archs, NTK scores on a CIFAR-10 batch (B={cfg.batch_size})",
    )
    t, b = eps_tag(cfg.eps[-1]), beta_tag(cfg.betas[0])
    score_scatter(
        scores,
        bench,
        [("lambda_min_clean", CLEAN_METRIC), (f"lambda_min_robust_all_{t}_{b}", PGD8_METRIC)],
        out_dir / "scatter.png",
    )
    show = table[(table["dataset"] == "cifar10") & table["metric"].isin([CLEAN_METRIC, PGD8_METRIC])]
    print(
        show[["score", "metric", "n", "kendall_tau", "kendall_tau_ci_low", "kendall_tau_ci_high"]].to_string(
            index=False
        )
    )
    print(f"wrote {out_dir}/scores.csv, correlation.csv, tau_heatmap.png, scatter.png")
    return 0
