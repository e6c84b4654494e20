"""RobNets' search framework on NAS-Bench-201: a PGD-trained one-shot supernet.

RobNets (Guo et al., CVPR 2020, §3.2) trains one weight-sharing supernet with PGD adversarial
training, then samples candidate architectures, fine-tunes each for a few epochs with PGD from the
inherited weights and evaluates it under white-box PGD. Here the supernet is robntk's NB201
network with the cell as data (:class:`robntk.nb201.network.TinyNetwork` with ``op_ids``): every step samples one path
(one cell, uniformly from the 5⁶ = 15,625 op assignments, the same cell in every position, as in
NB201) and updates only the weights that path uses (single-path one-shot training; unused
weights get exactly zero gradient but, as in most SPOS code, SGD momentum and weight decay still
apply to them).

Choices (documented, configurable in :class:`robntk.robnets.config.OneShotConfig`):

* BN uses batch statistics everywhere (training, fine-tuning, attack and evaluation): with one
  path per step the running statistics of a shared BN mix paths, so evaluation with them would
  be meaningless (the common one-shot practice; RobNets' cells use non-affine BN as well).
* PGD L∞ with random start, step ``2.5·eps/steps`` (the benchmark's PGD-20 rule) unless given.
* Candidates: distinct NB201 isomorphism representatives with a connected cell, sampled with the
  seed; each fine-tuned ``finetune_steps`` PGD steps from the trained supernet (fresh momentum),
  then clean and PGD accuracy on a fixed, class-balanced test subset.

One training stack: the supernet step, the candidates' fine-tune steps, the optimiser and the
run directory are robntk's (:func:`robntk.train.step.make_step` with the cell as a traced
argument, :func:`robntk.train.optim.sgd` with :func:`robntk.train.optim.cosine_lr`,
:mod:`robntk.train.rundir`). The run directory ``out_dir`` holds ``config.json`` (the
configuration; another one is refused), orbax checkpoints of the supernet every ``ckpt_every``
steps (``checkpoints/<step>``; training resumes from the latest, on the same trajectory),
``metrics.jsonl`` (loss, accuracy, lr every 20 steps), the candidates' result store
``candidates.store`` (one job through :func:`robntk.jobs.run_job`, keyed by everything that
determines a row, the trained supernet's digest included; a killed evaluation resumes with the
rows of an uninterrupted one), its export ``candidates.csv`` (+ sidecar) and ``summary.json``.
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from robntk.attacks.iterative import pgd
from robntk.core.tables import write_json, write_table
from robntk.jobs import ResultStore, config_key, run_job
from robntk.nb201.cell import op_ids
from robntk.nb201.network import TinyNetwork
from robntk.nb201.searchspace import DISCONNECTED_REPRESENTATIVES, OPS
from robntk.robnets.config import FULL, REDUCED, OneShotConfig  # noqa: F401  (re-exported)
from robntk.scoring.config import batch_digest
from robntk.train import rundir
from robntk.train.optim import cosine_lr, sgd
from robntk.train.step import StepSpec, epoch_batch, initial_state, make_step, resume_steps, run_steps

#: Training-log interval of the supernet (steps).
LOG_EVERY = 20


# --------------------------------------------------------------------------- data
def prepare_images(x_uint8: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 (N, 32, 32, 3) → float32 in [0, 1]; ``image_size=16``: 2×2 average pooling."""
    x = x_uint8.astype(np.float32) / np.float32(255.0)
    if image_size == 16:
        x = x.reshape(x.shape[0], 16, 2, 16, 2, 3).mean(axis=(2, 4))
    return x


