"""The one writer (and reader) of tables and JSON files, with the sidecar that holds the configuration.

Every table robntk writes (scores, correlations, proxies, search curves, reports) goes through
:func:`write_table` and every JSON file through :func:`write_json`: the file is written to a
temporary file and renamed over the target (the table's sidecar ``OUT.json`` likewise), so a
killed process leaves either the old or the new file, never a half-written one. Floats are
written in one format everywhere: the shortest decimal that reads back to the same float64
(Python's ``repr``), so a table read back is bit-identical to the values written. Resumable work never resumes from a table: it resumes from its
:class:`robntk.jobs.store.ResultStore` (tables are exports).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from robntk.core.paths import atomic_save, atomic_write

#: Table formats by suffix.
SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet", ".pq")


def sidecar_path(out: str | os.PathLike) -> Path:
    """``scores.csv`` → ``scores.csv.json`` (the configuration sidecar)."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def check_table_path(out: str | os.PathLike, what: str = "--out") -> Path:
    """Validate a table path's suffix and that it can be written (before any work).

    Raises:
        ValueError: unsupported suffix (lists :data:`SUFFIXES`).
        IsADirectoryError: ``out`` is an existing directory.
        PermissionError: the target directory (or its nearest existing parent) cannot be
            written, or is a file (message names the path).
    """
    out = Path(out)
    if out.suffix.lower() not in SUFFIXES:
        raise ValueError(f"{what} must end in {', '.join(SUFFIXES)}, got {str(out)!r}")
    check_writable(out, what, kind="file")
    return out


#: Values of :func:`check_writable`'s ``kind``.
KINDS: tuple[str | None, ...] = (None, "file", "dir")


def check_writable(path: str | os.PathLike, what: str = "output", kind: str | None = None) -> Path:
    """Raise an OSError naming ``path`` (and ``what``, e.g. the flag) unless ``path`` can be
    created or overwritten — checked before any work starts.

    The nearest existing directory (``path`` itself when it is a directory, else its nearest
    existing ancestor) must accept a new file: a hidden probe file is created there and removed
    at once, which also catches read-only file systems and paths a superuser cannot write
    (``os.access`` answers yes to root everywhere). Directories that do not exist yet pass when
    they can be created.

    Args:
        path: the output. what: its name in messages (``'--out'``).
        kind: ``'file'`` (an existing directory at ``path`` is refused), ``'dir'`` (an existing
            file is refused) or None (either).

    Returns:
        ``path`` as a Path.

    Raises:
        IsADirectoryError / NotADirectoryError: ``path`` exists as the other kind.
        PermissionError: the directory cannot be written, an ancestor is a file, or an existing
            ``path`` is not writable.
        ValueError: an unknown ``kind``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = Path(path)
    if path.is_dir():
        if kind == "file":
            raise IsADirectoryError(f"{what} {path} is a directory; give a file path")
        _probe_dir(path, f"{what} {path} is not writable")
        return path
    if path.exists() or path.is_symlink():
        if kind == "dir":
            raise NotADirectoryError(f"{what} {path} is a file, not a directory")
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{what} {path} exists and is not writable")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise PermissionError(f"cannot write {what} {path}: {parent} is a file, not a directory")
    _probe_dir(parent, f"cannot write {what} {path}: directory {parent} is not writable")
    return path


def _probe_dir(directory: Path, message: str) -> None:
    """Create and remove a hidden file in ``directory``; PermissionError(``message``) if that fails."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".robntk-write-check.", dir=directory)
    except OSError as exc:
        raise PermissionError(f"{message} ({exc.strerror or exc})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def check_distinct(paths: Mapping[str, str | os.PathLike | None]) -> None:
    """Raise ValueError when two of the named paths (flag → path; None entries skipped) are the
    same file, e.g. an output that would overwrite an input (``--out`` = ``--scores``)."""
    seen: dict[Path, str] = {}
    for name, p in paths.items():
        if p is None:
            continue
        key = Path(p).resolve()  # non-strict: symlinks of the existing part resolved
        if key in seen:
            raise ValueError(f"{name} and {seen[key]} are the same file ({p}); give {name} another path")
        seen[key] = name


#: Figure formats by suffix (those matplotlib's Agg, PDF, PS and SVG backends write).
FIGURE_SUFFIXES: tuple[str, ...] = (
    ".png",
    ".pdf",
    ".svg",
    ".svgz",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".webp",
    ".eps",
    ".ps",
)


def check_figure_path(path: str | os.PathLike, what: str = "--figure") -> Path:
    """Validate a figure path's suffix (:data:`FIGURE_SUFFIXES`) and that it can be written.

    Raises:
        ValueError: unsupported suffix. IsADirectoryError / PermissionError: as
            :func:`check_writable` with ``kind='file'``.
    """
    path = Path(path)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise ValueError(f"{what} must end in {', '.join(FIGURE_SUFFIXES)}, got {str(path)!r}")
    return check_writable(path, what, kind="file")


def _plain(v: Any) -> Any:
    """JSON fallback: numpy scalars and arrays → Python numbers and lists, paths and the rest → str."""
    if hasattr(v, "tolist"):
        return v.tolist()
    if hasattr(v, "item"):
        return v.item()
    return str(v)


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON with sorted keys to ``path``, atomically.

    numpy scalars and arrays become numbers and lists; other non-JSON values (paths, dtypes) their
    ``str``; NaN and ±inf are written as ``NaN`` / ``Infinity`` (Python's JSON dialect, read back
    exactly by :func:`json.load`). Returns ``path`` as a Path.
    """
    path = Path(path)
    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=_plain)
        fh.write("\n")
    return path


def write_table(
    df: pd.DataFrame, out: str | os.PathLike, meta: Mapping[str, Any] | None = None, index: bool = False
) -> Path:
    """Write ``df`` to ``out`` (CSV/TSV/parquet by suffix) and ``meta`` to its sidecar, atomically.

    Args:
        df: the table. out: target path. meta: JSON-serialisable configuration/provenance
            (None: no sidecar). index: also write the index (e.g. a table indexed by level).

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: unsupported suffix.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"table must end in {', '.join(SUFFIXES)}, got {str(out)!r}")
    if suffix in (".parquet", ".pq"):
        atomic_save(out, lambda p: df.to_parquet(p, index=index))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        atomic_save(out, lambda p: df.to_csv(p, index=index, sep=sep))
    if meta is not None:
        write_json(dict(meta), sidecar_path(out))
    return out


def read_table(path: str | os.PathLike, required: tuple[str, ...] = (), what: str = "table") -> pd.DataFrame:
    """Read a table written by :func:`write_table` (or any CSV/TSV/parquet).

    Args:
        path: the table. required: columns that must be present.
        what: the name of the table in error messages (e.g. ``'scores file'``).

    Raises:
        FileNotFoundError: missing file (names it).
        ValueError: unsupported suffix, unreadable file, or a missing required column (names the
            file and the columns it has).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"unsupported {what} {path}: suffix {suffix!r}; allowed: {', '.join(SUFFIXES)}")
    try:
        if suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise ValueError(f"cannot read {what} {path}: {type(exc).__name__}: {exc}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} {path} has no {', '.join(repr(c) for c in missing)} column; columns are {list(df.columns)}"
        )
    return df


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of table ``path`` (``{}`` when there is none).

    Raises:
        ValueError: the sidecar is not valid JSON (names the file).
    """
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"corrupt sidecar {side}: {exc}") from None
