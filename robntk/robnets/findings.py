"""RobNets' three findings tested on NAS-RobBench-201.

RobNets (Guo et al., CVPR 2020, §4) reports, from ~1,000 one-shot-sampled DARTS-style cells:

1. *Densely connected patterns improve robustness.* Density (paper §4.2) is
   D = Σ_{(i,j),k} α_(i,j)^k / |E| — the share of switched-on (edge, op) slots. In NB201 every
   edge holds exactly one op, so two transfers are stated and both computed:
   ``density_connected`` = share of the 6 edges that are not ``none`` (connected edges), and
   ``density_param`` = share of edges with a parametrised op (1×1 or 3×3 conv), the NB201
   analogue of RobNets' "sep-conv on" slots.
2. *Under a small budget, convolutions on the direct edges help more.* NB201 has one direct
   edge from the cell input to the cell output, 0→3 (edge 3 in :data:`robntk.nb201.searchspace.EDGES`
   order). :func:`direct_edge_pairs` compares architectures of *equal parameter count* that
   differ only in where one convolution sits: arch A has a conv on the direct edge and op ``o``
   on edge e; arch B swaps the two ops (same op multiset, so the same parameter count).
   Because "direct edge" could also be read as "edge between consecutive nodes", the same test
   is available for any edge set (``direct=(0, 2, 5)`` = the chain 0→1→2→3).
3. *The FSP-matrix loss indicates robustness* (deeper cells: robust networks have lower loss).
   :func:`fsp_matrix` is the poster's G_l(x; θ) = (1/(h·w)) Σ_{s,t} F_in[s,t,:] ⊗ F_out[s,t,:]
   with F_in the cell input and F_out the cell output; :func:`fsp_losses` gives, per normal cell
   l, L_l = (1/N) Σ_x ‖G_l(x; θ) − G_l(x'; θ)‖²_F with x' the PGD example of x.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from robntk.core import paths
from robntk.attacks.iterative import cross_entropy, pgd
from robntk.analysis.correlation import bootstrap_ci, kendall_tau
from robntk.nb201.searchspace import (
    DISCONNECTED_REPRESENTATIVES,
    EDGES,
    OPS,
    is_connected,
    num_cell_params,
    parse_arch_str,
)
from robntk.nb201.network import TinyNetwork, op_ids

CONV = ("nor_conv_1x1", "nor_conv_3x3")
DIRECT_EDGE = 3  # 0 → 3
METRICS = ("val_acc", "val_fgsm_8.0_acc", "val_pgd_8.0_acc")
#: Colour-blind-safe palette (Okabe–Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")


# --------------------------------------------------------------------------- finding 1: density
def nb201_density(arch, kind: str = "connected") -> float:
    """Density of an NB201 cell: share of the 6 edges that are not ``none`` (``'connected'``)
    or that hold a conv (``'param'``).

    Raises:
        ValueError: unknown kind; malformed arch.
    """
    ops = parse_arch_str(arch) if isinstance(arch, str) else tuple(arch)
    if kind == "connected":
        return sum(op != "none" for op in ops) / len(EDGES)
    if kind == "param":
        return sum(op in CONV for op in ops) / len(EDGES)
    raise ValueError(f"unknown density kind {kind!r}; allowed: connected, param")


def density_table(bench, datasets: Sequence[str] = ("cifar10",)) -> pd.DataFrame:
    """One row per isomorphism representative (6,466): arch_str, both densities, the cell's
    parameter count at C=16, and the benchmark's clean/FGSM-8/PGD-8 accuracies."""
    space = bench.space
    reps = sorted(int(r) for r in np.unique(bench.isomorph))
    rows = []
    for r in reps:
        a = space.arch_str(r)
        rows.append({"nb201_index": r, "arch_str": a, "density_connected": nb201_density(a, "connected"),
                     "density_param": nb201_density(a, "param"), "cell_params": num_cell_params(a, 16),
                     "connected": is_connected(a)})
    df = pd.DataFrame(rows)
    for ds in datasets:
        for m in METRICS:
            df[f"{ds}_{m}"] = bench.values(df["nb201_index"].to_numpy(), ds, m)
    return df