def load_data(cfg: OneShotConfig, data_dir=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training images (class-balanced ``train_limit`` subset) and the fixed evaluation subset
    (``eval_images`` class-balanced CIFAR-10 test images), float32 in [0, 1]."""
    from robntk.data.datasets import balanced_indices, load_dataset

    xtr, ytr = load_dataset("cifar10", "train", data_dir)
    if cfg.train_limit is not None and cfg.train_limit < len(ytr):
        idx = balanced_indices(ytr, cfg.train_limit, seed=cfg.seed)
        xtr, ytr = xtr[idx], ytr[idx]
    xte, yte = load_dataset("cifar10", "test", data_dir)
    idx = balanced_indices(yte, cfg.eval_images, seed=cfg.seed + 1)
    return (
        prepare_images(xtr, cfg.image_size),
        ytr.astype(np.int32),
        prepare_images(xte[idx], cfg.image_size),
        yte[idx].astype(np.int32),
    )


def sample_path(seed: int, step: int) -> np.ndarray:
    """The cell trained at ``step``: int32 (6,) op ids, uniform over the 15,625 cells."""
    return np.random.default_rng([int(seed), 7, int(step)]).integers(0, len(OPS), size=6).astype(np.int32)


def sample_candidates(bench, n: int, seed: int) -> list[int]:
    """``n`` distinct connected NB201 representatives (sorted), sampled with ``seed``."""
    reps = np.unique(bench.isomorph)
    pool = np.array(sorted(set(int(r) for r in reps) - set(DISCONNECTED_REPRESENTATIVES)))
    if not 1 <= n <= len(pool):
        raise ValueError(f"n must be in 1..{len(pool)}, got {n}")
    rng = np.random.default_rng([int(seed), 11])
    return sorted(int(i) for i in rng.choice(pool, size=n, replace=False))


# --------------------------------------------------------------------------- steps
def supernet(cfg: OneShotConfig) -> TinyNetwork:
    """The supernet: :class:`robntk.nb201.network.TinyNetwork` (C, N, CIFAR-10 normalisation)."""
    return TinyNetwork(C=cfg.C, N=cfg.N, num_classes=10, dataset="cifar10")


def step_spec(cfg: OneShotConfig) -> StepSpec:
    """The supernet's (and the fine-tunes') PGD-AT step: PGD-``train_pgd_steps`` at ``eps``, step
    ``train_step_size`` (None: 2.5·eps/steps), crafted with batch statistics, no running
    statistics, RandomCrop(pad S/8) + flip, the attack loop rolled."""
    return StepSpec(
        method="pgd",
        eps=cfg.eps,
        attack_steps=cfg.train_pgd_steps,
        attack_step_size=cfg.train_step_size,
        augment=True,
        crop_pad=cfg.image_size // 8,
        attack_bn="train",
        running_stats=False,
        attack_loop="fori",
    )


def make_optimizer(cfg: OneShotConfig, total_steps: int, lr: float | None = None, schedule: bool = True):
    """:func:`robntk.train.optim.sgd` (momentum, coupled weight decay g ← g + wd·θ) with a cosine lr
    from ``lr`` (default ``cfg.lr``) to 0 over ``total_steps`` (``schedule=False``: constant)."""
    lr = cfg.lr if lr is None else lr
    return sgd(cosine_lr(lr, total_steps) if schedule else lr, cfg.momentum, cfg.weight_decay)


def make_eval(net: TinyNetwork, cfg: OneShotConfig):
    """Jitted ``(params, x, y, ids, key) -> (n_correct_clean, n_correct_pgd)`` for one batch
    (batch-statistics BN; PGD-``eval_pgd_steps`` at ``eps``, step 2.5·eps/steps, random start)."""

    def f(params, x, ids):
        return net.forward(params, None, x, ids, True)[0]

    @jax.jit
    def ev(params, x, y, ids, key):
        clean = jnp.sum(jnp.argmax(f(params, x, ids), -1) == y)
        xa = pgd(lambda p, z: f(p, z, ids), params, x, y, cfg.eps, steps=cfg.eval_pgd_steps, key=key)
        adv = jnp.sum(jnp.argmax(f(params, xa, ids), -1) == y)
        return clean, adv

    return ev


@functools.lru_cache(maxsize=4)
def compiled_steps(cfg: OneShotConfig) -> tuple:
    """``(net, supernet tx, supernet step, fine-tune tx, fine-tune step, eval)`` of a
    configuration, memoised (a resumed or repeated search in the same process compiles nothing
    again): :func:`robntk.train.step.make_step` with :func:`step_spec` under the cosine optimiser
    over ``train_steps``, the same step under the constant-lr fine-tune optimiser, and
    :func:`make_eval`."""
    net = supernet(cfg)
    tx = make_optimizer(cfg, cfg.train_steps)
    ft_tx = make_optimizer(cfg, cfg.finetune_steps, lr=cfg.finetune_lr, schedule=False)
    spec = step_spec(cfg)
    return net, tx, make_step(net, tx, spec), ft_tx, make_step(net, ft_tx, spec), make_eval(net, cfg)


# --------------------------------------------------------------------------- training
def train_supernet(
    cfg: OneShotConfig, x: np.ndarray, y: np.ndarray, out_dir: str | Path | None = None, progress: bool = True
) -> dict:
    """Train the supernet with single-path PGD adversarial training (resumable).

    Step t trains the cell :func:`sample_path` ``(seed, t)`` on the batch
    :func:`robntk.train.step.epoch_batch` ``(seed, t, N, batch_size)`` with key
    ``fold_in(PRNGKey(seed + 1), t)``; initial weights ``TinyNetwork.init(PRNGKey(seed))``.

    Args:
        cfg: configuration. x: float32 (N, S, S, 3) in [0, 1]; y: int32 (N,).
        out_dir: the run directory (orbax checkpoints every ``ckpt_every`` steps, labelled by
            step, and ``metrics.jsonl``; training resumes from the latest checkpoint); None: in
            memory.
        progress: tqdm bar.

    Returns:
        The supernet parameters (pytree of arrays).

    Raises:
        ValueError: images not of ``cfg.image_size``; fewer images than a batch; a checkpoint
            trained on another number of images.
    """
    if x.shape[1:] != (cfg.image_size, cfg.image_size, 3) or len(x) != len(y) or len(y) < cfg.batch_size:
        raise ValueError(
            f"need (N >= {cfg.batch_size}, {cfg.image_size}, {cfg.image_size}, 3) images with N labels, "
            f"got {x.shape} and {len(y)} labels"
        )
    net, tx, step, *_ = compiled_steps(cfg)
    state = initial_state(net.init(jax.random.PRNGKey(cfg.seed))["params"], tx)
    start = 0
    if out_dir is not None:
        state, start = resume_steps(out_dir, state, len(y), "supernet")
    else:  # committed to the default device, as a restored state: both hit the same compiled step
        state = jax.device_put(state, jax.devices()[0])
    meta = {
        "n_train": len(y),
        "seed": cfg.seed,
        "what": "one-shot supernet",
        "data_order": "robntk.train.step.epoch_batch(seed, step, n_train, batch_size)",
        "step_key": "fold_in(PRNGKey(seed + 1), step)",
        "path": "sample_path(seed, step)",
    }
    state, _ = run_steps(
        step,
        state,
        (jnp.asarray(x), jnp.asarray(y)),
        start=start,
        stop=cfg.train_steps,
        batch_fn=lambda t: epoch_batch(cfg.seed, t, len(y), cfg.batch_size),
        key_fn=lambda t: jax.random.fold_in(jax.random.PRNGKey(cfg.seed + 1), t),
        cell_fn=lambda t: sample_path(cfg.seed, t),
        run_dir=out_dir,
        ckpt_every=cfg.ckpt_every,
        meta=meta,
        log_every=LOG_EVERY,
        progress=progress,
        desc="supernet PGD-AT",
    )
    return state["params"]


def params_digest(params) -> str:
    """SHA-256 (16 hex digits) of a parameter pytree's leaves (tree order, bytes): identifies the
    trained supernet in the candidates' store key."""
    h = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(params):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- candidates
