"""RobNets' search framework on NAS-Bench-201: a PGD-trained one-shot supernet.

RobNets (Guo et al., CVPR 2020, §3.2) trains one weight-sharing supernet with PGD adversarial
training, then samples candidate architectures, fine-tunes each for a few epochs with PGD from the
inherited weights and evaluates it under white-box PGD. Here the supernet is robntk's NB201
network with the cell as data (:class:`robntk.nb201.network.TinyNetwork` with ``op_ids``): every step samples one path
(one cell, uniformly from the 5⁶ = 15,625 op assignments, the same cell in every position, as in
NB201) and updates only the weights that path uses (single-path one-shot training; unused
weights get exactly zero gradient but, as in most SPOS code, SGD momentum and weight decay still
apply to them).

Choices (documented, configurable in :class:`OneShotConfig`):

* BN uses batch statistics everywhere (training, fine-tuning, attack and evaluation): with one
  path per step the running statistics of a shared BN mix paths, so evaluation with them would
  be meaningless (the common one-shot practice; RobNets' cells use non-affine BN as well).
* PGD L∞ with random start, step ``2.5·eps/steps`` (the benchmark's PGD-20 rule) unless given.
* Candidates: distinct NB201 isomorphism representatives with a connected cell, sampled with the
  seed; each fine-tuned ``finetune_steps`` PGD steps from the trained supernet (fresh momentum),
  then clean and PGD accuracy on a fixed, class-balanced test subset.

Resumability: the supernet checkpoint is written atomically every ``ckpt_every`` steps and
training resumes from it; candidate results are appended to ``candidates.csv`` in chunks (each
write atomic) and existing rows are skipped.
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from robntk.core import paths
from robntk.attacks.iterative import cross_entropy, pgd
from robntk.nb201.searchspace import DISCONNECTED_REPRESENTATIVES, OPS
from robntk.nb201.network import TinyNetwork, op_ids
from robntk.data.datasets import augment, epoch_permutation

EPS_DEFAULT = 8 / 255


@dataclass(frozen=True)
class OneShotConfig:
    """One-shot adversarial supernet search configuration (defaults: the full configuration).

    Attributes:
        C, N: supernet width and cells per stage (NB201: 16, 5).
        image_size: 32 (CIFAR-10) or 16 (2×2 average-pooled CIFAR-10, reduced runs).
        train_limit: training images (class-balanced subset; None = all of the split).
        batch_size: training batch.
        train_steps: supernet optimizer steps.
        lr, momentum, weight_decay: SGD with a cosine schedule from ``lr`` to 0.
        eps: L∞ radius (pixel units). train_pgd_steps: PGD steps when training/fine-tuning.
        train_step_size: PGD step size for training (None: 2.5·eps/steps).
        num_archs: candidates evaluated (RobNets: 1,000).
        finetune_steps, finetune_lr: per-candidate PGD fine-tune from the inherited weights.
        eval_images: class-balanced test images per candidate; eval_batch: evaluation batch.
        eval_pgd_steps: PGD steps of the evaluation attack (benchmark: 20).
        ckpt_every: supernet checkpoint interval (steps).
        seed: everything random (data order, paths, attacks, candidate sample) derives from it.

    Raises:
        ValueError: non-positive sizes, eps outside [0, 1], image_size not 16/32.
    """

    C: int = 16
    N: int = 5
    image_size: int = 32
    train_limit: int | None = None
    batch_size: int = 64
    train_steps: int = 30000
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    eps: float = EPS_DEFAULT
    train_pgd_steps: int = 7
    train_step_size: float | None = 2 / 255
    num_archs: int = 1000
    finetune_steps: int = 50
    finetune_lr: float = 0.01
    eval_images: int = 1000
    eval_batch: int = 250
    eval_pgd_steps: int = 20
    ckpt_every: int = 500
    seed: int = 0

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check the values (see the class docstring)."""
        for name in ("C", "N", "batch_size", "train_steps", "train_pgd_steps", "num_archs", "eval_images",
                     "eval_batch", "eval_pgd_steps", "ckpt_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(self.finetune_steps, int) or self.finetune_steps < 0:
            raise ValueError(f"finetune_steps must be an int >= 0, got {self.finetune_steps!r}")
        if self.image_size not in (16, 32):
            raise ValueError(f"image_size must be 16 or 32, got {self.image_size!r}")
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"eps must be in [0, 1] pixel units, got {self.eps!r}")
        if self.train_limit is not None and self.train_limit < self.batch_size:
            raise ValueError(f"train_limit ({self.train_limit}) must be >= batch_size ({self.batch_size})")
        if self.num_archs > 6466 - len(DISCONNECTED_REPRESENTATIVES):
            raise ValueError(f"num_archs must be <= {6466 - len(DISCONNECTED_REPRESENTATIVES)}, got {self.num_archs}")
        for name in ("lr", "finetune_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OneShotConfig:
        """Inverse of :meth:`to_dict` (unknown keys raise ValueError)."""
        names = {f.name for f in fields(cls)}
        bad = set(d) - names
        if bad:
            raise ValueError(f"unknown OneShotConfig fields {sorted(bad)}")
        return cls(**d)


#: The reduced configuration that runs on 2 CPU cores in well under an hour (stated as reduced):
#: C=8, N=1, 16×16 images, 10k training images, 1,200 steps of PGD-3 training, 1,000 candidates
#: with 1 fine-tune step, evaluated with PGD-3 on 128 test images.
REDUCED = OneShotConfig(C=8, N=1, image_size=16, train_limit=10000, batch_size=64, train_steps=1200, lr=0.1,
                        train_pgd_steps=3, train_step_size=None, num_archs=1000, finetune_steps=1,
                        finetune_lr=0.01, eval_images=128, eval_batch=128, eval_pgd_steps=3, ckpt_every=100)
#: The full configuration (needs a GPU; command in experiments/robnets/README.md).
FULL = OneShotConfig()


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
    return (prepare_images(xtr, cfg.image_size), ytr.astype(np.int32),
            prepare_images(xte[idx], cfg.image_size), yte[idx].astype(np.int32))


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
def make_optimizer(cfg: OneShotConfig, total_steps: int, lr: float | None = None, schedule: bool = True):
    """SGD(momentum) + decoupled-from-nothing weight decay (g ← g + wd·θ), cosine lr to 0."""
    lr = cfg.lr if lr is None else lr
    sched = optax.cosine_decay_schedule(lr, max(total_steps, 1)) if schedule else lr
    return optax.chain(optax.add_decayed_weights(cfg.weight_decay), optax.sgd(sched, cfg.momentum))


def make_train_step(net: TinyNetwork, tx, cfg: OneShotConfig):
    """Jitted PGD-AT step ``(params, opt_state, x, y, ids, key) -> (params, opt_state, loss)``.

    The adversarial batch is crafted and the loss computed on the augmented batch with BN in
    batch-statistics mode; ids (6,) are traced, so one compilation serves every path.
    """
    pad = cfg.image_size // 8
    alpha = cfg.train_step_size

    def f(params, x, ids):
        return net.forward(params, None, x, ids, True)[0]

    @jax.jit
    def step(params, opt_state, x, y, ids, key):
        k_aug, k_atk = jax.random.split(key)
        x = augment(k_aug, x, pad)
        xa = pgd(lambda p, z: f(p, z, ids), params, x, y, cfg.eps, steps=cfg.train_pgd_steps, alpha=alpha, key=k_atk)
        loss, g = jax.value_and_grad(lambda p: cross_entropy(f(p, xa, ids), y))(params)
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def make_eval(net: TinyNetwork, cfg: OneShotConfig):
    """Jitted ``(params, x, y, ids, key) -> (n_correct_clean, n_correct_pgd)`` for one batch."""

    def f(params, x, ids):
        return net.forward(params, None, x, ids, True)[0]

    @jax.jit
    def ev(params, x, y, ids, key):
        clean = jnp.sum(jnp.argmax(f(params, x, ids), -1) == y)
        xa = pgd(lambda p, z: f(p, z, ids), params, x, y, cfg.eps, steps=cfg.eval_pgd_steps, key=key)
        adv = jnp.sum(jnp.argmax(f(params, xa, ids), -1) == y)
        return clean, adv

    return ev


# --------------------------------------------------------------------------- training
def _save_ckpt(path: Path, step: int, params, opt_state) -> None:
    blob = pickle.dumps({"step": step, "params": jax.device_get(params), "opt_state": jax.device_get(opt_state)})

    def write(tmp):
        Path(tmp).write_bytes(blob)

    paths.atomic_save(path, write)


def train_supernet(cfg: OneShotConfig, x: np.ndarray, y: np.ndarray, out_dir: str | Path | None = None,
                   progress: bool = True) -> dict:
    """Train the supernet with single-path PGD adversarial training (resumable).

    Args:
        cfg: configuration. x: float32 (N, S, S, 3) in [0, 1]; y: int32 (N,).
        out_dir: where ``supernet.pkl`` (checkpoint) and ``train_log.jsonl`` go; None: in memory.
        progress: tqdm bar.

    Returns:
        The supernet parameters (pytree of arrays).

    Raises:
        ValueError: images not of ``cfg.image_size``; fewer images than a batch.
    """
    if x.shape[1:] != (cfg.image_size, cfg.image_size, 3) or len(x) != len(y) or len(y) < cfg.batch_size:
        raise ValueError(f"need (N >= {cfg.batch_size}, {cfg.image_size}, {cfg.image_size}, 3) images with N labels, "
                         f"got {x.shape} and {len(y)} labels")
    net = TinyNetwork(C=cfg.C, N=cfg.N, num_classes=10, dataset="cifar10")
    tx = make_optimizer(cfg, cfg.train_steps)
    params = net.init(jax.random.PRNGKey(cfg.seed))["params"]
    opt_state = tx.init(params)
    start = 0
    ckpt = None if out_dir is None else Path(out_dir) / "supernet.pkl"
    if ckpt is not None and ckpt.is_file():
        blob = pickle.loads(ckpt.read_bytes())
        start, params, opt_state = blob["step"], blob["params"], blob["opt_state"]
    step_fn = make_train_step(net, tx, cfg)
    per_epoch = len(y) // cfg.batch_size
    log = []
    it = range(start, cfg.train_steps)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, initial=start, total=cfg.train_steps, desc="supernet PGD-AT")
    for t in it:
        epoch, j = divmod(t, per_epoch)
        idx = epoch_permutation(cfg.seed, epoch, len(y))[j * cfg.batch_size:(j + 1) * cfg.batch_size]
        key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed + 1), t)
        params, opt_state, loss = step_fn(params, opt_state, x[idx], y[idx], sample_path(cfg.seed, t), key)
        if (t + 1) % 20 == 0:
            log.append({"step": t + 1, "loss": float(loss)})
        if ckpt is not None and ((t + 1) % cfg.ckpt_every == 0 or t + 1 == cfg.train_steps):
            _save_ckpt(ckpt, t + 1, params, opt_state)
            with open(Path(out_dir) / "train_log.jsonl", "a") as fh:  # append-only log
                fh.writelines(json.dumps(rec) + "\n" for rec in log)
            log = []
    return params


