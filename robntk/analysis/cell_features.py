"""Label-free features of NB201 cells for the few-shot predictors (:mod:`robntk.analysis.predictors`)
and predictor-guided search (:mod:`robntk.analysis.search`).

:func:`feature_table` joins, one row per cell: zero-shot proxy columns as percentile ranks over
the rows kept (``zc_<name>``), the one-hot op encoding (:func:`onehot_features`) and GRAF-style
graph features (:func:`graf_features`, :data:`GRAF_OP_SETS`); :func:`arch_ops` turns arch strings
into op ids and :func:`proxy_columns_of` picks the proxy columns of a scores table. No feature
uses any accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from robntk.analysis.combine import normalised_ranks
from robntk.nb201.searchspace import EDGES, NUM_EDGES, OP_ID, OPS, check_ops, parse_arch_str

#: Encodings of :func:`feature_table` besides proxies.
ENCODINGS: tuple[str, ...] = ("onehot", "graf")
#: Op-id sets of the GRAF path features (ids of :data:`robntk.nb201.searchspace.OPS`).
GRAF_OP_SETS: dict[str, tuple[int, ...]] = {
    "skip": (1,),
    "conv1x1": (2,),
    "conv3x3": (3,),
    "pool": (4,),
    "conv": (2, 3),
    "param_free": (1, 4),
    "any": (1, 2, 3, 4),
}
#: The 4 input→output paths of the NB201 cell, as edge indices into :data:`EDGES`.
IO_PATHS: tuple[tuple[int, ...], ...] = ((3,), (0, 4), (1, 5), (0, 2, 5))


# --------------------------------------------------------------------------- encodings
def arch_ops(archs: Sequence) -> np.ndarray:
    """Op ids of cells given as arch strings or 6-op tuples.

    Args:
        archs: sequence of NB201 arch strings (``'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'``) or
            sequences of 6 op names.

    Returns:
        int8 array (n, 6) of op ids (:data:`robntk.nb201.searchspace.OP_ID`), edges in
        :data:`robntk.nb201.searchspace.EDGES` order.

    Raises:
        ValueError: a malformed arch string or unknown op (names it).
    """
    out = np.empty((len(archs), NUM_EDGES), dtype=np.int8)
    for i, a in enumerate(archs):
        ops = parse_arch_str(a) if isinstance(a, str) else check_ops(a)
        out[i] = [OP_ID[o] for o in ops]
    return out


def _check_ops_array(ops) -> np.ndarray:
    x = np.asarray(ops)
    if x.ndim != 2 or x.shape[1] != NUM_EDGES or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"ops must be an integer (n, {NUM_EDGES}) array of op ids, got {x.dtype} {x.shape}")
    if x.size and (x.min() < 0 or x.max() >= len(OPS)):
        raise ValueError(f"op ids must be in 0..{len(OPS) - 1}, got values in {int(x.min())}..{int(x.max())}")
    return x.astype(np.int64)


def onehot_features(ops) -> pd.DataFrame:
    """One-hot encoding of the op on each edge.

    Args:
        ops: integer (n, 6) op ids (:func:`arch_ops`).

    Returns:
        float64 DataFrame (n, 30), columns ``e<edge>_<op>`` (edge-major, op order of
        :data:`robntk.nb201.searchspace.OPS`); each row has exactly six ones.

    Raises:
        ValueError: not an integer (n, 6) array of ids in 0..4.
    """
    x = _check_ops_array(ops)
    cols = {f"e{e}_{op}": (x[:, e] == k).astype(np.float64) for e in range(NUM_EDGES) for k, op in enumerate(OPS)}
    return pd.DataFrame(cols)


def graf_features(ops) -> pd.DataFrame:
    """GRAF-style graph features of NB201 cells (Kadlecová et al., ICML 2024).

    Columns (all float64, n rows):

    * ``count_<op>`` (5): how many edges carry each op;
    * for each op set S of :data:`GRAF_OP_SETS`: ``paths_<S>`` the number of the 4 input→output
      paths (:data:`IO_PATHS`) whose edges all carry ops in S, ``minpath_<S>`` / ``maxpath_<S>``
      the shortest / longest such path in edges (0 when there is none);
    * ``live_<op>`` (4 non-zero ops): edges with that op that lie on an input→output path of
      non-``none`` edges (ops that can influence the output);
    * ``indeg_<node>`` (nodes 1–3) and ``outdeg_<node>`` (nodes 0–2): non-``none`` edges into /
      out of each intermediate node.

    Args:
        ops: integer (n, 6) op ids (:func:`arch_ops`).

    Returns:
        float64 DataFrame (n, 36).

    Raises:
        ValueError: not an integer (n, 6) array of ids in 0..4.
    """
    x = _check_ops_array(ops)
    cols: dict[str, np.ndarray] = {f"count_{op}": (x == k).sum(1) for k, op in enumerate(OPS)}
    lengths = np.array([len(p) for p in IO_PATHS])
    for name, allowed in GRAF_OP_SETS.items():
        ok = np.stack([np.isin(x[:, list(p)], allowed).all(1) for p in IO_PATHS], axis=1)  # (n, 4)
        cols[f"paths_{name}"] = ok.sum(1)
        cols[f"minpath_{name}"] = np.where(ok.any(1), np.where(ok, lengths, 99).min(1), 0)
        cols[f"maxpath_{name}"] = np.where(ok, lengths, 0).max(1)
    alive = np.stack([(x[:, list(p)] != 0).all(1) for p in IO_PATHS], axis=1)  # (n, 4)
    live_edge = np.zeros(x.shape, dtype=bool)
    for j, p in enumerate(IO_PATHS):
        for e in p:
            live_edge[:, e] |= alive[:, j]
    for k, op in enumerate(OPS[1:], start=1):
        cols[f"live_{op}"] = ((x == k) & live_edge).sum(1)
    nz = x != 0
    for v in (1, 2, 3):
        cols[f"indeg_{v}"] = nz[:, [e for e, (_, d) in enumerate(EDGES) if d == v]].sum(1)
    for v in (0, 1, 2):
        cols[f"outdeg_{v}"] = nz[:, [e for e, (s, _) in enumerate(EDGES) if s == v]].sum(1)
    return pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in cols.items()})


def feature_table(
    index,
    arch_strs: Sequence[str],
    proxies: pd.DataFrame | None = None,
    proxy_columns: Sequence[str] | None = None,
    encodings: Sequence[str] = ENCODINGS,
) -> pd.DataFrame:
    """Label-free features of a set of cells, one row per cell.

    Args:
        index: int NB201 indices of the rows (e.g. the 6,466 representatives), unique.
        arch_strs: the arch string of each row (same length as ``index``).
        proxies: optional DataFrame indexed by ``nb201_index`` with proxy columns; rows of
            ``index`` missing there, or with a NaN in a used column, are dropped.
        proxy_columns: the proxy columns used (default: every numeric column of ``proxies``
            except ``nb201_cell`` and ``*_undefined`` flags).
        encodings: any of :data:`ENCODINGS`.

    Returns:
        float64 DataFrame indexed by ``nb201_index``: ``zc_<proxy>`` percentile ranks (over the
        rows kept), then the one-hot and GRAF columns. ``attrs['n_dropped']``: rows dropped for
        missing proxies.

    Raises:
        ValueError: unknown encoding, repeated index, lengths differ, no feature at all, a
            missing or non-numeric proxy column.
    """
    keys = np.asarray(index, dtype=np.int64)
    if keys.ndim != 1 or keys.size != len(arch_strs):
        raise ValueError(f"index and arch_strs must be 1-D of equal length, got {keys.shape} and {len(arch_strs)}")
    if np.unique(keys).size != keys.size:
        raise ValueError("index repeats NB201 indices; deduplicate isomorphs first")
    bad = [e for e in encodings if e not in ENCODINGS]
    if bad:
        raise ValueError(f"unknown encoding(s) {bad}; allowed: {', '.join(ENCODINGS)}")
    if proxies is None and not encodings:
        raise ValueError("no features: give proxies or at least one encoding")
    parts = []
    keep = np.ones(keys.size, dtype=bool)
    if proxies is not None:
        cols = list(proxy_columns) if proxy_columns is not None else proxy_columns_of(proxies)
        z = normalised_ranks(proxies.reindex(keys), cols)  # NaN for missing rows
        keep = ~z.isna().any(axis=1).to_numpy()
        z = normalised_ranks(proxies.reindex(keys[keep]), cols)  # ranks over the kept rows only
        parts.append(z.add_prefix("zc_").to_numpy())
        names = [f"zc_{c}" for c in cols]
    else:
        names = []
    ops = arch_ops([arch_strs[i] for i in np.flatnonzero(keep)])
    for enc in encodings:
        f = onehot_features(ops) if enc == "onehot" else graf_features(ops)
        parts.append(f.to_numpy())
        names += list(f.columns)
    out = pd.DataFrame(np.column_stack(parts), index=pd.Index(keys[keep], name="nb201_index"), columns=names)
    out.attrs["n_dropped"] = int((~keep).sum())
    return out


def proxy_columns_of(table: pd.DataFrame) -> list[str]:
    """Numeric, non-boolean columns of a scores table that are proxies (not ``nb201_cell``,
    ``nb201_representative`` or ``*_undefined`` flags), in table order.

    Args:
        table: a scores DataFrame (e.g. :func:`robntk.data.suite_zero.load_suite_zero`).

    Returns:
        list of column names (empty when there is none).
    """
    return [
        c
        for c in table.columns
        if c not in ("nb201_cell", "nb201_representative", "nb201_index")
        and not str(c).endswith("_undefined")
        and pd.api.types.is_numeric_dtype(table[c].dtype)
        and not pd.api.types.is_bool_dtype(table[c].dtype)
    ]