COLUMNS = ["nb201_index", "oneshot_clean", "oneshot_pgd"]


def store_key(cfg: OneShotConfig, params, xtr, ytr, xte, yte) -> str:
    """Key of the candidates' store: :func:`robntk.jobs.config_key` of the configuration (without
    ``num_archs``, which only selects), the trained supernet's :func:`params_digest` and the
    digests of the fine-tune and evaluation data."""
    c = {k: v for k, v in cfg.to_dict().items() if k != "num_archs"}
    return config_key(
        {
            "oneshot": c,
            "supernet": params_digest(params),
            "train_data": batch_digest(xtr, ytr),
            "eval_data": batch_digest(xte, yte),
        }
    )


def evaluate_candidates(
    cfg: OneShotConfig,
    params,
    indices,
    space,
    xtr,
    ytr,
    xte,
    yte,
    store: str | Path | None = None,
    progress: bool = True,
    time_budget_s: float | None = None,
    flush_s: float = 30.0,
) -> pd.DataFrame:
    """Fine-tune (``cfg.finetune_steps``) and evaluate each candidate with the inherited weights.

    Candidate i's fine-tune step s uses the batch ``default_rng([seed, 13, i, s]).choice(N,
    batch_size, replace=False)`` and key ``PRNGKey(i·1000 + s)``, from fresh momentum, at the
    constant lr ``finetune_lr``; its evaluation batch b (of ``eval_batch``) uses the attack key
    ``fold_in(PRNGKey(seed + 2), b0)`` (the same start for every candidate).

    Args:
        cfg: configuration. params: trained supernet parameters.
        indices: NB201 indices of the candidates. space: :class:`robntk.nb201.searchspace.SearchSpace`.
        xtr, ytr: fine-tuning data; xte, yte: the fixed evaluation subset (float32 in [0, 1]).
        store: result-store directory (None: in memory); candidates it holds are skipped.
        progress: tqdm bar. time_budget_s: start no new candidate after this many seconds.
        flush_s: seconds between store flushes.

    Returns:
        DataFrame with :data:`COLUMNS` (accuracies as fractions), one row per stored candidate of
        ``indices``, ascending index.

    Raises:
        StoreMismatchError: ``store`` holds rows of another configuration or supernet.
    """
    _, _, _, tx, ft, ev = compiled_steps(cfg)
    data = (jnp.asarray(xtr), jnp.asarray(ytr))
    n_eval = len(yte)

    def row(idx: int) -> dict[str, Any]:
        ids = op_ids(space.arch_str(idx))
        state, _ = run_steps(
            ft,
            initial_state(params, tx),
            data,
            start=0,
            stop=cfg.finetune_steps,
            batch_fn=lambda s: np.random.default_rng([cfg.seed, 13, idx, s]).choice(
                len(ytr), cfg.batch_size, replace=False
            ),
            key_fn=lambda s: jax.random.PRNGKey(idx * 1000 + s),
            cell_fn=lambda s: ids,
        )
        clean = adv = 0
        for b0 in range(0, n_eval, cfg.eval_batch):
            key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed + 2), b0)  # same attack start for all archs
            cb, ab = ev(state["params"], xte[b0 : b0 + cfg.eval_batch], yte[b0 : b0 + cfg.eval_batch], ids, key)
            clean, adv = clean + int(cb), adv + int(ab)
        return {"nb201_index": int(idx), "oneshot_clean": clean / n_eval, "oneshot_pgd": adv / n_eval}

    sink = None
    if store is not None:
        sink = ResultStore.open(
            store,
            store_key(cfg, params, xtr, ytr, xte, yte),
            {"config": cfg.to_dict(), "supernet": params_digest(params), "selection": sorted(int(i) for i in indices)},
        )
    computed: dict[int, dict] = {}

    def compute(blk: list[int]) -> list[dict]:
        rows = [row(i) for i in blk]
        computed.update((r["nb201_index"], r) for r in rows)
        return rows

    run_job(indices, compute, sink, time_budget_s=time_budget_s, flush_s=flush_s, desc="candidates", progress=progress)
    have = sink.read().rows if sink is not None else computed
    keep = sorted(i for i in set(int(i) for i in indices) if i in have)
    return pd.DataFrame([have[i] for i in keep], columns=COLUMNS)


