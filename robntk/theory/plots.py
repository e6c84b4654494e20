"""Figures of the bound check (matplotlib, Agg backend), written atomically as PNG.

* ``lambda_vs_width.png``  — λ_min of K (β = 0) vs width per activation: empirical (mean ± sd
  over seeds), infinite-width, and the bounds.
* ``lambda_vs_rho.png``    — λ_min of K̃_ε (= K_all(1)) and K̃_2ε (= K̃_all(1)) vs ρ.
* ``lambda_vs_beta.png``   — λ_min of K_all(β) and K̃_all(β) vs β at the largest ρ.
* ``ratio_by_arch.png``    — λ_min(analytic)/bound per activation, skip pattern and depth.
* ``cnn_filter_size.png``  — CNN: λ_min and path bound vs filter size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from robntk.core import paths


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _plt()
    paths.atomic_save(path, lambda p: fig.savefig(p, dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def _grid(n):
    plt = _plt()
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False, constrained_layout=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _plot_subset(df, cfg):
    depth, pattern = cfg["plot_structure"]
    sub = df[
        (df["family"] == "fcn")
        & (df["depth"] == depth)
        & (df["skip_pattern"] == pattern)
        & (df["activation"] != "mixed")
    ]
    if sub.empty:
        sub = df[df["family"] == "fcn"]
    return sub, f"FCN depth {depth}, skips '{pattern}'"


def make_figures(df: pd.DataFrame, cfg: dict, out_dir) -> dict[str, Path]:
    """Write all figures for a results table; returns ``{name: path}``."""
    out = Path(out_dir)
    written = {}
    sub, title = _plot_subset(df, cfg)
    acts = list(dict.fromkeys(sub["activation"]))
    if acts:
        # λ_min vs width (clean kernel: K_all at β = 0)
        fig, axes = _grid(len(acts))
        for ax, act in zip(axes, acts):
            s = sub[(sub["activation"] == act) & (sub["kernel"] == "K_all") & (sub["beta"] == 0.0)]
            s = s[s["rho"] == s["rho"].min()]
            g = s.groupby("width")
            w = np.array(sorted(g.groups))
            ax.errorbar(
                w, g["lam_emp"].mean().loc[w], yerr=g["lam_emp"].std().fillna(0).loc[w], fmt="o-", label="empirical"
            )
            ax.plot(w, g["lam_ana"].mean().loc[w], "k--", label="infinite width")
            ax.plot(w, g["bound_eig"].mean().loc[w], "g:", label="bound (eig)")
            ax.plot(w, g["bound"].mean().loc[w], "r-.", label="bound (separation)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(act)
            ax.set_xlabel("width m")
            ax.set_ylabel("λ_min(K)")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"λ_min of the clean NTK vs width — {title}")
        written["lambda_vs_width"] = _save(fig, out / "lambda_vs_width.png")

        # λ_min vs ρ at β = 1 (robust kernels)
        wmax = sub["width"].max()
        fig, axes = _grid(len(acts))
        for ax, act in zip(axes, acts):
            s = sub[(sub["activation"] == act) & (sub["beta"] == 1.0) & (sub["width"] == wmax)]
            for kname, c in (("K_all", "C0"), ("K_tilde_all", "C1")):
                t = s[s["kernel"] == kname].groupby("rho").mean(numeric_only=True)
                lab = "K̃_ε" if kname == "K_all" else "K̃_2ε"
                ax.plot(t.index, t["lam_ana"], "-", color=c, label=f"{lab} ∞-width")
                ax.plot(t.index, t["lam_emp"], "o", color=c, label=f"{lab} m={wmax}")
                ax.plot(t.index, t["bound"], "--", color=c, label=f"{lab} bound")
            ax.set_yscale("log")
            ax.set_title(act)
            ax.set_xlabel("ρ (chordal radius)")
            ax.set_ylabel("λ_min")
        axes[0].legend(fontsize=6)
        fig.suptitle(f"λ_min of the robust kernels vs ρ (β = 1) — {title}")
        written["lambda_vs_rho"] = _save(fig, out / "lambda_vs_rho.png")

        # λ_min vs β at the largest ρ
        rmax = sub["rho"].max()
        fig, axes = _grid(len(acts))
        for ax, act in zip(axes, acts):
            s = sub[(sub["activation"] == act) & (sub["rho"] == rmax) & (sub["width"] == wmax)]
            for kname, c in (("K_all", "C0"), ("K_tilde_all", "C1")):
                t = s[s["kernel"] == kname].groupby("beta").mean(numeric_only=True)
                ax.plot(t.index, t["lam_ana"], "-", color=c, label=f"{kname} ∞-width")
                ax.plot(t.index, t["lam_emp"], "o", color=c, label=f"{kname} m={wmax}")
                ax.plot(t.index, t["bound"], "--", color=c, label=f"{kname} bound")
            ax.set_yscale("log")
            ax.set_title(act)
            ax.set_xlabel("β")
            ax.set_ylabel("λ_min")
        axes[0].legend(fontsize=6)
        fig.suptitle(f"λ_min of the mixed kernels vs β (ρ = {rmax}) — {title}")
        written["lambda_vs_beta"] = _save(fig, out / "lambda_vs_beta.png")

    # ratio per architecture
    fc = df[(df["family"] == "fcn") & (df["bound"] > 0)]
    if not fc.empty:
        plt = _plt()
        g = fc.groupby(["activation", "depth", "skip_pattern"])["ratio_ana"]
        labels = [f"{a} L{d} {p}" for a, d, p in g.groups]
        data = [np.log10(v.values) for _, v in g]
        fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(labels)), 4.5), constrained_layout=True)
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=90, fontsize=7)
        ax.set_ylabel("log10 λ_min(∞-width) / bound")
        ax.axhline(0, color="r", lw=0.8)
        ax.set_title("Tightness of the separation bound (all ρ, β, kernels)")
        written["ratio_by_arch"] = _save(fig, out / "ratio_by_arch.png")

    cn = df[df["family"] == "cnn"]
    if not cn.empty:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
        s = cn[(cn["kernel"] == "K_all") & (cn["beta"] == 0.0)]
        for i, ((act, pat), t) in enumerate(s.groupby(["activation", "skip_pattern"])):
            m = t.groupby("filter_size").mean(numeric_only=True)
            c = f"C{i}"
            ax.plot(m.index, m["lam_ana"], "o-", color=c, label=f"{act}, skips {pat}: ∞-width λ_min")
            ax.plot(m.index, m["bound_eig"].where(m["bound_eig"] > 0), "s:", color=c, label="  path bound (eig)")
            ax.plot(m.index, m["bound"].where(m["bound"] > 0), "x--", color=c, label="  path bound (separation)")
        ax.set_yscale("log")
        ax.set_xticks(sorted(s["filter_size"].unique()))
        ax.set_xlabel("filter size k (all layers); missing marker = vacuous bound (0)")
        ax.set_ylabel("λ_min(K)")
        ax.legend(fontsize=6, ncol=2)
        ax.set_title("Residual CNN: clean λ_min and bounds vs filter size")
        written["cnn_filter_size"] = _save(fig, out / "cnn_filter_size.png")
    return written
