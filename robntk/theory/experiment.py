"""Numerical check of the λ_min lower bounds: grid, runner, summary, figures.

For every architecture × seed × ρ × β × width the runner records, for both mixed kernels
(K_all(β) on (X, X̃) and K̃_all(β) on (X̃, X̃̃), paper Eq. 4–5):

* ``lam_emp``: λ_min of the empirical kernel of one network draw of width m (float64; core
  Jacobian contraction of :mod:`robntk.ntk.empirical` where it fits in ``core_max_floats``, else the exact
  structured FCN formula of :func:`robntk.theory.networks.fcn_ntk_structured`; column
  ``kernel_impl``);
* ``lam_ana``: λ_min of the infinite-width kernel at the same points;
* the bounds of :mod:`robntk.theory.bounds`: ``bound`` (headline: Taylor/"series" coefficients,
  separation form — FCN; residual-path coefficients for the CNN), ``bound_gershgorin``,
  ``bound_eig``, ``bound_path``, ``bound_apriori`` (FCN, worst case over every ρ-adversary);
* ``holds_ana`` / ``holds_emp`` (bound ≤ λ_min, with a 1e-9 relative rounding allowance) and
  the ratios λ_min / bound.

Adversarial points: spherical-cap PGD (:mod:`robntk.theory.adversary`) against a reference
network of width ``attack_width`` with the row's seed, then frozen, so every width (and the
infinite-width kernel) is evaluated at the *same* X̃, X̃̃; ``attack_width=None`` attacks each
width's own network instead.

Outputs (atomically, under ``out_dir``; tables and JSON through :mod:`robntk.core.tables`):
``bounds.csv``, ``config.json`` (configuration, environment, timing, summary), ``summary.md``, PNGs.

The grid itself (defaults, overrides, validation, architectures) is :mod:`robntk.theory.grid`.
"""

from __future__ import annotations

import functools
import platform
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from robntk.core import paths
from robntk.core.tables import write_json, write_table
from robntk.ntk import empirical as ntk
from robntk.ntk import spectra
from robntk.ntk.kernels import KernelFamily, check_beta
from robntk.theory.adversary import check_rho, perturb_sphere
from robntk.theory.arch import ResCNN, ResFCN, check_width
from robntk.theory.bounds import apriori_bound, bound_coefficients, lambda_min_bound, pair_grams
from robntk.theory.data import separation, sphere_points
from robntk.theory.grid import DEFAULT_CONFIG, QUICK_CONFIG, build_archs, merge_config, validate_config
from robntk.theory.infinite import analytic_family
from robntk.theory.networks import arch_arrays, cnn_forward, fcn_forward, fcn_ntk_features, init_params, structured_gram

HOLD_RTOL = 1e-9
KERNEL_NAMES = ("K_all", "K_tilde_all")


# ---------------------------------------------------------------------------------------------
# compiled pieces (architecture as data: one compilation per family/depth/width/shape)
# ---------------------------------------------------------------------------------------------


def _forward(kind):
    return cnn_forward if kind == "cnn" else fcn_forward


@functools.partial(jax.jit, static_argnames=("kind", "steps"))
def _attack(params, arrays, x, y, rho, key, kind, steps):
    f = lambda p, z: _forward(kind)(p, z, arrays)
    return perturb_sphere(f, params, x, y, rho, key=key, steps=steps)


@functools.partial(jax.jit, static_argnames=("kind", "impl", "n", "pairs"))
def _empirical_grams(params, arrays, xs, kind, impl, n, pairs):
    """Grams K(batch a, batch b) for each (a, b) in ``pairs`` of the stacked batches ``xs``
    (n points each): core Jacobian contraction or structured FCN features. → (len(pairs), n, n)."""
    if impl == "structured":
        feats = fcn_ntk_features(params, xs, arrays)
        gram = lambda A, B: structured_gram(A, B, arrays)
    else:
        f = lambda p, z: _forward(kind)(p, z, arrays)
        feats = ntk.jacobian(f, params, xs, output_mode="sum", independent_rows=True)
        gram = lambda A, B: ntk.gram(A, B, "sum")
    sl = lambda t, i: jax.tree_util.tree_map(lambda v: v[i * n : (i + 1) * n], t)
    return jnp.stack([gram(sl(feats, a), sl(feats, b)) for a, b in pairs])