# --------------------------------------------------------------------------- candidates
COLUMNS = ["nb201_index", "oneshot_clean", "oneshot_pgd"]


def evaluate_candidates(cfg: OneShotConfig, params, indices, space, xtr, ytr, xte, yte,
                        out_csv: str | Path | None = None, chunk: int = 25, progress: bool = True) -> pd.DataFrame:
    """Fine-tune (``cfg.finetune_steps``) and evaluate each candidate with the inherited weights.

    Args:
        cfg: configuration. params: trained supernet parameters.
        indices: NB201 indices of the candidates. space: :class:`robntk.nb201.searchspace.SearchSpace`.
        xtr, ytr: fine-tuning data; xte, yte: the fixed evaluation subset.
        out_csv: results file; rows already there are skipped and new rows are appended every
            ``chunk`` candidates (atomic rewrite).

    Returns:
        DataFrame with :data:`COLUMNS` (accuracies as fractions), one row per candidate.
    """
    net = TinyNetwork(C=cfg.C, N=cfg.N, num_classes=10, dataset="cifar10")
    tx = make_optimizer(cfg, cfg.finetune_steps, lr=cfg.finetune_lr, schedule=False)
    ft = make_train_step(net, tx, cfg)
    ev = make_eval(net, cfg)
    done = pd.DataFrame(columns=COLUMNS)
    if out_csv is not None and Path(out_csv).is_file():
        done = pd.read_csv(out_csv)
    have = set(int(i) for i in done["nb201_index"])
    todo = [int(i) for i in indices if int(i) not in have]
    rows = []

    def flush():
        nonlocal done, rows
        if rows:
            done = pd.concat([done, pd.DataFrame(rows, columns=COLUMNS)], ignore_index=True)
            rows = []
            if out_csv is not None:
                paths.atomic_save(out_csv, lambda tmp: done.to_csv(tmp, index=False))

    it = todo
    if progress:
        from tqdm import tqdm
        it = tqdm(todo, desc="candidates")
    n_eval = len(yte)
    for c, idx in enumerate(it):
        ids = op_ids(space.arch_str(idx))
        p = params
        st = tx.init(p)
        for s in range(cfg.finetune_steps):
            rng = np.random.default_rng([cfg.seed, 13, idx, s])
            b = rng.choice(len(ytr), cfg.batch_size, replace=False)
            p, st, _ = ft(p, st, xtr[b], ytr[b], ids, jax.random.PRNGKey(idx * 1000 + s))
        clean = adv = 0
        for b0 in range(0, n_eval, cfg.eval_batch):
            key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed + 2), b0)  # same attack start for all archs
            cb, ab = ev(p, xte[b0:b0 + cfg.eval_batch], yte[b0:b0 + cfg.eval_batch], ids, key)
            clean, adv = clean + int(cb), adv + int(ab)
        rows.append([idx, clean / n_eval, adv / n_eval])
        if (c + 1) % chunk == 0:
            flush()
    flush()
    order = {int(i): k for k, i in enumerate(indices)}
    done = done[done["nb201_index"].astype(int).isin(order)]
    return done.sort_values("nb201_index").reset_index(drop=True)


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


