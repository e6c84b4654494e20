"""Reader of Jung et al.'s robustness of the *standard-trained* NB201 networks ("Neural
Architecture Design and Robustness: A Dataset", ICLR 2023): clean, FGSM, PGD, APGD-CE and Square
accuracy at ε = 1/255 and the mean accuracy under common corruptions, per NB201 index.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from robntk.core import paths
from robntk.data.benchmark import DATASETS
from robntk.data.robbench_formats import read_js_json
from robntk.nb201.searchspace import NUM_ARCHS

JUNG_CSV = "jung_robustness_nb201_summary/jung_acc_summary_15625.csv"
JUNG_JSON = "jung_robustness_nb201_summary/acc.json"
#: Jung et al.'s labels (standard-trained NB201 weights, attacks at ε = 1/255; ``corr`` = mean
#: accuracy over common corruptions, CIFAR only).
JUNG_METRICS: tuple[str, ...] = ("clean", "aa_apgd-ce", "aa_square", "fgsm", "pgd", "corr")


def load_jung_robustness(data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Jung et al.'s robustness of the *standard-trained* NB201 weights, all 15,625 cells.

    "Neural Architecture Design and Robustness: A Dataset" (Jung, Lukasik, Keuper, ICLR 2023,
    robustness.vision): clean test accuracy, APGD-CE / Square / FGSM / PGD accuracy at L∞
    ε = 1/255, and (CIFAR only) mean accuracy over common corruptions, rounded to 3 decimals.
    Reads ``jung_robustness_nb201_summary/jung_acc_summary_15625.csv`` (isomorphs expanded) or,
    if absent, the verbatim ``jung_robustness_nb201_summary/acc.json`` (JavaScript ``acc={...}``;
    key ``""`` = 17 labels ``<dataset>#<label>``, values a 17-float list for the 6,466
    representatives or the int index of the representative).

    Args:
        data_dir: data directory (see :func:`robntk.core.paths.data_dir`).

    Returns:
        float64 DataFrame indexed by ``nb201_index`` (0…15624) with columns
        ``<dataset>_jung_<label>`` for dataset in :data:`robntk.data.benchmark.DATASETS` and label in
        :data:`JUNG_METRICS` (no ``ImageNet16-120_jung_corr``); fractions in [0, 1].

    Raises:
        FileNotFoundError: neither file exists (names both, ``robntk data fetch jung`` that brings
            ``acc.json``, and its source); with ``--download`` on, ``acc.json`` is fetched instead.
        ValueError: corrupt file (named).
    """
    root = paths.data_dir(data_dir)
    if (root / JUNG_CSV).is_file():
        return _jung_from_csv(root / JUNG_CSV)
    if (root / JUNG_JSON).is_file() or paths.download_enabled():
        return _jung_from_json(paths.data_file(JUNG_JSON, data_dir))
    raise paths.missing_error(
        JUNG_JSON,
        data_dir,
        lead=(f"Jung et al. robustness data not found: neither {root / JUNG_CSV} nor {root / JUNG_JSON} exists"),
    )


def _jung_columns(labels: Iterable[str]) -> list[str]:
    return [lab.replace("#", "_jung_", 1) for lab in labels]


def _jung_from_csv(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
        idx = df["nb201_index"].to_numpy(np.int64)
        cols = [c for c in df.columns if c not in ("nb201_index", "arch_str", "uid")]
        out = df[cols].astype(np.float64)
    except (ValueError, KeyError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"corrupt Jung et al. file {path}: {type(exc).__name__}: {exc}") from None
    if len(df) != NUM_ARCHS or not np.array_equal(np.sort(idx), np.arange(NUM_ARCHS)):
        raise ValueError(f"corrupt Jung et al. file {path}: expected one row per NB201 index 0..{NUM_ARCHS - 1}")
    bad = [c for c in cols if "_" not in c]
    if bad or not cols:
        raise ValueError(f"corrupt Jung et al. file {path}: expected columns <dataset>_<label>, got {cols[:5]}")
    out.columns = [_jung_col(c) for c in cols]
    out.index = pd.Index(idx, name="nb201_index")
    return out.sort_index()


def _jung_col(csv_col: str) -> str:
    for ds in DATASETS:
        if csv_col.startswith(ds + "_"):
            return f"{ds}_jung_{csv_col[len(ds) + 1 :]}"
    return csv_col


def _jung_from_json(path: Path) -> pd.DataFrame:
    acc = read_js_json(path)

    def bad(msg):
        return ValueError(f"corrupt Jung et al. file {path}: {msg}")

    if not isinstance(acc, dict) or not isinstance(acc.get(""), list):
        raise bad("expected a dict with a '' key holding the column labels")
    labels = acc[""]
    if not all(isinstance(s, str) and s.count("#") == 1 for s in labels):
        raise bad(f"labels must be '<dataset>#<label>', got {labels!r:.200}")
    rows = np.full((NUM_ARCHS, len(labels)), np.nan)
    pointer = np.full(NUM_ARCHS, -1, np.int64)
    for i in range(NUM_ARCHS):
        v = acc.get(str(i))
        if isinstance(v, list) and len(v) == len(labels):
            rows[i] = np.asarray(v, np.float64)
            pointer[i] = i
        elif isinstance(v, (int, str)) and str(v).isdigit() and int(v) < NUM_ARCHS:
            pointer[i] = int(v)
        else:
            raise bad(f"entry {i} must be a list of {len(labels)} numbers or a representative index, got {v!r:.80}")
    rows = rows[pointer]
    if np.isnan(rows).all(axis=1).any():
        raise bad(f"index {int(np.flatnonzero(np.isnan(rows).all(axis=1))[0])} points to an entry without values")
    out = pd.DataFrame(rows, columns=_jung_columns(labels), index=pd.RangeIndex(NUM_ARCHS, name="nb201_index"))
    return out
