"""Append-only, crash-safe result store for benchmark-scale scoring (one row per architecture).

Layout of a store directory::

    STORE/
      header.json            # format, version, store key (config hash), config, provenance, selection
      rows/part-*.jsonl      # JSON-lines chunks; each file written atomically (temp file + rename)

Guarantees:

* Every chunk is written to a hidden temporary file next to its final name, flushed, fsync'ed and
  renamed (:func:`robntk.core.paths.atomic_write`). A process killed at any point (SIGKILL included)
  leaves either a complete chunk or none; leftover temporaries (``.part-*.tmp``) are ignored by
  readers and removed by :meth:`ResultStore.compact`.
* Rows are keyed by ``nb201_index``. Reading de-duplicates: the same index in several chunks
  (overlapping shards, a re-run) counts once if the values agree; rows that disagree
  (beyond ``rtol``, timing columns ``*_s`` excluded) raise :class:`StoreConflictError`.
* The header's ``store_key`` hashes everything that determines a score (the
  :class:`robntk.scoring.config.ScoreConfig` digest, the input batch's hash and the parameter
  definition, e.g. supernet init). Opening or merging stores with different keys raises
  :class:`StoreMismatchError`, whose message names the parts that differ (config digest and
  config fields, batch hash, parameter definition); a directory without a valid header raises
  :class:`StoreError`.
* Creating a store is atomic (a hidden temporary sibling directory renamed into place), so
  concurrent writers never see a store directory without its header.

Floats are stored with Python's ``repr`` (round-trip exact); ±inf/NaN as JSON ``Infinity``/``NaN``
(Python's json dialect), so values read back are bit-identical to the values written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robntk.core.paths import atomic_write
from robntk.core.tables import write_table

FORMAT = "robntk-score-store"
VERSION = 1
HEADER = "header.json"
ROWS_DIR = "rows"
KEY = "nb201_index"


class StoreError(ValueError):
    """Not a robntk store, or a corrupt one (message names the path)."""


class StoreMismatchError(StoreError):
    """Two stores (or a store and a run) have different configuration hashes."""


class StoreConflictError(StoreError):
    """The same architecture has different values in two rows."""


def _is_timing(col: str) -> bool:
    return col.endswith("_s")


def rows_equal(a: Mapping[str, Any], b: Mapping[str, Any], rtol: float = 0.0) -> str | None:
    """Compare two rows, ignoring timing columns (``*_s``).

    Returns:
        None if equal, else a short description of the first difference. Floats are equal when
        identical, both NaN, or ``|a−b| ≤ rtol·max(|a|, |b|)``.
    """
    keys = sorted(k for k in set(a) | set(b) if not _is_timing(k))
    for k in keys:
        if k not in a or k not in b:
            return f"column {k!r} present in only one row"
        u, v = a[k], b[k]
        if isinstance(u, float) or isinstance(v, float):
            try:
                fu, fv = float(u), float(v)
            except (TypeError, ValueError):
                return f"column {k!r}: {u!r} != {v!r}"
            if fu == fv or (math.isnan(fu) and math.isnan(fv)):
                continue
            if math.isfinite(fu) and math.isfinite(fv) and abs(fu - fv) <= rtol * max(abs(fu), abs(fv)):
                continue
            return f"column {k!r}: {u!r} != {v!r}"
        if u != v:
            return f"column {k!r}: {u!r} != {v!r}"
    return None


@dataclass
class ReadReport:
    """What reading a store found.

    Attributes:
        rows: de-duplicated rows by NB201 index.
        n_files: chunk files read. n_rows: rows read (with duplicates).
        n_duplicates: rows dropped because an identical row (same index) was already read.
        n_tmp_ignored: leftover temporary files ignored.
        sources: NB201 index → chunk file it was first read from.
    """

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    n_files: int = 0
    n_rows: int = 0
    n_duplicates: int = 0
    n_tmp_ignored: int = 0
    sources: dict[int, str] = field(default_factory=dict)

    def add(self, row: dict[str, Any], where: str, rtol: float) -> None:
        """Insert ``row`` (raises :class:`StoreConflictError` on a differing duplicate)."""
        idx = row[KEY]
        self.n_rows += 1
        old = self.rows.get(idx)
        if old is None:
            self.rows[idx] = row
            self.sources[idx] = where
            return
        diff = rows_equal(old, row, rtol)
        if diff is not None:
            raise StoreConflictError(
                f"conflicting results for nb201_index {idx}: {diff} (in {self.sources[idx]} and {where}); "
                "the runs used different code or hardware, or a store was edited — remove one of them"
            )
        self.n_duplicates += 1


class ResultStore:
    """A store directory (see the module docstring). Create/open with :meth:`open`.

    Attributes:
        path: the directory. header: the parsed header dict. rtol: relative tolerance of the
        conflict check (0 = exact; merging results of different hardware may need ~1e-5).
    """

    def __init__(self, path: Path, header: dict[str, Any], rtol: float = 0.0):
        self.path = Path(path)
        self.header = header
        self.rtol = rtol
        self._seq = 0

    # ------------------------------------------------------------------ open / create
    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        store_key: str | None = None,
        header: Mapping[str, Any] | None = None,
        create: bool = True,
        rtol: float = 0.0,
    ) -> ResultStore:
        """Open a store, creating it (with ``header``) if it does not exist.

        Creation is atomic: the store is built in a hidden temporary sibling directory and renamed
        into place, so another process never sees a store directory without its header; when two
        processes create the same store at once, one rename wins and the other opens the winner's
        store (checking its key). An empty directory at ``path`` is replaced by the new store.

        Args:
            path: store directory.
            store_key: the key the caller's configuration hashes to; an existing store with a
                different key raises :class:`StoreMismatchError`. None: accept any key.
            header: extra header fields for a new store (``config``, ``provenance``,
                ``selection``, ...). Needed (with ``store_key``) to create a store.
            create: create the store if missing (else :class:`StoreError`).
            rtol: conflict tolerance (see :func:`rows_equal`).

        Raises:
            StoreError: the directory exists but is not a store (no/invalid header), or is
                missing and ``create`` is False or no ``store_key`` was given.
            StoreMismatchError: key mismatch; the message names the parts of the key that differ
                (:func:`mismatch_message`).
        """
        path = Path(path)
        for _ in range(_CREATE_TRIES):
            if (path / HEADER).is_file():
                h = read_header(path)
                if store_key is not None and h["store_key"] != store_key:
                    raise StoreMismatchError(mismatch_message(path, h, store_key, header))
                return cls(path, h, rtol)
            if path.exists() and not path.is_dir():
                raise StoreError(f"{path} is a file, not a robntk result store; refusing to write into it")
            names = {p.name for p in path.iterdir()} if path.is_dir() else set()
            if HEADER in names:  # another process renamed its store into place since the check above
                continue
            if names - {ROWS_DIR}:
                raise StoreError(
                    f"{path} exists but is not a robntk result store (no {HEADER}); refusing to write into it"
                )
            if ROWS_DIR in names and any((path / ROWS_DIR).iterdir()):
                if (path / HEADER).is_file():  # the winner of a race appended after our listing
                    continue
                raise StoreError(
                    f"{path} has row files but no {HEADER}: corrupt store; restore the header or start anew"
                )
            if not create or store_key is None:
                raise StoreError(f"no robntk result store at {path}")
            h = {
                "format": FORMAT,
                "version": VERSION,
                "store_key": store_key,
                "created": time.time(),
                **dict(header or {}),
            }
            if _create(path, h):
                return cls(path, h, rtol)
            # another process put its store in place first: open that one (its key is checked)
        raise StoreError(f"could not create the result store {path}: it kept changing while being created")

    # ------------------------------------------------------------------ write
    def append(self, rows: Sequence[Mapping[str, Any]]) -> Path | None:
        """Write ``rows`` as one new chunk, atomically. Returns the chunk path (None if no rows).

        Raises:
            StoreError: a row lacks an integer ``nb201_index``.
        """
        if not rows:
            return None
        lines = []
        for r in rows:
            if not isinstance(r.get(KEY), int) or isinstance(r.get(KEY), bool):
                raise StoreError(f"row lacks an integer {KEY!r}: {dict(r)!r}")
            lines.append(json.dumps(_jsonable(r), sort_keys=True))
        self._seq += 1
        name = f"part-{socket.gethostname()}-{os.getpid()}-{time.time_ns()}-{self._seq:06d}.jsonl"
        dest = self.path / ROWS_DIR / name
        with atomic_write(dest) as fh:
            fh.write("\n".join(lines) + "\n")
        return dest

    def compact(self) -> Path | None:
        """Rewrite all rows into one chunk, then delete the old chunks and leftover temporaries.

        Crash-safe: the new chunk is complete before anything is deleted, and duplicates of
        identical rows are harmless. Returns the new chunk (None when the store is empty).
        """
        rep = self.read()
        old = self.chunk_files()
        new = self.append([rep.rows[i] for i in sorted(rep.rows)]) if rep.rows else None
        for p in old:
            if p != new:
                p.unlink(missing_ok=True)
        for p in self.temp_files():
            p.unlink(missing_ok=True)
        return new

    # ------------------------------------------------------------------ read
    def chunk_files(self) -> list[Path]:
        """Complete chunk files, sorted by name (temporaries excluded)."""
        d = self.path / ROWS_DIR
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if p.name.startswith("part-") and p.name.endswith(".jsonl"))

    def temp_files(self) -> list[Path]:
        """Leftover temporary files of interrupted writes (ignored by readers)."""
        d = self.path / ROWS_DIR
        return sorted(p for p in d.iterdir() if p.name.startswith(".")) if d.is_dir() else []

    def read(self, report: ReadReport | None = None) -> ReadReport:
        """Read every chunk into a de-duplicated :class:`ReadReport` (into ``report`` if given).

        Raises:
            StoreError: an unparsable line or a row without an integer ``nb201_index`` (names
                file and line).
            StoreConflictError: two rows for one index disagree.
        """
        rep = report if report is not None else ReadReport()
        rep.n_tmp_ignored += len(self.temp_files())
        for p in self.chunk_files():
            rep.n_files += 1
            try:
                text = p.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise StoreError(f"cannot read chunk {p}: {exc}") from None
            for ln, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise StoreError(f"corrupt chunk {p} line {ln}: {exc}") from None
                if not isinstance(row, dict) or not isinstance(row.get(KEY), int):
                    raise StoreError(f"corrupt chunk {p} line {ln}: not a row with an integer {KEY!r}")
                rep.add(row, f"{p.name}:{ln}", self.rtol)
        return rep

    def done(self) -> set[int]:
        """NB201 indices with a row."""
        return set(self.read().rows)

    def export(self, out: str | os.PathLike, order: Sequence[int] | None = None) -> Path:
        """Write the rows to ``out`` (``.csv`` / ``.parquet``) plus the sidecar ``out + '.json'``
        (header: config, provenance, store key), both atomically.

        Args:
            order: NB201 indices in output order (rows not in the store are skipped); default
                ascending index.

        Raises:
            ValueError: unsupported suffix.
        """
        import pandas as pd

        out = Path(out)
        if out.suffix not in (".csv", ".parquet"):
            raise ValueError(f"export target must end in .csv or .parquet, got {str(out)!r}")
        rows = self.read().rows
        idx = sorted(rows) if order is None else [i for i in dict.fromkeys(order) if i in rows]
        df = pd.DataFrame([rows[i] for i in idx])
        first = [c for c in ("nb201_index", "arch_str", "disconnected", "degenerate") if c in df.columns]
        df = df[first + [c for c in df.columns if c not in first]]
        side = {k: v for k, v in self.header.items() if k != "selection"}
        side.update(n_rows=len(df), store=str(self.path))
        return write_table(df, out, side)


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and validate ``STORE/header.json``.

    Raises:
        StoreError: missing, unparsable, wrong format/version, no store key.
    """
    hp = Path(path) / HEADER
    if not hp.is_file():
        raise StoreError(f"{path} is not a robntk result store (no {HEADER})")
    try:
        h = json.loads(hp.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise StoreError(f"corrupt store header {hp}: {exc}") from None
    if not isinstance(h, dict) or h.get("format") != FORMAT:
        raise StoreError(
            f"{hp} is not a robntk result-store header (format {h.get('format') if isinstance(h, dict) else None!r}, "
            f"expected {FORMAT!r})"
        )
    if h.get("version") != VERSION:
        raise StoreError(f"store {path} has version {h.get('version')!r}; this robntk reads version {VERSION}")
    if not isinstance(h.get("store_key"), str):
        raise StoreError(f"store header {hp} has no store_key")
    return h


#: How often :meth:`ResultStore.open` retries after losing a creation race.
_CREATE_TRIES = 5


def _create(path: Path, h: Mapping[str, Any]) -> bool:
    """Create the store ``path`` with header ``h`` atomically: build it in a hidden temporary
    sibling directory, then rename that into place. Returns False when another process's store
    (or any non-empty directory) took ``path`` first.

    Raises:
        OSError: the parent directory cannot be written (message names ``path``).
    """
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.creating.", dir=parent))
    except OSError as exc:
        raise type(exc)(f"cannot create result store {path}: {exc.strerror or exc}") from None
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; give the store ordinary permissions
        (tmp / ROWS_DIR).mkdir()
        with atomic_write(tmp / HEADER) as fh:
            fh.write(_dump_header(h))
        if path.is_dir() and not (path / HEADER).is_file():
            with contextlib.suppress(OSError):  # an empty rows/ (made by an older robntk): rmdir only if empty
                (path / ROWS_DIR).rmdir()
        try:
            os.rename(tmp, path)  # atomic; replaces an empty directory, fails on a non-empty one
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) or (path / HEADER).is_file():
                return False
            raise type(exc)(f"cannot create result store {path}: {exc.strerror or exc}") from None
        return True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


