"""Score a uniform random sample of NB201 architectures with the engine within a time
budget, export the scores + configuration, and correlate them with NAS-RobBench-201.

Sample definition: the 6,466 isomorphism-class representatives are permuted with
``numpy.random.default_rng(seed).permutation``; architectures are scored in that order, so the
K architectures finished within the budget are the first K of the permutation — a uniform
random sample of size K. A rerun with the same arguments resumes the permutation (the store is
append-only), so the prefix property is kept.

Usage (from the repository root)::

    python benchmarks/run_sample.py --data-dir ../shared/data --minutes 35 --seed 0

Writes ``experiments/results/``: ``sample_cifar10.store/`` (raw store),
``scores_cifar10_sample.csv`` (+ ``.csv.json`` sidecar), ``config_cifar10_sample.json``,
``scores_cifar10_sample_correlation.csv`` and ``scores_cifar10_sample_tau.png``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from robntk.core.paths import atomic_write  # noqa: E402
from robntk.jobs.store import ResultStore  # noqa: E402
from robntk.nb201.searchspace import SearchSpace  # noqa: E402
from robntk.scoring.config import ScoreConfig, load_batch, provenance  # noqa: E402
from robntk.scoring.engine import EngineOptions  # noqa: E402
from robntk.scoring.runner import run_engine  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out-dir", default=str(ROOT / "experiments" / "results"))
    ap.add_argument("--minutes", type=float, default=35.0, help="time budget for scoring")
    ap.add_argument("--seed", type=int, default=0, help="permutation seed (the score config keeps its own seed 0)")
    ap.add_argument("--tag", default="cifar10_sample")
    ap.add_argument("--no-correlate", action="store_true")
    ap.add_argument("--no-pgd-unroll", action="store_true", help="rolled PGD loop (EngineOptions.pgd_unroll=False)")
    args = ap.parse_args(argv)

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    space = SearchSpace.load(args.data_dir)
    perm = [int(i) for i in np.random.default_rng(args.seed).permutation(np.asarray(space.representatives))]
    cfg = ScoreConfig()  # the default configuration (CIFAR-10 batch, B=32, eps 3/255 & 8/255, ...)
    store = out / f"sample_{args.tag.split('_')[0]}.store"
    t0 = time.time()
    rep = run_engine(
        perm,
        cfg,
        store,
        data_dir=args.data_dir,
        space=space,
        keep_order=True,
        time_budget_s=args.minutes * 60,
        progress=True,
        options=EngineOptions(flush_seconds=30, pgd_unroll=not args.no_pgd_unroll),
    )
    wall = time.time() - t0
    st = ResultStore.open(store)
    done = st.done()
    k = len(done)
    prefix = perm[:k]
    if set(prefix) != done:
        raise SystemExit(f"store rows are not a prefix of the permutation ({len(set(prefix) ^ done)} differ)")
    scores = out / f"scores_{args.tag}.csv"
    st.export(scores, order=prefix)
    _, _, digest = load_batch(cfg, args.data_dir)
    cfg_path = out / f"config_{args.tag}.json"
    # one entry per invocation: a resumed sample keeps the history of how it was computed
    runs = json.loads(cfg_path.read_text()).get("runs", []) if cfg_path.exists() else []
    runs.append(
        {
            "wall_s": wall,
            "compile_s": rep.compile_s,
            "archs_per_s": rep.archs_per_s,
            "n_scored": rep.n_scored,
            "n_total_after": k,
            "implementation": rep.implementation,
            "batching": rep.batching,
            "pgd_unroll": not args.no_pgd_unroll,
            "budget_min": args.minutes,
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    meta = {
        "sample": {
            "definition": "first n of numpy.random.default_rng(seed).permutation(SearchSpace.representatives)",
            "seed": args.seed,
            "n": k,
            "population": len(perm),
            "indices": prefix,
        },
        "runs": runs,
        **provenance(cfg, digest, {"param_definition": st.header.get("param_definition")}),
    }
    with atomic_write(cfg_path) as fh:
        json.dump(meta, fh, indent=2)
    print(
        f"{k} archs scored (this run {rep.n_scored}, {rep.archs_per_s:.3f} archs/s, compile {rep.compile_s:.0f} s); "
        f"wrote {scores}"
    )
    if not args.no_correlate:
        cmd = [
            sys.executable,
            "-m",
            "robntk.cli",
            "correlate",
            "--scores",
            str(scores),
            "--out",
            str(out / f"scores_{args.tag}_correlation.csv"),
            "--figure",
            str(out / f"scores_{args.tag}_tau.png"),
        ]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        subprocess.run(cmd, check=True, cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
