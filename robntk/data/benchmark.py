"""NAS-RobBench-201 (adversarially trained NB201) and NB201 standard-training accuracies.

NAS-RobBench-201 (Wu et al., ICLR 2024; github.com/TT2408/nasrobbench201) reports, for the 6,466
non-isomorphic NAS-Bench-201 cells and three datasets, the accuracy after PGD adversarial
training under six evaluations (:data:`METRICS`, names exactly as the official
``NAS-RobBench-201_all.json``). All accuracies are fractions in [0, 1]. Isomorphic cells share the
values of their representative (the smallest NB201 index of the class).

Three file layouts are read by :class:`RobBench`:

* the official per-seed file ``NAS-RobBench-201_all.json`` + ``meta.json``
  (:meth:`RobBench.from_official`),
* the authors' condensed project-page file ``NAS-RobBench-201_html.json``
  (:meth:`RobBench.from_html_json`; three-seed means, AutoAttack one seed),
* the derived CSV ``nasrobbench201_threeseed_15625.csv`` (:meth:`RobBench.from_csv`).

Their parsers (and the file names) are :mod:`robntk.data.robbench_formats`.

:func:`load_nb201_accuracy` reads NB201's 200-epoch standard-training test accuracies.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from robntk.core import paths, registry
from robntk.data.robbench_formats import (
    CSV_FILE,
    HTML_FILE,
    OFFICIAL_FILE,
    OFFICIAL_META,
    _canonical_dataset,
    read_csv,
    read_html_json,
    read_official,
)
from robntk.nb201.searchspace import NUM_ARCHS, SearchSpace

METRICS = registry.METRICS
DATASETS = registry.BENCH_DATASETS
NB201_ACC_FILE = "nb201_clean_acc/nats_bench.csv"
SOURCES: tuple[str, ...] = ("auto", "official", "html", "csv")


column_name = registry.bench_column


class RobBench:
    """NAS-RobBench-201 accuracies keyed by NB201 representative index.

    Attributes:
        datasets: dataset names present (starts as :data:`DATASETS`; grows with :meth:`add_results`).
        metrics: metric names present (starts as :data:`METRICS` plus any extra official metric).
        isomorph: int64 array (15,625,) — representative NB201 index of every cell.
        source: where the values came from ('official', 'html', 'csv' or 'memory').
        path: the file read (or None).

    Build with :meth:`load`, :meth:`from_official`, :meth:`from_html_json` or :meth:`from_csv`.
    Values are fractions in [0, 1].
    """

    def __init__(
        self,
        values: pd.DataFrame,
        isomorph,
        datasets,
        metrics,
        space: SearchSpace | None = None,
        source: str = "memory",
        path: str | os.PathLike | None = None,
        data_dir: str | os.PathLike | None = None,
    ):
        """Low-level constructor (prefer the classmethods).

        Args:
            values: float64 DataFrame indexed by representative NB201 index with columns
                ``column_name(dataset, metric)``.
            isomorph: (15,625,) representative index per NB201 index.
            datasets, metrics: names present.
            space: optional :class:`SearchSpace` for resolving arch strings (loaded lazily from
                ``data_dir`` or next to ``path`` otherwise).
        """
        self._values = values.astype(np.float64)
        self._values.index = self._values.index.astype(np.int64)
        self._values.index.name = "nb201_index"
        self.isomorph = np.asarray(isomorph, dtype=np.int64)
        if self.isomorph.shape != (NUM_ARCHS,):
            raise ValueError(f"isomorph map must have {NUM_ARCHS} entries, got {self.isomorph.shape}")
        self.datasets = list(datasets)
        self.metrics = list(metrics)
        self._space = space
        self.source = source
        self.path = None if path is None else Path(path)
        self._data_dir = data_dir

    # ------------------------------------------------------------------ loaders
    @classmethod
    def load(cls, data_dir: str | os.PathLike | None = None, source: str = "auto") -> RobBench:
        """Load NAS-RobBench-201 from the data directory.

        ``source='auto'`` prefers the official per-seed layout (``nasrobbench201/NAS-RobBench-201_all.json``
        plus ``nasrobbench201/meta.json``, or ``nb201_archs/meta.json`` if the former is absent),
        then the project-page file ``nasrobbench201/NAS-RobBench-201_html.json``, then the
        derived CSV ``nasrobbench201/nasrobbench201_threeseed_15625.csv``.

        Args:
            data_dir: data directory (see :func:`robntk.core.paths.data_dir`).
            source: 'auto', 'official', 'html' or 'csv'.

        With nothing found, the project-page file is fetched when ``--download`` is on
        (:func:`robntk.core.paths.data_files`).

        Raises:
            FileNotFoundError: no benchmark file found (the message names
                ``robntk data fetch nasrobbench201``, ``--download`` and the source).
            ValueError: unknown source; corrupt file (named).
        """
        if source not in SOURCES:
            raise ValueError(f"unknown benchmark source {source!r}; allowed: {', '.join(SOURCES)}")
        root = paths.data_dir(data_dir)
        space = None
        if (root / "nb201_archs/meta.json").is_file():
            space = SearchSpace.load(data_dir)
        if source in ("auto", "official"):
            meta = root / OFFICIAL_META
            if not meta.is_file():
                meta = root / "nb201_archs/meta.json"
            if (root / OFFICIAL_FILE).is_file() and meta.is_file():
                return cls.from_official(root / OFFICIAL_FILE, meta)
            if source == "official":  # raises FileNotFoundError naming the file and how to obtain it
                all_json, meta = paths.data_files([OFFICIAL_FILE, "nb201_archs/meta.json"], data_dir)
                return cls.from_official(all_json, root / OFFICIAL_META if (root / OFFICIAL_META).is_file() else meta)
        if source in ("auto", "html") and ((root / HTML_FILE).is_file() or source == "html"):
            return cls.from_html_json(paths.data_file(HTML_FILE, data_dir), space=space, data_dir=data_dir)
        if source in ("auto", "csv") and ((root / CSV_FILE).is_file() or source == "csv"):
            return cls.from_csv(paths.data_file(CSV_FILE, data_dir), space=space, data_dir=data_dir)
        # nothing found: the project-page file (fetched with --download, else FileNotFoundError naming
        # `robntk data fetch nasrobbench201`)
        return cls.from_html_json(paths.data_file(HTML_FILE, data_dir), space=space, data_dir=data_dir)

    @classmethod
    def from_html_json(
        cls, path: str | os.PathLike, space: SearchSpace | None = None, data_dir: str | os.PathLike | None = None
    ) -> RobBench:
        """Read the project-page file ``NAS-RobBench-201_html.json`` (github.com/TT2408/nasrobbench201hp).

        Layout: JavaScript ``acc={...}``; key ``""`` holds 18 labels ``<ds>#<metric>`` (ds in
        cifar10/cifar100/imagenet, metric like ``val_fgsm_3_acc``, mapped to the official names,
        e.g. ``val_fgsm_3.0_acc``; ``imagenet`` → ``ImageNet16-120``); keys ``"0"…"15624"`` hold
        an 18-float list (the 6,466 representatives) or the string index of the representative.
        Clean/FGSM/PGD values are three-seed means, AutoAttack one seed.

        Args:
            path: the file.
            space: optional search space for arch-string lookup (else loaded lazily).
            data_dir: data directory for the lazy search-space load.

        Raises:
            FileNotFoundError: missing file. ValueError: corrupt file (named).
        """
        path = Path(path)
        values, isomorph, datasets, metrics = read_html_json(path)
        return cls(values, isomorph, datasets, metrics, space=space, source="html", path=path, data_dir=data_dir)

    @classmethod
    def from_csv(
        cls, path: str | os.PathLike, space: SearchSpace | None = None, data_dir: str | os.PathLike | None = None
    ) -> RobBench:
        """Read the derived CSV ``nasrobbench201_threeseed_15625.csv``.

        One row per NB201 index with ``nb201_index, arch_str, uid, is_evaluated`` and 18 columns
        ``<dataset>_<metric>``; the representative rows (``nb201_index == uid``) are kept.

        Raises:
            FileNotFoundError: missing file. ValueError: corrupt file (named).
        """
        path = Path(path)
        values, isomorph, space = read_csv(path, space)
        return cls(values, isomorph, DATASETS, METRICS, space=space, source="csv", path=path, data_dir=data_dir)

    @classmethod
    def from_official(cls, all_json: str | os.PathLike, meta_json: str | os.PathLike) -> RobBench:
        """Read the official per-seed ``NAS-RobBench-201_all.json`` with its ``meta.json``.

        Layout (as read by the official ``NasRobBench201`` class of github.com/TT2408/nasrobbench201):
        ``res[dataset][uid][metric][seed_key]`` with ``uid`` the representative NB201 index as a
        string and seed keys ``'1'``, ``'2'``, ``'3'`` (+ possibly ``'threeseed'``); ``autoattack``
        is a scalar (one seed). Dataset keys ``cifar10``, ``cifar100``, ``imagenet`` (or
        ``ImageNet16-120``). ``meta.json``: ``{'ids': {'i': {'nb201-string', 'isomorph'}}}``.

        Value used per metric: the ``'threeseed'`` entry if present, else the mean of the numeric
        per-seed entries (digit keys). NOTE: the official ``get_result`` returns seed ``'1'``
        only; the three-seed mean matches the project-page file. A scalar is used as is.
        Metrics beyond :data:`METRICS` whose entries are scalars or seed dicts are kept too;
        other entries (lists, nested structures) are ignored.

        Raises:
            FileNotFoundError: missing file. ValueError: corrupt file (named), unknown uid.
        """
        all_json, meta_json = Path(all_json), Path(meta_json)
        values, isomorph, datasets, metrics, space = read_official(all_json, meta_json)
        return cls(values, isomorph, datasets, metrics, space=space, source="official", path=all_json)

    # ------------------------------------------------------------------ lookup
    @property
    def space(self) -> SearchSpace:
        """The NB201 search space (for arch strings); loaded lazily when not given.

        Raises:
            FileNotFoundError: ``nb201_archs/meta.json`` not found (neither in the data directory
                nor in the bundle holding the benchmark file).
        """
        if self._space is None:
            candidates = []
            if self.path is not None:  # the data bundle layout: <root>/nasrobbench201/<file>
                candidates.append(self.path.resolve().parent.parent)
            if self._data_dir is not None:
                candidates.append(Path(self._data_dir))
            # none holds it: the given data directory (None: the default one), where --download fetches it
            root = next((r for r in candidates if (r / "nb201_archs/meta.json").is_file()), self._data_dir)
            self._space = SearchSpace.load(root)
        return self._space

    def representative(self, arch: int | str) -> int:
        """Representative NB201 index of ``arch`` (an NB201 index, digit string or arch string).

        Raises:
            ValueError: bad index or malformed arch string.
        """
        if isinstance(arch, str) and "|" in arch:
            i = self.space.index_of(arch)
        else:
            try:
                i = int(arch)
                if isinstance(arch, (bool, float)) or (isinstance(arch, str) and arch.strip() != str(i)):
                    raise ValueError
            except (TypeError, ValueError):
                raise ValueError(
                    f"arch must be an NB201 index 0..{NUM_ARCHS - 1} or an arch string, got {arch!r}"
                ) from None
            if not 0 <= i < NUM_ARCHS:
                raise ValueError(f"NB201 index {i} out of range; allowed 0..{NUM_ARCHS - 1}")
        return int(self.isomorph[i])

    def representatives_of(self, indices) -> np.ndarray:
        """Vectorised :meth:`representative` for integer NB201 indices → int64 array.

        Raises:
            ValueError: an index outside 0..15624.
        """
        idx = np.asarray(indices)
        if idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= NUM_ARCHS):
            raise ValueError(f"NB201 indices must be integers in 0..{NUM_ARCHS - 1}")
        return self.isomorph[idx.astype(np.int64)]

    def _check(self, dataset: str, metric: str) -> str:
        if dataset not in self.datasets:
            ds = _canonical_dataset(dataset) if isinstance(dataset, str) else dataset
            if ds not in self.datasets:
                raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(self.datasets)}")
            dataset = ds
        if metric not in self.metrics:
            raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(self.metrics)}")
        col = column_name(dataset, metric)
        if col not in self._values.columns:
            raise ValueError(f"no values for dataset {dataset!r} / metric {metric!r} in this benchmark")
        return col

    def column(self, dataset: str, metric: str) -> str:
        """Validated table column name of (dataset, metric).

        Raises:
            ValueError: unknown dataset or metric (lists the allowed names), or no values for the pair.
        """
        return self._check(dataset, metric)

    def get(self, arch: int | str, dataset: str, metric: str) -> float:
        """Value of ``metric`` on ``dataset`` for ``arch`` (fraction in [0, 1]).

        Args:
            arch: NB201 index (int or digit string) or arch string; isomorphs resolve to their
                representative, whose value they share.
            dataset: one of :attr:`datasets` (aliases 'imagenet' etc. accepted).
            metric: one of :attr:`metrics`.

        Raises:
            ValueError: unknown dataset/metric (lists the allowed names), bad arch.
            KeyError: the benchmark has no value for this architecture.
        """
        col = self._check(dataset, metric)
        rep = self.representative(arch)
        v = self._values[col].get(rep, np.nan)
        if v is None or math.isnan(v):
            raise KeyError(f"no {dataset}/{metric} value for arch {arch!r} (representative {rep})")
        return float(v)

    def values(self, indices, dataset: str, metric: str) -> np.ndarray:
        """Vectorised :meth:`get` for NB201 indices → float64 array, NaN where missing.

        Raises:
            ValueError: unknown dataset/metric or index out of range.
        """
        col = self._check(dataset, metric)
        reps = self.representatives_of(indices)
        return self._values[col].reindex(reps).to_numpy(np.float64)

    def table(self, expand: bool = False) -> pd.DataFrame:
        """All values as a DataFrame.

        Args:
            expand: False (default): one row per representative (6,466 for the full benchmark),
                indexed by ``nb201_index``. True: one row per NB201 index 0…15624 (isomorphs get
                their representative's values) with an extra ``uid`` column (the representative).

        Returns:
            float64 columns ``<dataset>_<metric>`` (e.g. ``cifar10_val_pgd_8.0_acc``,
            ``ImageNet16-120_autoattack``), dataset-major in :attr:`datasets` × :attr:`metrics` order.
        """
        order = [column_name(d, m) for d in self.datasets for m in self.metrics]
        df = self._values[[c for c in order if c in self._values.columns]].copy()
        if expand:
            df = df.reindex(self.isomorph)
            df.index = pd.RangeIndex(NUM_ARCHS, name="nb201_index")
            df.insert(0, "uid", self.isomorph)
        return df

    def add_results(self, arch: int | str, dataset: str, metrics: Mapping[str, float], overwrite: bool = False) -> int:
        """Add robntk's own evaluation of ``arch`` (e.g. the ``evaluate`` command's metrics JSON).

        Values are stored under the arch's representative (isomorphs compute the same function).
        New datasets, metrics and architectures are allowed; they extend :attr:`datasets`,
        :attr:`metrics` and the table. Use the benchmark's key names (:data:`METRICS`) and
        fractions in [0, 1] for accuracies to make the values comparable.

        Args:
            arch: NB201 index or arch string.
            dataset: dataset name (canonicalised if it is an alias of a known one).
            metrics: {metric name: number}.
            overwrite: replace existing (e.g. benchmark) values; otherwise a different existing
                value is an error.

        Returns:
            The representative index the values were stored under.

        Raises:
            ValueError: empty/non-string names, non-numeric values, or an existing different value
                without ``overwrite``.
        """
        if not isinstance(dataset, str) or not dataset:
            raise ValueError(f"dataset must be a non-empty string, got {dataset!r}")
        dataset = _canonical_dataset(dataset)
        if not isinstance(metrics, Mapping) or not metrics:
            raise ValueError(f"metrics must be a non-empty dict {{metric: number}}, got {metrics!r:.80}")
        rep = self.representative(arch)
        clean = {}
        for m, v in metrics.items():
            if not isinstance(m, str) or not m:
                raise ValueError(f"metric names must be non-empty strings, got {m!r}")
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"metric {m!r} must be a number, got {v!r:.80}")
            col = column_name(dataset, m)
            old = self._values[col].get(rep, np.nan) if col in self._values.columns else np.nan
            if not overwrite and not math.isnan(old) and not math.isclose(old, float(v), rel_tol=0, abs_tol=1e-12):
                raise ValueError(
                    f"arch {arch!r} (representative {rep}) already has {dataset}/{m} = {old}; "
                    f"pass overwrite=True to replace it with {v}"
                )
            clean[col] = float(v)
        for col, v in clean.items():
            self._values.loc[rep, col] = v
        self._values = self._values.sort_index()
        self._values.index = self._values.index.astype(np.int64)
        self._values.index.name = "nb201_index"
        if dataset not in self.datasets:
            self.datasets.append(dataset)
        for m in metrics:
            if m not in self.metrics:
                self.metrics.append(m)
        return rep

    def __repr__(self) -> str:
        return (
            f"RobBench(source={self.source!r}, archs={len(self._values)}, datasets={self.datasets}, "
            f"metrics={len(self.metrics)})"
        )


def load_nb201_accuracy(data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """NB201 200-epoch standard-training test accuracies of all 15,625 cells, as fractions.

    Reads ``nb201_clean_acc/nats_bench.csv`` (NATS-Bench-tss ``get_more_info(i, ds, hp=200)
    ['test-accuracy']``, seed mean; exported by github.com/v-tao/nats-bench-landscape), whose
    row order is the NB201 index and whose values are in %.

    Returns:
        DataFrame indexed by ``nb201_index`` (0…15624) with float64 columns
        ``cifar10_nb201_test_acc``, ``cifar100_nb201_test_acc``, ``ImageNet16-120_nb201_test_acc``
        in [0, 1] (the CSV's % divided by 100).

    Raises:
        FileNotFoundError: missing file. ValueError: corrupt file (named).
    """
    path = paths.data_file(NB201_ACC_FILE, data_dir)
    src = {
        "CIFAR10TestAccuracy200Epochs": "cifar10_nb201_test_acc",
        "CIFAR100TestAccuracy200Epochs": "cifar100_nb201_test_acc",
        "ImageNetTestAccuracy200Epochs": "ImageNet16-120_nb201_test_acc",
    }
    try:
        df = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"corrupt NB201 accuracy file {path}: {type(exc).__name__}: {exc}") from None
    missing = [c for c in src if c not in df.columns]
    if missing:
        raise ValueError(
            f"corrupt NB201 accuracy file {path}: missing columns {missing}; columns are {list(df.columns)[:10]}"
        )
    try:
        out = df[list(src)].astype(np.float64).rename(columns=src) / 100.0
    except (ValueError, TypeError) as exc:
        raise ValueError(f"corrupt NB201 accuracy file {path}: non-numeric accuracies ({exc})") from None
    if len(out) != NUM_ARCHS:
        raise ValueError(f"corrupt NB201 accuracy file {path}: {len(out)} rows, expected {NUM_ARCHS}")
    out.index = pd.RangeIndex(NUM_ARCHS, name="nb201_index")
    return out