#: Header fields that are parts of a store key, with the names used in mismatch messages.
KEY_PARTS: dict[str, str] = {
    "config_digest": "config digest",
    "batch_sha256_16": "batch hash",
    "batch": "batch hash",
    "param_definition": "parameter definition",
    "params": "parameter definition",
}


def _short(v: Any, width: int = 80) -> str:
    text = "absent" if v is _ABSENT else json.dumps(v, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


_ABSENT = object()


def key_differences(
    stored: Mapping[str, Any], new: Mapping[str, Any], names: tuple[str, str] = ("stored", "now")
) -> list[str]:
    """The parts of two store headers that differ, as ``'<part>: stored X, now Y'`` (``names``
    label the two sides): the key parts of :data:`KEY_PARTS` (config digest, batch hash,
    parameter definition), then every field of ``config`` (a config's batch hash is named as
    such). Parts present in neither header are not compared."""
    out = []
    for k, label in KEY_PARTS.items():
        a, b = stored.get(k, _ABSENT), new.get(k, _ABSENT)
        if (a is not _ABSENT or b is not _ABSENT) and a != b:
            out.append(f"{label} ({k}): {names[0]} {_short(a)}, {names[1]} {_short(b)}")
    a, b = stored.get("config"), new.get("config")
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b)):
            u, v = a.get(k, _ABSENT), b.get(k, _ABSENT)
            if u != v:
                label = f"{KEY_PARTS[k]} (config.{k})" if k in KEY_PARTS else f"config.{k}"
                out.append(f"{label}: {names[0]} {_short(u)}, {names[1]} {_short(v)}")
    return out


