"""Zero-cost proxies computed by robntk (issue 11): all representatives for the cheap ones, a
fixed sample for the rest (NASLib's 13 but grasp, which has its own stage), the agreement with NAS-Bench-Suite-Zero's NASLib values, the τ table
vs every NAS-RobBench-201 metric (NASLib values as a peer row on the same archs), a heatmap, and
zero-shot / tuned combinations of the robntk proxies, and zero-shot combinations of the proxies
with the NTK family on the protocol study's 200 base archs (``combinations_ntk_base200.csv``).

Usage (resumable: rerun the same command to continue; ``--minutes`` bounds the computing part,
the analysis then runs on what is stored)::

    python experiments/proxies/run_proxies.py --data-dir ../shared/data --minutes 60
    python experiments/proxies/run_proxies.py --data-dir ../shared/data --analyse-only

Stages (one store, ``proxies.store``, one sub-store per proxy, shared by the stages):

* ``all``: :data:`ALL_PROXIES` for all 6,466 representatives (``robntk proxies --all``);
* ``sample``: :data:`SAMPLE_PROXIES` (NASLib's set) for the first ``SAMPLE_N`` of a
  ``default_rng(0)`` permutation of the representatives that NASLib scored *as that same cell*
  (so the agreement compares values of one cell, not of two isomorphs);
* ``grasp``: ``grasp`` on the same sample (a Hessian-vector product: ≈ 3 backward passes);
* ``sample_extra``: :data:`EXTRA_PROXIES` (not in NASLib: no reference values) on the same sample;
* ``tenas``: ``tenas_ntk_cond`` on the same sample (train-mode NTK of the 64-image batch);
* ``all_rest``: the rest of NASLib's one-pass set (:data:`SAMPLE_PROXIES`; grasp, a second-order
  proxy at ≈ 3 backward passes, stays on the sample) on all 6,466, in the order of
  ``all_archs_order.txt`` (the sample first, then a ``default_rng(1)`` permutation of the other
  representatives), so that a partial run is a uniform random sample. With the shared-pass
  groups (``robntk.proxies.GROUPS``) ≈ 2 s per arch on the 2-core CPU: it grows run by run
  through the store.

Configuration: ``robntk proxies`` defaults (CIFAR-10 training images, batch 64, init seed 0,
C=16, N=5, batch-statistics BN). Nothing is chosen by looking at benchmark accuracies except the
rows marked ``learned`` (fitted on the PGD-8 accuracy of a seeded random half, τ on the other).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from robntk.analysis import combine as K  # noqa: E402
from robntk.analysis import combine_fit as KF  # noqa: E402
from robntk.analysis.correlation import correlation_table, kendall_tau, spearman_rho  # noqa: E402
from robntk.cli import main as robntk_main  # noqa: E402
from robntk.core.figures import tau_heatmap  # noqa: E402
from robntk.core.paths import atomic_write  # noqa: E402
from robntk.data.benchmark import DATASETS, METRICS, RobBench  # noqa: E402
from robntk.data.suite_zero import load_suite_zero  # noqa: E402
from robntk.nb201.searchspace import SearchSpace  # noqa: E402

HERE = Path(__file__).resolve().parent
STORE = HERE / "proxies.store"
ALL_PROXIES = ("params", "flops", "synflow", "nwot")
SAMPLE_PROXIES = (
    "params",
    "flops",
    "synflow",
    "nwot",
    "jacov",
    "snip",
    "grad_norm",
    "fisher",
    "epe_nas",
    "zen",
    "l2_norm",
    "plain",
)
#: proxies outside NASLib's set (no reference values): ZiCo, CRoZe (robustness-aware), TE-NAS's
#: linear-region count; TE-NAS's NTK condition number has its own stage (a B=64 train-mode NTK).
EXTRA_PROXIES = ("zico", "croze", "linear_regions")
SAMPLE_N = 500
STAGES = {
    "all": ("proxies_all.csv", ALL_PROXIES),
    "sample": ("proxies_sample.csv", SAMPLE_PROXIES),
    "grasp": ("proxies_grasp.csv", ("grasp",)),
    "sample_extra": ("proxies_sample_extra.csv", EXTRA_PROXIES),
    "tenas": ("proxies_sample_tenas.csv", ("tenas_ntk_cond",)),
    "all_rest": ("proxies_all_rest.csv", SAMPLE_PROXIES),
}
N_BOOT = 1000
ZERO_SHOT = [
    "mean_rank(params,flops,synflow,nwot)",
    "vote(params,flops,synflow,nwot)",
    "mean_rank(synflow,jacov,snip)",
    "vote(synflow,jacov,snip)",
    "mean_rank(params,nwot)",
]
#: NTK scores of the protocol base level (train BN, 200 archs) and zero-shot rules that add them to
#: the proxies (fixed before any result: K̃_all at the paper's β = 0.5, equal weights).
NTK_COLS = ["lambda_min_clean", "lambda_min_robust_eps8", "lambda_min_twice_eps8", "lambda_min_robust_all_eps8_beta0.5"]
NTK_ZERO_SHOT = [
    "mean_rank(params,nwot)",
    "mean_rank(params,nwot,lambda_min_robust_all_eps8_beta0.5)",
    "mean_rank(params,nwot,lambda_min_clean)",
    "vote(synflow,jacov,snip)",
    "vote(synflow,jacov,snip,lambda_min_robust_all_eps8_beta0.5)",
    "mean_rank(lambda_min_clean,lambda_min_robust_eps8,lambda_min_twice_eps8)",
]


def sample_file(space: SearchSpace, data_dir) -> Path:
    """Write ``sample_archs.txt``: the first SAMPLE_N representatives NASLib scored as that cell."""
    scored = set(load_suite_zero("cifar10", data_dir).index)
    reps = np.asarray([r for r in space.representatives if r in scored])
    chosen = np.random.default_rng(0).permutation(reps)[:SAMPLE_N]
    path = HERE / "sample_archs.txt"
    with atomic_write(path) as fh:
        fh.write("# first 500 of default_rng(0).permutation(representatives NASLib scored as that cell)\n")
        fh.write("".join(f"{int(i)}\n" for i in chosen))
    rest = np.random.default_rng(1).permutation(np.setdiff1d(np.asarray(space.representatives), chosen))
    with atomic_write(HERE / "all_archs_order.txt") as fh:
        fh.write("# sample_archs.txt, then default_rng(1).permutation(the other representatives)\n")
        fh.write("".join(f"{int(i)}\n" for i in np.concatenate([chosen, rest])))
    return path


def compute(data_dir, minutes: float, stages) -> None:
    space = SearchSpace.load(data_dir)
    archs = sample_file(space, data_dir)
    deadline = time.time() + 60 * minutes
    for stage in stages:
        left = (deadline - time.time()) / 60
        if left <= 0:
            break
        out, names = STAGES[stage]
        sel = {"all": ["--all"], "all_rest": ["--archs-file", str(HERE / "all_archs_order.txt")]}.get(
            stage, ["--archs-file", str(archs)]
        )
        argv = [
            "proxies",
            *sel,
            "--proxies",
            *names,
            "--out",
            str(HERE / out),
            "--store",
            str(STORE),
            "--minutes",
            f"{left:.3f}",
        ]
        if data_dir:
            argv[1:1] = ["--data-dir", str(data_dir)]
        t0 = time.time()
        rc = robntk_main(argv)
        print(f"stage {stage}: rc {rc}, {time.time() - t0:.0f} s", flush=True)


def _read(name: str) -> pd.DataFrame | None:
    p = HERE / name
    return pd.read_csv(p).set_index("nb201_index") if p.is_file() else None


def agreement(ours: pd.DataFrame, naslib: pd.DataFrame, bench: RobBench) -> pd.DataFrame:
    """Spearman ρ / Kendall τ between robntk's and NASLib's values of the same cells, and each
    one's τ vs CIFAR-10 PGD-8 on those cells."""
    rows = []
    for p in [c for c in ours.columns if c in naslib.columns and c != "arch_str" and not c.endswith("_undefined")]:
        both = ours[[p]].join(naslib[[p]].add_suffix("_naslib"), how="inner").dropna()
        a, b = both[p].to_numpy(), both[f"{p}_naslib"].to_numpy()
        y = bench.values(bench.representatives_of(both.index.to_numpy()), "cifar10", "val_pgd_8.0_acc")
        rows.append(
            {
                "proxy": p,
                "n_cells": len(both),
                "spearman_rho": spearman_rho(a, b),
                "kendall_tau": kendall_tau(a, b),
                "tau_pgd8_robntk": kendall_tau(a, y),
                "tau_pgd8_naslib": kendall_tau(b, y),
            }
        )
    return pd.DataFrame(rows)