def run_search(cfg: OneShotConfig, out_dir: str | Path, data_dir=None, progress: bool = True) -> dict[str, Any]:
    """The whole search: train (or resume) the supernet, evaluate the candidates (resumable),
    write ``config.json``, ``candidates.csv`` and ``summary.json`` into ``out_dir``.

    Raises:
        ValueError: ``out_dir`` holds a run with another configuration.
    """
    from robntk.data.benchmark import RobBench

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / "config.json"
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        if old != cfg.to_dict():
            raise ValueError(f"{out} holds a run with another configuration ({cfg_path}); use a new directory")
    else:
        with paths.atomic_write(cfg_path) as fh:
            json.dump(cfg.to_dict(), fh, indent=1)
    bench = RobBench.load(data_dir)
    space = bench.space
    xtr, ytr, xte, yte = load_data(cfg, data_dir)
    params = train_supernet(cfg, xtr, ytr, out, progress)
    cands = sample_candidates(bench, cfg.num_archs, cfg.seed)
    res = evaluate_candidates(cfg, params, cands, space, xtr, ytr, xte, yte, out / "candidates.csv",
                              progress=progress)
    summary = summarize(res, bench)
    summary["pick_arch_str"] = space.arch_str(summary["pick"])
    with paths.atomic_write(out / "summary.json") as fh:
        json.dump(summary, fh, indent=1)
    return summary