def mismatch_message(path: Path, stored: Mapping[str, Any], store_key: str, header: Mapping[str, Any] | None) -> str:
    """The message of :class:`StoreMismatchError` when ``path`` (header ``stored``) holds another
    key than ``store_key``: which parts differ (:func:`key_differences` against the caller's
    ``header``), else the stored configuration."""
    diffs = key_differences(stored, header) if header else []
    what = "; ".join(diffs) if diffs else f"its config: {json.dumps(stored.get('config'), sort_keys=True, default=str)}"
    return (
        f"store {path} was written with a different configuration: {what} (store key {stored['store_key']} "
        f"!= {store_key}); use another store directory, or the same configuration to resume"
    )


@dataclass
class MergeReport:
    """Summary of :func:`merge_stores`.

    Attributes:
        n_sources: stores merged. n_rows: rows in the result. n_duplicates: identical rows seen
        more than once. missing: indices of the union of the sources' selections without a row.
        out: the merged store.
    """

    n_sources: int
    n_rows: int
    n_duplicates: int
    missing: list[int]
    out: Path


def merge_stores(sources: Sequence[str | os.PathLike], out: str | os.PathLike, rtol: float = 0.0) -> MergeReport:
    """Merge shard stores into ``out`` (created, or extended if it is a store with the same key).

    Overlapping shards never double-count (rows are keyed by ``nb201_index``); rows that differ
    raise :class:`StoreConflictError`; different store keys raise :class:`StoreMismatchError`.

    Raises:
        StoreError: no sources, a source is not a store / is corrupt, ``out`` is a non-store
            directory.
    """
    if not sources:
        raise StoreError("merge needs at least one source store")
    stores = []
    for s in sources:
        h = read_header(s)
        stores.append(ResultStore(Path(s), h, rtol))
    key = stores[0].header["store_key"]
    for st in stores[1:]:
        if st.header["store_key"] != key:
            diffs = key_differences(stores[0].header, st.header, names=(str(stores[0].path), str(st.path)))
            what = (
                "; ".join(diffs)
                if diffs
                else f"{json.dumps(st.header.get('config'), sort_keys=True)} vs "
                f"{json.dumps(stores[0].header.get('config'), sort_keys=True)}"
            )
            raise StoreMismatchError(
                f"cannot merge {st.path} (store key {st.header['store_key']}) with {stores[0].path} "
                f"(store key {key}): they were scored with different configurations ({what})"
            )
    rep = ReadReport()
    for st in stores:
        st.read(rep)
    header = {
        k: v for k, v in stores[0].header.items() if k not in ("format", "version", "store_key", "created", "shard")
    }
    selection: list[int] = []
    for st in stores:
        selection += list(st.header.get("selection") or [])
    header["selection"] = sorted(set(selection))
    header["merged_from"] = [str(st.path) for st in stores]
    dest = ResultStore.open(out, key, header, rtol=rtol)
    if Path(out).resolve() not in {st.path.resolve() for st in stores}:
        dest.read(rep)  # existing rows of the destination take part in the conflict check
    dest_chunks = dest.chunk_files()
    new = dest.append([rep.rows[i] for i in sorted(rep.rows)])
    for p in dest_chunks:  # fold the destination's own chunks into the new one
        if p != new:
            p.unlink(missing_ok=True)
    missing = sorted(set(header["selection"]) - set(rep.rows))
    return MergeReport(len(stores), len(rep.rows), rep.n_duplicates, missing, Path(out))


def _dump_header(h: Mapping[str, Any]) -> str:
    """Header as indented JSON with the (long) ``selection`` list on one line."""
    mark = "\u0000SELECTION\u0000"
    body = json.dumps({**h, "selection": mark} if "selection" in h else dict(h), indent=1, sort_keys=True, default=str)
    if "selection" in h:
        body = body.replace(json.dumps(mark), json.dumps(h["selection"], separators=(",", ":")))
    return body + "\n"


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    """Row with numpy scalars converted to Python (float/int/bool/str)."""
    out = {}
    for k, v in row.items():
        if hasattr(v, "item") and not isinstance(v, (str, bytes)):
            v = v.item()
        out[k] = v
    return out