def tau_table(df: pd.DataFrame, scores: Sequence[str], targets: Sequence[str], n_boot: int = 1000,
              seed: int = 0) -> pd.DataFrame:
    """Kendall τ-b with a 95% percentile-bootstrap CI of every score column vs every target column."""
    rows = []
    for s in scores:
        for t in targets:
            lo, hi = bootstrap_ci(df[s].to_numpy(float), df[t].to_numpy(float), n_boot=n_boot, seed=seed)
            rows.append({"score": s, "target": t, "n": int(df[[s, t]].dropna().shape[0]),
                         "kendall_tau": kendall_tau(df[s].to_numpy(float), df[t].to_numpy(float)),
                         "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def density_figure(df: pd.DataFrame, path: str | Path, dataset: str = "cifar10") -> Path:
    """Mean ± sd of clean and PGD-8 accuracy per density level, both density definitions."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, kind, title in zip(axes, ("density_connected", "density_param"),
                               ("connected edges (not none)", "parametrised edges (conv)")):
        for (m, label), color, dx in zip(((f"{dataset}_val_acc", "clean"), (f"{dataset}_val_pgd_8.0_acc", "PGD-8")),
                                          PALETTE, (-0.008, 0.008)):
            g = df.groupby(kind)[m].agg(["mean", "std", "count"]).reset_index()
            ax.errorbar(g[kind] + dx, g["mean"] * 100, yerr=g["std"] * 100, marker="o", capsize=3, color=color,
                        label=label)
        ax.set_xlabel(f"density: share of {title}")
        ax.set_title(f"NAS-RobBench-201 {dataset}, 6,466 cells", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%) — mean ± sd per level")
    axes[0].legend()
    out = Path(path)
    paths.atomic_save(out, lambda tmp: fig.savefig(tmp, dpi=130))
    return out


# --------------------------------------------------------------------------- finding 2: direct edges
def direct_edge_pairs(bench, direct: Sequence[int] = (DIRECT_EDGE,), dataset: str = "cifar10",
                      metrics: Sequence[str] = ("val_acc", "val_pgd_8.0_acc")) -> pd.DataFrame:
    """All equal-parameter pairs that differ only in where one conv sits.

    For every cell A (all 15,625) with a conv on a ``direct`` edge d and a non-conv op on a
    non-direct edge e, B = A with the ops of d and e swapped. Pairs are reduced to distinct
    (representative A, representative B) and kept only when both cells are connected; the
    first cells found for a pair are kept as ``a_cell``/``b_cell`` (equal ``cell_params``). The
    benchmark values are those of the representatives (an isomorphism class shares one value;
    a conv on a dead edge counts in ``cell_params`` but not in the function). ``budget``
    = number of conv edges (the same in A and B); ``delta_<metric>`` = metric(A) − metric(B)
    (positive: the conv on the direct edge is better).

    Raises:
        ValueError: direct edges outside 0..5 or covering all edges.
    """
    direct = tuple(sorted(set(int(d) for d in direct)))
    if not direct or any(d not in range(len(EDGES)) for d in direct) or len(direct) == len(EDGES):
        raise ValueError(f"direct must be a proper, non-empty subset of edges 0..5, got {direct!r}")
    space = bench.space
    other = [e for e in range(len(EDGES)) if e not in direct]
    seen = set()
    rows = []
    for ops in itertools.product(OPS, repeat=len(EDGES)):
        for d in direct:
            if ops[d] not in CONV:
                continue
            for e in other:
                if ops[e] in CONV:
                    continue
                b = list(ops)
                b[d], b[e] = ops[e], ops[d]
                if not (is_connected(ops) and is_connected(b)):
                    continue
                ia, ib = space.index_of(ops), space.index_of(b)
                ra, rb = bench.representative(ia), bench.representative(ib)
                if ra == rb or (ra, rb) in seen:
                    continue
                seen.add((ra, rb))
                rows.append({"a": ra, "b": rb, "a_cell": ia, "b_cell": ib, "budget": sum(o in CONV for o in ops), "conv": ops[d],
                             "moved_to_edge": e, "other_op": ops[e], "cell_params": num_cell_params(ops, 16)})
    df = pd.DataFrame(rows)
    for m in metrics:
        df[f"delta_{m}"] = bench.values(df["a"].to_numpy(), dataset, m) - bench.values(df["b"].to_numpy(), dataset, m)
    return df


def summarize_pairs(df: pd.DataFrame, metric: str = "val_pgd_8.0_acc", n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per budget (conv edges): pairs, mean Δ (percentage points) with a bootstrap 95% CI, and the
    share of pairs where the direct placement wins (Δ > 0)."""
    rng = np.random.default_rng(seed)
    out = []
    for budget, g in df.groupby("budget"):
        d = g[f"delta_{metric}"].dropna().to_numpy() * 100
        boot = rng.choice(d, size=(n_boot, len(d)), replace=True).mean(axis=1) if len(d) > 1 else np.array([np.nan])
        out.append({"budget": int(budget), "pairs": len(d), "mean_delta_pp": float(d.mean()),
                    "ci_low": float(np.quantile(boot, 0.025)), "ci_high": float(np.quantile(boot, 0.975)),
                    "direct_wins": float(np.mean(d > 0)), "median_delta_pp": float(np.median(d))})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- finding 3: FSP
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

    Uses :meth:`robntk.nb201.network.TinyNetwork.forward`'s record: a cell's input is its edge-0 input, its output is
    the input of the next block (next cell's edge 0, reduction block's ``conv_a`` or ``lastact``).
    """
    shapes = net.tap_shapes(x.shape)
    taps = {k: jnp.zeros(s, x.dtype) for k, s in shapes.items()}
    _, rec = net.forward(params, stats, x, ids, train, taps=taps)
    pos = net.cell_positions()
    out = []
    for i, (k, kind, _) in enumerate(pos):
        if kind != "cell":
            continue
        nxt = "lastact/conv_out" if i + 1 == len(pos) else (
            f"cells_{k + 1}/e0/in" if pos[i + 1][1] == "cell" else f"cells_{k + 1}/conv_a/in")
        out.append((rec[f"cells_{k}/e0/in"], rec[nxt]))
    return out


def fsp_losses(net: TinyNetwork, params, stats, x, y, ids, key, eps: float = 8 / 255, steps: int = 7,
               train: bool = True) -> jax.Array:
    """Per normal cell l: L_l = (1/N) Σ_x ‖G_l(x) − G_l(x')‖²_F, x' = PGD-``steps`` example of x.

    Returns:
        (3·N,) float array, cells in depth order.
    """
    f = lambda p, z: net.forward(p, stats, z, ids, train)[0]
    xa = pgd(f, params, x, y, eps, steps=steps, key=key)
    clean = cell_io(net, params, stats, x, ids, train)
    adv = cell_io(net, params, stats, xa, ids, train)
    return jnp.stack([jnp.mean(jnp.sum((fsp_matrix(*c) - fsp_matrix(*a)) ** 2, axis=(1, 2)))
                      for c, a in zip(clean, adv)])


def fsp_experiment(indices: Sequence[int], space, x, y, out_csv: str | Path, *, C: int = 8, N: int = 2,
                   finetune_steps: int = 10, batch_size: int = 64, lr: float = 0.05, eps: float = 8 / 255,
                   attack_steps: int = 5, train_pgd_steps: int = 3, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """FSP loss per cell depth for each arch at initialisation and after a short PGD fine-tune
    from the same start (supernet init seed ``seed``, so every arch starts from the same values
    of the weights it uses). BN uses batch statistics throughout. Resumable: one row per arch,
    ``out_csv`` rewritten atomically after each arch; rows present are skipped.

    Args:
        indices: NB201 indices. space: SearchSpace. x, y: float32 images in [0, 1] / int labels
            (the FSP batch is ``x[:batch_size]``; fine-tune batches are drawn from all of x).

    Returns:
        DataFrame: nb201_index, ``init_l{k}`` and ``ft_l{k}`` for k = 1..3N.
    """
    import optax

    from robntk.data.datasets import augment

    net = TinyNetwork(C=C, N=N, num_classes=10, dataset="cifar10")
    params0 = net.init(jax.random.PRNGKey(seed))["params"]
    tx = optax.sgd(lr, 0.9)
    xb, yb = jnp.asarray(x[:batch_size]), jnp.asarray(y[:batch_size])
    fsp = jax.jit(lambda p, ids: fsp_losses(net, p, None, xb, yb, ids, jax.random.PRNGKey(seed + 5), eps, attack_steps))

    @jax.jit
    def step(p, st, xs, ys, ids, key):
        f = lambda q, z: net.forward(q, None, z, ids, True)[0]
        k1, k2 = jax.random.split(key)
        xs = augment(k1, xs, xs.shape[1] // 8)
        xa = pgd(f, p, xs, ys, eps, steps=train_pgd_steps, key=k2)
        g = jax.grad(lambda q: cross_entropy(f(q, xa), ys))(p)
        u, st = tx.update(g, st, p)
        return optax.apply_updates(p, u), st

    out_csv = Path(out_csv)
    done = pd.read_csv(out_csv) if out_csv.is_file() else pd.DataFrame()
    have = set(done["nb201_index"].astype(int)) if len(done) else set()
    L = 3 * N
    it = [int(i) for i in indices if int(i) not in have]
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="FSP")
    for idx in it:
        ids = op_ids(space.arch_str(idx))
        row = {"nb201_index": idx}
        row.update({f"init_l{k + 1}": float(v) for k, v in enumerate(fsp(params0, ids))})
        p, st = params0, tx.init(params0)
        for s in range(finetune_steps):
            b = np.random.default_rng([seed, 17, s]).choice(len(y), batch_size, replace=False)  # same batches for all
            p, st = step(p, st, x[b], y[b], ids, jax.random.fold_in(jax.random.PRNGKey(seed + 9), s))
        row.update({f"ft_l{k + 1}": float(v) for k, v in enumerate(fsp(p, ids))})
        done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
        paths.atomic_save(out_csv, lambda tmp, d=done: d.to_csv(tmp, index=False))
    keep = done["nb201_index"].astype(int).isin(set(int(i) for i in indices))
    cols = ["nb201_index"] + [f"init_l{k + 1}" for k in range(L)] + [f"ft_l{k + 1}" for k in range(L)]
    return done[keep][cols].sort_values("nb201_index").reset_index(drop=True)


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
    """``n`` distinct connected representatives, uniformly at random (sorted; deterministic)."""
    reps = np.array(sorted(set(int(r) for r in np.unique(bench.isomorph)) - set(DISCONNECTED_REPRESENTATIVES)))
    rng = np.random.default_rng([seed, 23])
    return sorted(int(i) for i in rng.choice(reps, size=n, replace=False))


def save_json(obj: Any, path: str | Path) -> None:
    """Atomic JSON write (NaN → null)."""
    def clean(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(u) for k, u in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(u) for u in v]
        return v

    with paths.atomic_write(path) as fh:
        json.dump(clean(obj), fh, indent=1)