def n_params(arch, width: int) -> int:
    """Number of trainable parameters P of ``arch`` at width m (all layers trained)."""
    if isinstance(arch, ResCNN):
        fan = [arch.filter_sizes[0] * arch.in_channels] + [k * width for k in arch.filter_sizes[1:]]
    else:
        fan = [arch.in_dim] + [width] * (arch.depth - 1)
    return int(sum(f * width for f in fan) + width)


def empirical_families(arch, params, width, x, adv_points, *, core_max_floats=1 << 24, impl=None):
    """Empirical :class:`~robntk.ntk.kernels.KernelFamily` for each (X̃, X̃̃) of ``adv_points``.

    All batches (X, then X̃, X̃̃ per ρ) are stacked into one Jacobian / feature call.

    Args:
        arch, params, width: the network (params from :func:`robntk.theory.networks.init_params`).
        x: (N, ...) clean points. adv_points: list of (x_adv, x_adv2).
        core_max_floats: use the core Jacobian contraction when rows × P ≤ this, else (FCN)
            the structured exact formula.
        impl: force ``'core'`` or ``'structured'`` (FCN only).

    Returns:
        (list of KernelFamily with float64 NumPy kernels, impl used).
    """
    kind = arch.kind
    n = len(x)
    batches = [x] + [z for pair in adv_points for z in pair]
    rows = len(batches) * n
    if impl is None:
        impl = "core" if (kind == "cnn" or rows * n_params(arch, width) <= core_max_floats) else "structured"
    if impl == "structured" and kind != "fcn":
        raise ValueError("the structured empirical NTK exists for ResFCN only")
    arrays = arch_arrays(arch, width, params["v"].dtype)
    xs = jnp.concatenate([jnp.asarray(b) for b in batches])
    pairs = [(0, 0)]
    for i in range(len(adv_points)):
        ia, iaa = 1 + 2 * i, 2 + 2 * i
        pairs += [(ia, ia), (0, ia), (iaa, iaa), (ia, iaa)]
    G = np.asarray(_empirical_grams(params, arrays, xs, kind, impl, n, tuple(pairs)))
    fams = []
    for i, (xa, xaa) in enumerate(adv_points):
        fams.append(KernelFamily(G[0], *G[1 + 4 * i : 5 + 4 * i], xa, xaa))
    return fams, impl


def _lam(K) -> tuple[float, bool]:
    s = spectra.spectrum(K, np.float64)
    return s.lambda_min, s.degenerate


def _arch_row(arch, pattern):
    is_cnn = isinstance(arch, ResCNN)
    return {
        "family": arch.kind,
        "arch": arch.name,
        "activation": arch.activations[0] if len(set(arch.activations)) == 1 else "mixed",
        "activations": "|".join(arch.activations),
        "depth": arch.depth,
        "skip_pattern": pattern,
        "skips": "".join(map(str, arch.skips)) or "-",
        "filter_size": arch.filter_sizes[0] if is_cnn else 0,
    }


def _points(cfg, seed, params_for_attack, arrays, kind):
    """Clean data and per-ρ frozen adversarial points (NumPy float64)."""
    sub = cfg[kind]
    shape = (sub["length"], sub["in_channels"]) if kind == "cnn" else (sub["in_dim"],)
    X, y = sphere_points(sub["n_points"], shape, seed=seed)
    pts = []
    for i, rho in enumerate(cfg["rhos"]):
        key = jax.random.PRNGKey(10_000 * seed + 17 * i + 1)
        xa, xaa = _attack(
            params_for_attack,
            arrays,
            jnp.asarray(X),
            jnp.asarray(y),
            jnp.asarray(rho, jnp.float64),
            key,
            kind,
            cfg["attack_steps"],
        )
        pts.append((np.asarray(xa), np.asarray(xaa)))
    return X, y, pts


