"""RobNets' finding 3 on NAS-RobBench-201: the FSP-matrix loss per cell depth as a robustness score.

RobNets (Guo et al., CVPR 2020, §4.3 and poster): robust networks have a lower feature-flow
(FSP) loss, especially in deeper cells. :func:`fsp_matrix` is the poster's
G_l(x; θ) = (1/(h·w)) Σ_{s,t} F_in[s,t,:] ⊗ F_out[s,t,:] (Yim et al., CVPR 2017, eq. 1) with
F_in the cell input and F_out the cell output; :func:`fsp_losses` gives, per normal cell l,
L_l = (1/N) Σ_x ‖G_l(x; θ) − G_l(x'; θ)‖²_F with x' the PGD example of x.

The study (:func:`fsp_experiment`, configuration :class:`robntk.robnets.config.FSPConfig`):
for each sampled arch, L_l at initialisation (supernet init seed ``seed``, so every arch starts
from the same values of the weights it uses) and after ``finetune_steps`` PGD-AT steps from that
start, BN in batch-statistics mode throughout. The fine-tune is robntk's one training step
(:func:`robntk.train.step.make_step`: attack crafted with batch statistics, no running
statistics, the cell as data so one compilation serves every arch) under its one optimiser
(:func:`robntk.train.optim.sgd`, constant lr, no weight decay). Archs run through the one job
driver (:func:`robntk.jobs.run_job`) into a :class:`robntk.jobs.ResultStore` keyed by
everything that determines a row, so an interrupted study resumes with exactly the rows of an
uninterrupted one; tables are exports (:func:`robntk.core.tables.write_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from robntk.attacks.iterative import pgd
from robntk.core.tables import check_writable, write_json, write_table
from robntk.jobs import ResultStore, config_key, run_job
from robntk.nb201.cell import op_ids
from robntk.nb201.network import TinyNetwork
from robntk.nb201.searchspace import DISCONNECTED_REPRESENTATIVES
from robntk.robnets.config import FSPConfig
from robntk.robnets.findings import tau_table
from robntk.scoring.config import batch_digest
from robntk.train.optim import sgd
from robntk.train.step import StepSpec, initial_state, make_step, run_steps

#: What the store key records about the parameters (changing the init changes every row).
PARAM_DEFINITION = "TinyNetwork(C, N, cifar10).init(PRNGKey(seed)) supernet, pytorch init"


def fsp_matrix(f_in: jax.Array, f_out: jax.Array) -> jax.Array:
    """FSP matrix G = (1/(h·w)) Σ_{s,t} F_in[s,t,:] ⊗ F_out[s,t,:] (Yim et al., CVPR 2017, eq. 1;
    the RobNets poster's G_l(x; θ)).

    Args:
        f_in: (B, h, w, m); f_out: (B, h, w, n) — same spatial size.

    Returns:
        (B, m, n).

    Raises:
        ValueError: batch or spatial shapes differ.
    """
    if f_in.shape[:3] != f_out.shape[:3]:
        raise ValueError(f"FSP needs equal batch and spatial shapes, got {f_in.shape} and {f_out.shape}")
    h, w = f_in.shape[1:3]
    return jnp.einsum("bhwm,bhwn->bmn", f_in, f_out) / (h * w)


def cell_io(net: TinyNetwork, params, stats, x, ids, train: bool) -> list[tuple[jax.Array, jax.Array]]:
    """(input, output) feature maps of every normal cell of ``net`` (3·N cells, in depth order).

    Uses :meth:`robntk.nb201.network.TinyNetwork.forward`'s record: a cell's input is its edge-0
    input, its output is the input of the next block (next cell's edge 0, reduction block's
    ``conv_a`` or ``lastact``). Shapes (B, h, w, width) per stage.
    """
    shapes = net.tap_shapes(x.shape)
    taps = {k: jnp.zeros(s, x.dtype) for k, s in shapes.items()}
    _, rec = net.forward(params, stats, x, ids, train, taps=taps)
    pos = net.cell_positions()
    out = []
    for i, (k, kind, _) in enumerate(pos):
        if kind != "cell":
            continue
        nxt = (
            "lastact/conv_out"
            if i + 1 == len(pos)
            else (f"cells_{k + 1}/e0/in" if pos[i + 1][1] == "cell" else f"cells_{k + 1}/conv_a/in")
        )
        out.append((rec[f"cells_{k}/e0/in"], rec[nxt]))
    return out


def fsp_losses(
    net: TinyNetwork, params, stats, x, y, ids, key, *, eps: float, steps: int, train: bool = True
) -> jax.Array:
    """Per normal cell l: L_l = (1/N) Σ_x ‖G_l(x) − G_l(x')‖²_F, x' = PGD-``steps`` example of x
    (L∞ radius ``eps`` in pixel units, step 2.5·eps/steps, uniform random start from ``key``).

    Args:
        net, params, stats: the network (``stats`` None with ``train``: batch statistics).
        x: (B, H, W, 3) in [0, 1]; y: int (B,). ids: int (6,) op ids.

    Returns:
        (3·N,) float array, cells in depth order.
    """
    f = lambda p, z: net.forward(p, stats, z, ids, train)[0]
    xa = pgd(f, params, x, y, eps, steps=steps, key=key)
    clean = cell_io(net, params, stats, x, ids, train)
    adv = cell_io(net, params, stats, xa, ids, train)
    return jnp.stack(
        [jnp.mean(jnp.sum((fsp_matrix(*c) - fsp_matrix(*a)) ** 2, axis=(1, 2))) for c, a in zip(clean, adv)]
    )


def fsp_columns(N: int) -> list[str]:
    """Columns of an FSP row: ``nb201_index``, ``init_l{k}``, ``ft_l{k}`` for k = 1..3N."""
    L = 3 * N
    return ["nb201_index"] + [f"init_l{k + 1}" for k in range(L)] + [f"ft_l{k + 1}" for k in range(L)]


def store_key(cfg: FSPConfig, x: np.ndarray, y: np.ndarray) -> str:
    """The store key of an FSP study: :func:`robntk.jobs.config_key` of the row configuration
    (:meth:`FSPConfig.row_config`), the image pool's digest and the parameter definition."""
    return config_key({"fsp": cfg.row_config(), "data": batch_digest(x, y), "params": PARAM_DEFINITION})


#: Jitted functions of recent (configuration, image pool) pairs (:func:`_compiled`).
_COMPILED: dict[tuple, tuple] = {}


def _compiled(cfg: FSPConfig, x: np.ndarray, y: np.ndarray) -> tuple:
    """``(net, params0, tx, step, fsp)`` of a study, memoised per row configuration and image pool
    (the last 4), so a resumed or repeated study in the same process compiles nothing again:
    the supernet, its initial parameters, the fine-tune optimiser (:func:`robntk.train.optim.sgd`,
    constant lr, no weight decay), the fine-tune step (:func:`robntk.train.step.make_step`,
    cell as data) and the jitted ``fsp(params, ids) -> (3N,)`` on the FSP batch ``x[:batch_size]``."""
    key = (tuple(sorted(cfg.row_config().items())), batch_digest(x, y))
    if key not in _COMPILED:
        net = TinyNetwork(C=cfg.C, N=cfg.N, num_classes=10, dataset="cifar10")
        params0 = net.init(jax.random.PRNGKey(cfg.seed))["params"]
        tx = sgd(cfg.lr, cfg.momentum, weight_decay=0.0)
        spec = StepSpec(
            method="pgd",
            eps=cfg.eps,
            attack_steps=cfg.train_pgd_steps,
            attack_step_size=None,
            augment=True,
            crop_pad=cfg.image_size // 8,
            attack_bn="train",
            running_stats=False,
            attack_loop="fori",
        )
        xb, yb = jnp.asarray(x[: cfg.batch_size]), jnp.asarray(y[: cfg.batch_size])
        fsp = jax.jit(
            lambda p, ids: fsp_losses(
                net, p, None, xb, yb, ids, jax.random.PRNGKey(cfg.seed + 5), eps=cfg.eps, steps=cfg.attack_steps
            )
        )
        while len(_COMPILED) >= 4:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = (net, params0, tx, make_step(net, tx, spec), fsp)
    return _COMPILED[key]


def fsp_experiment(
    cfg: FSPConfig,
    indices: Sequence[int],
    space,
    x: np.ndarray,
    y: np.ndarray,
    store: str | Path | None = None,
    *,
    progress: bool = True,
    time_budget_s: float | None = None,
    flush_s: float = 30.0,
) -> pd.DataFrame:
    """FSP loss per cell depth for each arch at initialisation and after a short PGD fine-tune
    from the same start (module docstring), resumable through a result store.

    Args:
        cfg: the configuration. indices: NB201 indices. space: :class:`robntk.nb201.searchspace.SearchSpace`.
        x, y: float32 (P, S, S, 3) images in [0, 1] (P = ``cfg.pool_images``) and int labels
            (P,); the FSP batch is ``x[:batch_size]``, fine-tune batch s is
            ``default_rng([seed, 17, s]).choice(P, batch_size, replace=False)`` (the same for
            every arch) with key ``fold_in(PRNGKey(seed + 9), s)``.
        store: result-store directory (None: in memory); archs it holds are skipped.
        progress: tqdm bar. time_budget_s: start no new arch after this many seconds (rerun to
            continue). flush_s: seconds between store flushes.

    Returns:
        DataFrame with :func:`fsp_columns` (one row per stored arch of ``indices``, ascending
        index).

    Raises:
        ValueError: images not (P ≥ batch_size, S, S, 3) with S = ``cfg.image_size``, or labels of
            another length. StoreMismatchError: ``store`` holds another configuration's rows.
    """
    if x.ndim != 4 or x.shape[1:] != (cfg.image_size, cfg.image_size, 3) or len(x) != len(y) or len(y) < cfg.batch_size:
        raise ValueError(
            f"need (P >= {cfg.batch_size}, {cfg.image_size}, {cfg.image_size}, 3) images and P labels, "
            f"got {x.shape} and {len(y)} labels"
        )
    net, params0, tx, step, fsp = _compiled(cfg, x, y)
    data = (jnp.asarray(x), jnp.asarray(y))

    def row(idx: int) -> dict[str, Any]:
        ids = op_ids(space.arch_str(idx))
        out: dict[str, Any] = {"nb201_index": int(idx)}
        out.update({f"init_l{k + 1}": float(v) for k, v in enumerate(fsp(params0, ids))})
        state, _ = run_steps(
            step,
            initial_state(params0, tx),
            data,
            start=0,
            stop=cfg.finetune_steps,
            batch_fn=lambda s: np.random.default_rng([cfg.seed, 17, s]).choice(len(y), cfg.batch_size, replace=False),
            key_fn=lambda s: jax.random.fold_in(jax.random.PRNGKey(cfg.seed + 9), s),
            cell_fn=lambda s: ids,
        )
        out.update({f"ft_l{k + 1}": float(v) for k, v in enumerate(fsp(state["params"], ids))})
        return out

    sink = None
    if store is not None:
        sink = ResultStore.open(
            store,
            store_key(cfg, x, y),
            {"config": cfg.row_config(), "params": PARAM_DEFINITION, "selection": sorted(int(i) for i in indices)},
        )
    computed: dict[int, dict] = {}

    def compute(blk: list[int]) -> list[dict]:
        rows = [row(i) for i in blk]
        computed.update((r["nb201_index"], r) for r in rows)
        return rows

    run_job(indices, compute, sink, time_budget_s=time_budget_s, flush_s=flush_s, desc="FSP", progress=progress)
    have = sink.read().rows if sink is not None else computed
    keep = sorted(int(i) for i in set(int(i) for i in indices) if int(i) in have)
    return pd.DataFrame([have[i] for i in keep], columns=fsp_columns(cfg.N))


def fsp_taus(df: pd.DataFrame, bench, dataset: str = "cifar10", n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """τ (with CI) of the score −L_l (lower FSP loss = more robust, RobNets' reading) vs the
    benchmark's PGD-8 and clean accuracy, per cell depth l, at init and after fine-tuning."""
    t = df.copy()
    for m in ("val_pgd_8.0_acc", "val_acc"):
        t[m] = bench.values(t["nb201_index"].to_numpy(), dataset, m)
    cols = [c for c in df.columns if c.startswith(("init_l", "ft_l"))]
    for c in cols:
        t[f"neg_{c}"] = -t[c]
    tab = tau_table(t, [f"neg_{c}" for c in cols], ["val_pgd_8.0_acc", "val_acc"], n_boot=n_boot, seed=seed)
    tab["stage"] = tab["score"].str.extract(r"neg_(init|ft)_")[0]
    tab["cell"] = tab["score"].str.extract(r"_l(\d+)$")[0].astype(int)
    return tab


def sample_fsp_archs(bench, n: int, seed: int = 0) -> list[int]:
    """``n`` distinct connected representatives, uniformly at random (sorted; deterministic).

    Raises:
        ValueError: n outside 1..6,461 (the connected representatives).
    """
    reps = np.array(sorted(set(int(r) for r in np.unique(bench.isomorph)) - set(DISCONNECTED_REPRESENTATIVES)))
    if not 1 <= n <= len(reps):
        raise ValueError(f"n must be in 1..{len(reps)} (connected representatives), got {n}")
    rng = np.random.default_rng([seed, 23])
    return sorted(int(i) for i in rng.choice(reps, size=n, replace=False))


def load_fsp_data(cfg: FSPConfig, data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """The image pool: ``cfg.pool_images`` class-balanced CIFAR-10 training images
    (:func:`robntk.data.datasets.balanced_indices` with ``cfg.seed``), float32 in [0, 1] at
    ``cfg.image_size`` (:func:`robntk.robnets.oneshot.prepare_images`), int32 labels.

    Raises:
        ValueError: more images asked than the split has. FileNotFoundError: data missing.
    """
    from robntk.data.datasets import balanced_indices, load_dataset
    from robntk.robnets.oneshot import prepare_images

    x, y = load_dataset("cifar10", "train", data_dir)
    i = balanced_indices(y, cfg.pool_images, seed=cfg.seed)
    return prepare_images(x[i], cfg.image_size), y[i].astype(np.int32)


def run_fsp(
    cfg: FSPConfig, out_dir: str | Path, data_dir=None, progress: bool = True, time_budget_s: float | None = None
) -> dict[str, Any]:
    """The whole study (``robntk robnets fsp``): sample ``cfg.num_archs`` archs, compute their
    rows into ``out_dir/fsp.store`` (resumable), export ``fsp.csv`` (+ sidecar), the τ table
    ``fsp_tau.csv`` and ``fsp_config.json``.

    Returns:
        ``{'rows': fsp DataFrame, 'taus': τ DataFrame, 'n_remaining': archs left for a rerun}``.

    Raises:
        PermissionError: ``out_dir`` not writable (before any work). StoreMismatchError: the
            store holds rows of another configuration.
    """
    from robntk.data.benchmark import RobBench

    out = check_writable(Path(out_dir), "--out")
    bench = RobBench.load(data_dir)
    idx = sample_fsp_archs(bench, cfg.num_archs, cfg.seed)
    x, y = load_fsp_data(cfg, data_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(cfg.to_dict(), out / "fsp_config.json")
    df = fsp_experiment(cfg, idx, bench.space, x, y, out / "fsp.store", progress=progress, time_budget_s=time_budget_s)
    meta = {
        "config": cfg.to_dict(),
        "store": str(out / "fsp.store"),
        "store_key": store_key(cfg, x, y),
        "n_rows": len(df),
        "n_selected": len(idx),
    }
    write_table(df, out / "fsp.csv", meta)
    tab = fsp_taus(df, bench, n_boot=cfg.n_boot) if len(df) > 1 else pd.DataFrame()
    if len(tab):
        write_table(tab, out / "fsp_tau.csv")
    return {"rows": df, "taus": tab, "n_remaining": len(idx) - len(df)}