def analyse(data_dir) -> None:
    bench = RobBench.load(data_dir)
    naslib_cells = load_suite_zero("cifar10", data_dir)
    naslib_cls = load_suite_zero("cifar10", data_dir, per_class="smallest")
    tables, agree, summary = [], [], {}
    for stage, (out, names) in STAGES.items():
        ours = _read(out)
        if ours is None or not len(ours):
            continue
        agree.append(agreement(ours, naslib_cells, bench).assign(stage=stage))
        cols = [c for c in names if c in ours.columns]  # a stage may hold fewer proxies than it asks for
        peer = naslib_cls[[c for c in cols if c in naslib_cls.columns]].add_prefix("naslib_")
        both = ours[cols].join(peer, how="left")
        t = correlation_table(both, bench, n_boot=N_BOOT, include_baselines=stage == "all", columns=list(both.columns))
        tables.append(t.assign(stage=stage, n_archs=t.attrs["n_archs"]))
        summary[stage] = {"n_archs": int(t.attrs["n_archs"]), "proxies": list(names)}
    # the NTK family (protocol base level: train BN, 200 archs) beside robntk's and NASLib's proxies
    ntk = ROOT / "experiments" / "protocol" / "scores_base.csv"
    all_ = _read(STAGES["all"][0])
    # the export lists the base level in sampling order; its first 200 rows are the 200 archs of the
    # committed analysis (the base level has since been extended; see experiments/protocol/README.md)
    sc = pd.read_csv(ntk).head(200).set_index("nb201_index") if ntk.is_file() else None
    if sc is not None and all_ is not None:
        cols = [c for c in sc.columns if c.startswith("lambda_min_") and c.endswith(("clean", "eps8", "beta0.5"))]
        both = (
            sc[cols]
            .join(all_[list(ALL_PROXIES)], how="inner")
            .join(naslib_cls[list(SAMPLE_PROXIES)].add_prefix("naslib_"), how="left")
        )
        t = correlation_table(both, bench, n_boot=N_BOOT, columns=list(both.columns))
        tables.append(t.assign(stage="ntk_base200", n_archs=t.attrs["n_archs"]))
        summary["ntk_base200"] = {"n_archs": int(t.attrs["n_archs"]), "source": str(ntk.relative_to(ROOT))}
    if not tables:
        print("nothing computed yet")
        return
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(HERE / "tau_table.csv", index=False)
    pd.concat(agree, ignore_index=True).to_csv(HERE / "agreement_naslib.csv", index=False)
    for stage in table.stage.unique():
        t = table[table.stage == stage]
        tau_heatmap(
            t,
            HERE / f"tau_heatmap_{stage}.png",
            title=f"Kendall τ-b, robntk proxies and NASLib peer rows ({stage}: n={int(t.n_archs.iloc[0])})",
        )
    # combinations of robntk's own proxies (all archs): zero-shot rules and learned on a half split
    targets = [(d, m) for d in DATASETS for m in METRICS]
    if all_ is not None and len(all_):
        rep, models = KF.report(
            all_[list(ALL_PROXIES)],
            bench,
            singles=list(ALL_PROXIES),
            zero_shot_specs=[s for s in ZERO_SHOT if set(K.parse_spec(s)[1]) <= set(ALL_PROXIES)],
            learned=[
                ("linear", list(ALL_PROXIES)),
                ("greedy_mean_rank", list(ALL_PROXIES)),
                ("quadratic", list(ALL_PROXIES)),
            ],
            targets=targets,
            n_boot=N_BOOT,
            progress=False,
        )
        rep.to_csv(HERE / "combinations_all.csv", index=False)
        summary["combinations_all"] = {
            "n_rows": int(rep.attrs["n_rows"]),
            "n_train": int(rep.attrs["n_train"]),
            "split_seed": int(rep.attrs["split_seed"]),
        }
    # NASLib's one-pass set: on the 500-cell sample, and on the all_rest prefix (a uniform sample)
    for stage, learned in (("sample", ("linear",)), ("all_rest", ("linear", "quadratic"))):
        sam = _read(STAGES[stage][0])
        if sam is None or len(sam) < 20:
            continue
        have = [c for c in SAMPLE_PROXIES if c in sam.columns]
        rep, _ = KF.report(
            sam[have],
            bench,
            singles=have,
            zero_shot_specs=[z for z in ZERO_SHOT if set(K.parse_spec(z)[1]) <= set(have)],
            learned=[(m, have) for m in learned],
            targets=targets,
            n_boot=N_BOOT,
            progress=False,
        )
        rep.to_csv(HERE / f"combinations_{stage}.csv", index=False)
        summary[f"combinations_{stage}"] = {
            "n_rows": int(rep.attrs["n_rows"]),
            "n_train": int(rep.attrs["n_train"]),
            "split_seed": int(rep.attrs["split_seed"]),
        }
    # the NTK family beside the one-pass proxies on the protocol's 200 base archs (zero-shot only)
    rest = _read(STAGES["all_rest"][0])
    if sc is not None and rest is not None:
        both = sc[NTK_COLS].join(rest[list(SAMPLE_PROXIES)], how="inner")
        rep, _ = KF.report(
            both,
            bench,
            singles=NTK_COLS + ["params", "nwot"],
            zero_shot_specs=NTK_ZERO_SHOT,
            targets=targets,
            n_boot=N_BOOT,
            progress=False,
        )
        rep.to_csv(HERE / "combinations_ntk_base200.csv", index=False)
        summary["combinations_ntk_base200"] = {"n_rows": int(rep.attrs["n_rows"]), "zero_shot_only": True}
    with atomic_write(HERE / "summary.json") as fh:
        fh.write(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--minutes", type=float, default=60.0, help="time budget of the computing part")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    ap.add_argument("--analyse-only", action="store_true")
    args = ap.parse_args(argv)
    if not args.analyse_only:
        compute(args.data_dir, args.minutes, args.stages)
    analyse(args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