# --------------------------------------------------------------------------- analysis
def summarize(results: pd.DataFrame, bench, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Kendall τ (with a bootstrap CI) of one-shot vs NAS-RobBench-201 CIFAR-10 accuracies over the
    candidates, and the benchmark accuracy of the cell the search picks.

    The pick is the candidate with the highest one-shot PGD accuracy (ties: higher one-shot clean
    accuracy, then lower index). Its benchmark PGD-8 accuracy is also given as a rank among the
    candidates and a percentile among all 6,466 representatives.

    Returns:
        dict of numbers (JSON-serialisable).
    """
    from robntk.analysis.correlation import bootstrap_ci, kendall_tau

    idx = results["nb201_index"].astype(int).to_numpy()
    b_pgd = bench.values(idx, "cifar10", "val_pgd_8.0_acc")
    b_clean = bench.values(idx, "cifar10", "val_acc")
    o_pgd = results["oneshot_pgd"].to_numpy(float)
    o_clean = results["oneshot_clean"].to_numpy(float)
    order = np.lexsort((idx, -o_clean, -o_pgd))
    pick = int(idx[order[0]])
    all_pgd = bench.values(np.unique(bench.isomorph), "cifar10", "val_pgd_8.0_acc")
    all_pgd = all_pgd[~np.isnan(all_pgd)]
    p_pgd = float(bench.values([pick], "cifar10", "val_pgd_8.0_acc")[0])
    out = {
        "n_candidates": len(idx),
        "tau_pgd_vs_bench_pgd8": kendall_tau(o_pgd, b_pgd),
        "tau_pgd_vs_bench_pgd8_ci95": list(bootstrap_ci(o_pgd, b_pgd, n_boot=n_boot, seed=seed)),
        "tau_clean_vs_bench_clean": kendall_tau(o_clean, b_clean),
        "tau_clean_vs_bench_clean_ci95": list(bootstrap_ci(o_clean, b_clean, n_boot=n_boot, seed=seed)),
        "tau_pgd_vs_bench_clean": kendall_tau(o_pgd, b_clean),
        "oneshot_pgd_mean": float(np.mean(o_pgd)),
        "oneshot_clean_mean": float(np.mean(o_clean)),
        "pick": pick,
        "pick_oneshot_pgd": float(o_pgd[order[0]]),
        "pick_bench_pgd8": p_pgd,
        "pick_bench_clean": float(bench.values([pick], "cifar10", "val_acc")[0]),
        "pick_percentile_all": float(np.mean(all_pgd <= p_pgd) * 100),
        "pick_rank_among_candidates": int(np.sum(b_pgd > p_pgd) + 1),
        "best_candidate_bench_pgd8": float(np.nanmax(b_pgd)),
        "median_candidate_bench_pgd8": float(np.nanmedian(b_pgd)),
    }
    return {k: (round(v, 6) if isinstance(v, float) and not math.isnan(v) else v) for k, v in out.items()}


def run_search(
    cfg: OneShotConfig, out_dir: str | Path, data_dir=None, progress: bool = True, time_budget_s: float | None = None
) -> dict[str, Any]:
    """The whole search: train (or resume) the supernet, evaluate the candidates (resumable),
    write ``config.json``, ``candidates.csv`` (+ sidecar) and ``summary.json`` into the run
    directory ``out_dir`` (module docstring).

    Args:
        time_budget_s: stop starting candidates after this many seconds of the evaluation (the
            summary then covers the candidates done; rerun to continue).

    Returns:
        The summary (:func:`summarize`, plus ``pick_arch_str`` and ``n_remaining``).

    Raises:
        ValueError: ``out_dir`` holds a run with another configuration.
        PermissionError: ``out_dir`` is not writable (before any work).
    """
    from robntk.data.benchmark import RobBench

    out = rundir.check_run_dir(out_dir, "--out")
    try:
        rundir.check_config(out, cfg.to_dict())
    except ValueError as exc:
        raise ValueError(
            f"{out} holds a one-shot run with another configuration; use a new directory ({exc})"
        ) from None
    bench = RobBench.load(data_dir)
    space = bench.space
    xtr, ytr, xte, yte = load_data(cfg, data_dir)
    rundir.init_config(out, cfg.to_dict())
    params = train_supernet(cfg, xtr, ytr, out, progress)
    cands = sample_candidates(bench, cfg.num_archs, cfg.seed)
    res = evaluate_candidates(
        cfg,
        params,
        cands,
        space,
        xtr,
        ytr,
        xte,
        yte,
        out / "candidates.store",
        progress=progress,
        time_budget_s=time_budget_s,
    )
    write_table(
        res,
        out / "candidates.csv",
        {
            "config": cfg.to_dict(),
            "supernet": params_digest(params),
            "store": str(out / "candidates.store"),
            "n_rows": len(res),
            "n_selected": len(cands),
        },
    )
    summary = summarize(res, bench)
    summary["pick_arch_str"] = space.arch_str(summary["pick"])
    summary["n_remaining"] = len(cands) - len(res)
    write_json(summary, out / "summary.json")
    return summary
