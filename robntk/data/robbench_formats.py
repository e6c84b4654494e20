"""The three file layouts of NAS-RobBench-201 that :class:`robntk.data.benchmark.RobBench` reads,
each parsed into the value table and isomorph map it wraps:

* the official per-seed file ``NAS-RobBench-201_all.json`` + ``meta.json`` (:func:`read_official`),
* the authors' condensed project-page file ``NAS-RobBench-201_html.json``
  (:func:`read_html_json`; three-seed means, AutoAttack one seed),
* the derived CSV ``nasrobbench201_threeseed_15625.csv`` (:func:`read_csv`).

The layouts themselves are documented on the :class:`~robntk.data.benchmark.RobBench` classmethods
that read them. :func:`read_js_json` also reads Jung et al.'s ``acc.json`` (:mod:`robntk.data.jung`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from robntk.core import paths
from robntk.core.registry import BENCH_DATASETS as DATASETS
from robntk.core.registry import METRICS
from robntk.core.registry import bench_column as column_name
from robntk.nb201.searchspace import NUM_ARCHS, SearchSpace

#: Dataset keys of the official / project-page files → canonical names.
DATASET_ALIASES: dict[str, str] = {
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "imagenet": "ImageNet16-120",
    "imagenet16": "ImageNet16-120",
    "imagenet16-120": "ImageNet16-120",
    "ImageNet16-120": "ImageNet16-120",
}
HTML_FILE = "nasrobbench201/NAS-RobBench-201_html.json"
CSV_FILE = "nasrobbench201/nasrobbench201_threeseed_15625.csv"
OFFICIAL_FILE = "nasrobbench201/NAS-RobBench-201_all.json"
OFFICIAL_META = "nasrobbench201/meta.json"


def _missing(what: str, path: Path, relpath: str) -> FileNotFoundError:
    """FileNotFoundError for an explicitly given file ``path`` that plays the part of the data file
    ``relpath``: names the ``robntk data fetch`` entry (with ``--data-dir`` of the bundle that
    ``path`` would be in, when it ends with ``relpath``)."""
    parts = Path(relpath).parts
    root = (
        Path(*path.parts[: -len(parts)])
        if path.parts[-len(parts) :] == parts and len(path.parts) > len(parts)
        else None
    )
    return FileNotFoundError(f"{what} not found: {path}. {paths.obtain_hint(relpath, root=root, download=False)}")


def _canonical_dataset(key: str) -> str:
    return DATASET_ALIASES.get(key, DATASET_ALIASES.get(key.lower(), key))


def _html_metric(label: str) -> str:
    """Project-page label metric (``val_fgsm_3_acc``) → official name (``val_fgsm_3.0_acc``)."""
    return re.sub(r"^val_(fgsm|pgd)_(\d+)_acc$", r"val_\1_\2.0_acc", label)


def read_js_json(path: Path) -> object:
    """Parse a ``name={...}`` JavaScript file as JSON (strip up to the first '=' and a trailing ';')."""
    try:
        text = path.read_text()
        body = text[text.index("=") + 1 :].strip().rstrip(";")
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"corrupt NAS-RobBench-201 file {path}: expected JavaScript 'acc={{...}}' holding JSON "
            f"({type(exc).__name__}: {exc})"
        ) from None


def _official_value(entry) -> float | None:
    """Number from an official-file metric entry: scalar, {'threeseed': v}, or mean of digit-key seeds."""
    if isinstance(entry, bool):
        return None
    if isinstance(entry, (int, float)):
        return float(entry)
    if isinstance(entry, dict):
        if "threeseed" in entry and isinstance(entry["threeseed"], (int, float)):
            return float(entry["threeseed"])
        seeds = [v for k, v in entry.items() if str(k).isdigit()]
        if seeds and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seeds):
            return float(np.mean(seeds))
    return None


def read_html_json(path: Path) -> tuple[pd.DataFrame, np.ndarray, list[str], list[str]]:
    """Parse the project-page file (layout: :meth:`RobBench.from_html_json
    <robntk.data.benchmark.RobBench.from_html_json>`).

    Returns:
        ``(values, isomorph, datasets, metrics)`` for the :class:`~robntk.data.benchmark.RobBench`
        constructor.

    Raises:
        FileNotFoundError: missing file. ValueError: corrupt file (named).
    """
    if not path.is_file():
        raise _missing("NAS-RobBench-201 file", path, HTML_FILE)
    acc = read_js_json(path)

    def bad(msg):
        return ValueError(f"corrupt NAS-RobBench-201 file {path}: {msg}")

    if not isinstance(acc, dict) or "" not in acc:
        raise bad("expected a dict with a '' key holding the column labels")
    labels = acc[""]
    if not isinstance(labels, list) or not all(isinstance(s, str) and s.count("#") == 1 for s in labels):
        raise bad(f"the '' key must hold labels '<dataset>#<metric>', got {labels!r:.200}")
    cols, datasets, metrics = [], [], []
    for lab in labels:
        ds, m = lab.split("#")
        ds, m = _canonical_dataset(ds), _html_metric(m)
        cols.append(column_name(ds, m))
        datasets += [ds] if ds not in datasets else []
        metrics += [m] if m not in metrics else []
    isomorph = np.full(NUM_ARCHS, -1, dtype=np.int64)
    rows, reps = [], []
    for key, val in acc.items():
        if key == "":
            continue
        try:
            i = int(key)
            assert 0 <= i < NUM_ARCHS and key == str(i)
        except (ValueError, AssertionError):
            raise bad(f"key {key!r} is not an NB201 index 0..{NUM_ARCHS - 1}") from None
        if isinstance(val, list):
            if len(val) != len(labels) or not all(isinstance(v, (int, float)) for v in val):
                raise bad(f"entry {key!r} must be a list of {len(labels)} numbers")
            isomorph[i] = i
            reps.append(i)
            rows.append(val)
        elif isinstance(val, (str, int)) and str(val).isdigit():
            isomorph[i] = int(val)
        else:
            raise bad(f"entry {key!r} must be a list of numbers or a representative index, got {val!r:.80}")
    if (isomorph < 0).any():
        raise bad(f"missing NB201 indices, e.g. {int(np.flatnonzero(isomorph < 0)[0])}")
    rep_set = set(reps)
    orphans = [i for i, r in enumerate(isomorph) if int(r) not in rep_set]
    if orphans:
        raise bad(f"index {orphans[0]} points to {int(isomorph[orphans[0]])}, which has no values")
    values = pd.DataFrame(np.asarray(rows, dtype=np.float64), index=pd.Index(reps), columns=cols).sort_index()
    return values, isomorph, datasets, metrics


def read_csv(path: Path, space: SearchSpace | None) -> tuple[pd.DataFrame, np.ndarray, SearchSpace | None]:
    """Parse the derived CSV (layout: :meth:`RobBench.from_csv
    <robntk.data.benchmark.RobBench.from_csv>`); ``space`` None: the search space of the CSV's
    ``arch_str`` column when it is complete.

    Returns:
        ``(values, isomorph, space)`` for the :class:`~robntk.data.benchmark.RobBench` constructor.

    Raises:
        FileNotFoundError: missing file. ValueError: corrupt file (named).
    """
    if not path.is_file():
        raise _missing("NAS-RobBench-201 CSV", path, CSV_FILE)
    try:
        df = pd.read_csv(path)
        idx = df["nb201_index"].to_numpy(np.int64)
        uid = df["uid"].to_numpy(np.int64)
    except (ValueError, KeyError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"corrupt NAS-RobBench-201 CSV {path}: {type(exc).__name__}: {exc}") from None
    if len(df) != NUM_ARCHS or not np.array_equal(np.sort(idx), np.arange(NUM_ARCHS)):
        raise ValueError(f"corrupt NAS-RobBench-201 CSV {path}: expected one row per NB201 index 0..{NUM_ARCHS - 1}")
    isomorph = np.empty(NUM_ARCHS, np.int64)
    isomorph[idx] = uid
    cols = [column_name(d, m) for d in DATASETS for m in METRICS]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"corrupt NAS-RobBench-201 CSV {path}: missing columns {missing}")
    rep = df[idx == uid].set_index("nb201_index")
    try:
        values = rep[cols].astype(np.float64).sort_index()
    except ValueError as exc:
        raise ValueError(f"corrupt NAS-RobBench-201 CSV {path}: non-numeric values ({exc})") from None
    if space is None and "arch_str" in df.columns:
        strs = df.set_index("nb201_index")["arch_str"].sort_index()
        if strs.notna().all():
            space = SearchSpace(tuple(strs), tuple(int(r) for r in isomorph))
    return values, isomorph, space


def read_official(
    all_json: Path, meta_json: Path
) -> tuple[pd.DataFrame, np.ndarray, list[str], list[str], SearchSpace]:
    """Parse the official per-seed file and its ``meta.json`` (layout: :meth:`RobBench.from_official
    <robntk.data.benchmark.RobBench.from_official>`).

    Returns:
        ``(values, isomorph, datasets, metrics, space)`` for the
        :class:`~robntk.data.benchmark.RobBench` constructor.

    Raises:
        FileNotFoundError: missing file. ValueError: corrupt file (named), unknown uid.
    """
    for p, key in ((all_json, OFFICIAL_FILE), (meta_json, "nb201_archs/meta.json")):
        if not p.is_file():
            raise _missing("NAS-RobBench-201 file", p, key)
    try:
        meta = json.loads(meta_json.read_text())
        ids = meta["ids"]
        strs = tuple(ids[str(i)]["nb201-string"] for i in range(NUM_ARCHS))
        isomorph = np.array([int(ids[str(i)]["isomorph"]) for i in range(NUM_ARCHS)], np.int64)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"corrupt meta file {meta_json}: expected {{'ids': {{'0'..'{NUM_ARCHS - 1}': "
            f"{{'nb201-string', 'isomorph'}}}}}} ({type(exc).__name__}: {exc})"
        ) from None
    space = SearchSpace(strs, tuple(int(r) for r in isomorph))
    try:
        res = json.loads(all_json.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"corrupt NAS-RobBench-201 file {all_json}: {type(exc).__name__}: {exc}") from None
    if not isinstance(res, dict) or not res:
        raise ValueError(f"corrupt NAS-RobBench-201 file {all_json}: expected {{dataset: {{uid: {{metric: ...}}}}}}")

    def bad(msg):
        return ValueError(f"corrupt NAS-RobBench-201 file {all_json}: {msg}")

    data: dict[str, dict[int, float]] = {}
    datasets, metrics = [], list(METRICS)
    for ds_key, per_uid in res.items():
        ds = _canonical_dataset(ds_key)
        if not isinstance(per_uid, dict):
            raise bad(f"res[{ds_key!r}] must map uid → metrics")
        datasets += [ds] if ds not in datasets else []
        for uid, per_metric in per_uid.items():
            if not (isinstance(uid, str) and uid.isdigit() and int(uid) < NUM_ARCHS):
                raise bad(f"res[{ds_key!r}] key {uid!r} is not an NB201 index")
            if not isinstance(per_metric, dict):
                raise bad(f"res[{ds_key!r}][{uid!r}] must map metric → value")
            rep = int(isomorph[int(uid)])
            for m, entry in per_metric.items():
                v = _official_value(entry)
                if v is None:
                    if m in METRICS:
                        raise bad(
                            f"res[{ds_key!r}][{uid!r}][{m!r}] must be a number or a dict of "
                            f"per-seed numbers, got {entry!r:.80}"
                        )
                    continue
                metrics += [m] if m not in metrics else []
                data.setdefault(column_name(ds, m), {})[rep] = v
    if not data:
        raise bad("no values found")
    values = pd.DataFrame(data).sort_index()
    ordered = [column_name(d, m) for d in datasets for m in metrics if column_name(d, m) in values.columns]
    return values[ordered], isomorph, datasets, metrics, space