def run_experiment(
    config: dict | None = None,
    out_dir: str | Path | None = None,
    *,
    quick: bool = False,
    plots: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Run the bound check over the grid and (optionally) write results.

    Args:
        config: overrides merged into :data:`QUICK_CONFIG` (``quick``) or :data:`DEFAULT_CONFIG`.
        out_dir: where to write ``bounds.csv``, ``config.json``, ``summary.md`` and figures
            (atomically); ``None`` writes nothing.
        quick: start from :data:`QUICK_CONFIG`.
        plots: write the PNG figures.
        progress: print one line per architecture.

    Returns:
        The results table (one row per arch × seed × ρ × β × width × kernel).

    Raises:
        ValueError: bad configuration values.
    """
    cfg = validate_config(merge_config(QUICK_CONFIG if quick else DEFAULT_CONFIG, config))
    t0 = time.time()
    rows = []
    with jax.enable_x64(True):
        for arch, pattern in build_archs(cfg):
            ta = time.time()
            kind = arch.kind
            widths = cfg[kind]["widths"]
            coeffs = {"path": bound_coefficients(arch, "path", cfg["order"])}
            if kind == "fcn":
                coeffs["series"] = bound_coefficients(arch, "series", cfg["order"])
            head = "series" if kind == "fcn" else "path"
            for seed in cfg["seeds"]:
                shared = None
                if cfg["attack_width"] is not None:
                    aw = cfg["attack_width"]
                    pa = init_params(arch, 7919 * seed + 1, aw, jnp.float64)
                    shared = _points(cfg, seed, pa, arch_arrays(arch, aw, jnp.float64), kind)
                for width in widths:
                    params = init_params(arch, 7919 * seed + width, width, jnp.float64)
                    arrays = arch_arrays(arch, width, jnp.float64)
                    X, y, pts = shared if shared is not None else _points(cfg, seed, params, arrays, kind)
                    emp, impl = empirical_families(arch, params, width, X, pts, core_max_floats=cfg["core_max_floats"])
                    for rho, (xa, xaa), fam_e in zip(cfg["rhos"], pts, emp):
                        fam_a = analytic_family(arch, X, xa, xaa)
                        sets = {"K_all": (X, xa), "K_tilde_all": (xa, xaa)}
                        grams = {k: pair_grams(arch, *v, order=cfg["order"]) for k, v in sets.items()}
                        for beta in cfg["betas"]:
                            for kname in KERNEL_NAMES:
                                Ke = fam_e.k_all(beta) if kname == "K_all" else fam_e.k_tilde_all(beta)
                                Ka = fam_a.k_all(beta) if kname == "K_all" else fam_a.k_tilde_all(beta)
                                lam_e, deg_e = _lam(Ke)
                                lam_a, deg_a = _lam(Ka)
                                Xa_, Xb_ = sets[kname]
                                b = lambda co, me: lambda_min_bound(
                                    arch, beta=beta, method=me, coeffs=coeffs[co], grams=grams[kname]
                                )
                                bh = b(head, "separation")
                                row = dict(
                                    _arch_row(arch, pattern),
                                    width=width,
                                    seed=seed,
                                    rho=rho,
                                    beta=beta,
                                    kernel=kname,
                                    kernel_impl=impl,
                                    n_points=len(X),
                                    delta_clean=separation(X),
                                    delta_a=separation(Xa_),
                                    delta_b=separation(Xb_),
                                    delta_ab=separation(Xa_, Xb_),
                                    lam_emp=lam_e,
                                    lam_emp_degenerate=deg_e,
                                    lam_ana=lam_a,
                                    lam_ana_degenerate=deg_a,
                                    bound=bh.value,
                                    bound_best_r=bh.best_r,
                                    bound_gershgorin=b(head, "gershgorin").value,
                                    bound_eig=b(head, "eig").value,
                                    bound_path=b("path", "separation").value,
                                    bound_apriori=(
                                        apriori_bound(
                                            arch,
                                            separation(X),
                                            len(X),
                                            rho,
                                            beta,
                                            kernel=kname,
                                            coeffs=coeffs["series"],
                                        ).value
                                        if kind == "fcn"
                                        else np.nan
                                    ),
                                    rel_err_emp=float(np.linalg.norm(Ke - Ka) / np.linalg.norm(Ka)),
                                )
                                rows.append(row)
            if progress:
                print(f"[bound] {arch.name:40s} {time.time() - ta:6.1f}s", flush=True)
    df = _finish(pd.DataFrame(rows))
    elapsed = time.time() - t0
    if out_dir is not None:
        write_results(df, cfg, out_dir, elapsed=elapsed, plots=plots)
    return df


def holds(bound, lam) -> np.ndarray:
    """bound ≤ λ_min up to a relative rounding allowance of 1e-9 (NaN bounds count as holding)."""
    bound = np.asarray(bound, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64)
    return np.isnan(bound) | (bound <= lam + HOLD_RTOL * np.maximum(np.abs(lam), 1e-300))


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    for col in ("bound", "bound_gershgorin", "bound_eig", "bound_path", "bound_apriori"):
        suffix = col[len("bound") :]
        df[f"holds_ana{suffix}"] = holds(df[col], df["lam_ana"])
        df[f"holds_emp{suffix}"] = holds(df[col], df["lam_emp"])
    with np.errstate(divide="ignore", invalid="ignore"):
        df["ratio_ana"] = np.where(df["bound"] > 0, df["lam_ana"] / df["bound"], np.inf)
        df["ratio_emp"] = np.where(df["bound"] > 0, df["lam_emp"] / df["bound"], np.inf)
        df["ratio_ana_eig"] = np.where(df["bound_eig"] > 0, df["lam_ana"] / df["bound_eig"], np.inf)
    return df


def summarise(df: pd.DataFrame) -> dict[str, Any]:
    """Summary of a results table.

    Returns:
        ``{'all' | 'fcn' | 'cnn': {rows, held_analytic[_variant], held_empirical[_variant],
        vacuous, ratio_ana_median/min/max, ratio_emp_*, ratio_ana_eig_*}, 'tightest_row': ...,
        'median_rel_err_emp': {family/m: ‖K_m − Θ‖_F/‖Θ‖_F}, 'median_rel_bias_lam_emp':
        {family/m: median (λ_emp − λ_ana)/λ_ana}, 'apriori_vacuous_fraction_by_rho': ...}``.
        Ratios are λ_min / bound over non-vacuous rows (bound > 0).
    """

    def stats(sub):
        nz = sub[sub["bound"] > 0]
        out = {
            "rows": int(len(sub)),
            "held_analytic": int(sub["holds_ana"].sum()),
            "held_empirical": int(sub["holds_emp"].sum()),
            "vacuous": int((sub["bound"] <= 0).sum()),
        }
        for col in ("bound_gershgorin", "bound_eig", "bound_path", "bound_apriori"):
            s = col[len("bound") :]
            out[f"held_analytic{s}"] = int(sub[f"holds_ana{s}"].sum())
            out[f"held_empirical{s}"] = int(sub[f"holds_emp{s}"].sum())
        if len(nz):
            r = nz["ratio_ana"]
            re = nz["ratio_emp"]
            out.update(
                ratio_ana_median=float(r.median()),
                ratio_ana_min=float(r.min()),
                ratio_ana_max=float(r.max()),
                ratio_emp_median=float(re.median()),
                ratio_emp_min=float(re.min()),
                ratio_emp_max=float(re.max()),
            )
            ze = nz[nz["bound_eig"] > 0]["ratio_ana_eig"]
            if len(ze):
                out.update(ratio_ana_eig_median=float(ze.median()), ratio_ana_eig_max=float(ze.max()))
        return out

    res = {"all": stats(df)}
    for fam, sub in df.groupby("family"):
        res[fam] = stats(sub)
    worst = df[df["bound"] > 0].sort_values("ratio_ana").head(1)
    if len(worst):
        w = worst.iloc[0]
        res["tightest_row"] = {
            k: (v.item() if hasattr(v, "item") else v)
            for k, v in w[["arch", "width", "seed", "rho", "beta", "kernel", "lam_ana", "bound", "ratio_ana"]].items()
        }
    res["median_rel_err_emp"] = {
        f"{f}/m={int(w)}": float(v) for (f, w), v in df.groupby(["family", "width"])["rel_err_emp"].median().items()
    }
    res["median_rel_bias_lam_emp"] = {
        f"{f}/m={int(w)}": float(v)
        for (f, w), v in ((df["lam_emp"] - df["lam_ana"]) / df["lam_ana"])
        .groupby([df["family"], df["width"]])
        .median()
        .items()
    }
    fc = df[df["family"] == "fcn"]
    if len(fc):
        res["apriori_vacuous_fraction_by_rho"] = {
            float(k): float(v) for k, v in (fc["bound_apriori"] <= 0).groupby(fc["rho"]).mean().items()
        }
    return res


def summary_markdown(summary: dict) -> str:
    """A short human-readable table of :func:`summarise`'s output."""
    lines = [
        "| subset | rows | held (analytic) | held (empirical) | vacuous | median λ/bound | min | max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in ("all", "fcn", "cnn"):
        if k not in summary:
            continue
        s = summary[k]
        f = lambda key: f"{s[key]:.3g}" if key in s else "-"
        lines.append(
            f"| {k} | {s['rows']} | {s['held_analytic']} | {s['held_empirical']} | {s['vacuous']} | "
            f"{f('ratio_ana_median')} | {f('ratio_ana_min')} | {f('ratio_ana_max')} |"
        )
    return "\n".join(lines) + "\n"


def write_results(df: pd.DataFrame, cfg: dict, out_dir, *, elapsed: float | None = None, plots: bool = True) -> dict:
    """Write ``bounds.csv``, ``config.json``, ``summary.md`` and figures atomically.

    Returns:
        ``{name: path}`` of written files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(df) if len(df) else {}
    written = {"csv": write_table(df, out / "bounds.csv")}
    meta = {
        "config": cfg,
        "summary": summary,
        "elapsed_s": elapsed,
        "environment": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
        "columns": list(df.columns),
    }
    written["config"] = write_json(meta, out / "config.json")
    with paths.atomic_write(out / "summary.md") as fh:
        fh.write(summary_markdown(summary) if summary else "no rows\n")
    written["summary"] = out / "summary.md"
    if plots and len(df):
        from robntk.theory.plots import make_figures

        written.update(make_figures(df, cfg, out))
    return written


def check_one(
    arch=None,
    *,
    n_points: int = 12,
    width: int = 1024,
    rho: float = 0.3,
    betas=(0.0, 0.5, 1.0),
    seed: int = 0,
    attack_steps: int = 10,
    order: int = 64,
) -> pd.DataFrame:
    """One bound check, end to end (the walk-through of notebooks/bound_check.ipynb).

    Draws N unit inputs, a width-m network of ``arch`` (default: ReLU→tanh→GELU FCN with skips),
    crafts X̃, X̃̃ by spherical PGD against it, computes the empirical (core module) and
    infinite-width kernel families, and the bounds for K_all(β) and K̃_all(β).

    Returns:
        DataFrame with one row per (β, kernel): lam_emp, lam_ana, bound (headline), bound_eig,
        ratio_ana = lam_ana / bound, holds_ana, holds_emp.

    Raises:
        ValueError: bad width, ρ, β or arch.
    """
    arch = ResFCN(("relu", "tanh", "gelu"), (1, 1), in_dim=16) if arch is None else arch
    check_width(width)
    check_rho(rho)
    betas = [check_beta(b) for b in betas]
    kind = arch.kind
    shape = (arch.length, arch.in_channels) if kind == "cnn" else (arch.in_dim,)
    head = "series" if kind == "fcn" else "path"
    coeffs = bound_coefficients(arch, head, order)
    rows = []
    with jax.enable_x64(True):
        X, y = sphere_points(n_points, shape, seed=seed)
        params = init_params(arch, seed, width, jnp.float64)
        arrays = arch_arrays(arch, width, jnp.float64)
        xa, xaa = _attack(
            params,
            arrays,
            jnp.asarray(X),
            jnp.asarray(y),
            jnp.asarray(rho, jnp.float64),
            jax.random.PRNGKey(seed),
            kind,
            attack_steps,
        )
        xa, xaa = np.asarray(xa), np.asarray(xaa)
        (fam_e,), impl = empirical_families(arch, params, width, X, [(xa, xaa)])
    fam_a = analytic_family(arch, X, xa, xaa)
    grams = {"K_all": pair_grams(arch, X, xa, order), "K_tilde_all": pair_grams(arch, xa, xaa, order)}
    for beta in betas:
        for kname in KERNEL_NAMES:
            Ke = fam_e.k_all(beta) if kname == "K_all" else fam_e.k_tilde_all(beta)
            Ka = fam_a.k_all(beta) if kname == "K_all" else fam_a.k_tilde_all(beta)
            b = lambda_min_bound(arch, beta=beta, coeffs=coeffs, grams=grams[kname])
            be = lambda_min_bound(arch, beta=beta, coeffs=coeffs, grams=grams[kname], method="eig")
            lam_e, lam_a = _lam(Ke)[0], _lam(Ka)[0]
            rows.append(
                dict(
                    beta=beta,
                    kernel=kname,
                    lam_emp=lam_e,
                    lam_ana=lam_a,
                    bound=b.value,
                    best_r=b.best_r,
                    bound_eig=be.value,
                    ratio_ana=lam_a / b.value if b.value > 0 else np.inf,
                    holds_ana=bool(holds(b.value, lam_a)),
                    holds_emp=bool(holds(b.value, lam_e)),
                    kernel_impl=impl,
                )
            )
    return pd.DataFrame(rows)
