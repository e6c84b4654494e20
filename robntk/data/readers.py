"""Low-level image-dataset readers: pickled batch files (CIFAR python format, ImageNet16), folders
and tar archives of PNG/JPEG images (``split/class/file``), and decoded ``.npz`` arrays.

Every reader returns ``(x, y)``: x uint8 (n, side, side, 3) RGB, y int64 (n,), and raises
``FileNotFoundError`` / ``ValueError`` naming the file and what was expected.
:mod:`robntk.data.datasets` picks the reader for each dataset and split.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

#: Standard CIFAR-10 label order (label id = position).
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_EXTS: tuple[str, ...] = (".png", ".jpg", ".jpeg")


# --------------------------------------------------------------------------- small helpers
def _check_split(split: str, allowed: Sequence[str]) -> str:
    if split not in allowed:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(map(repr, allowed))}")
    return split


def _apply_limit(x: np.ndarray, y: np.ndarray, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    if limit is None:
        return x, y
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
        raise ValueError(f"limit must be a non-negative int or None, got {limit!r}")
    return x[:limit], y[:limit]


def _check_limit(limit) -> None:
    _apply_limit(np.empty(0), np.empty(0), limit)


def _load_pickle(path: Path, encoding: str) -> dict:
    """Unpickle one batch file; ValueError naming the file if it is truncated or not a dict."""
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh, encoding=encoding)
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated / garbage pickles raise many different types
        raise ValueError(f"corrupt pickle file {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"corrupt batch file {path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def _entry(d: dict, key: str, path: Path):
    """``d[key]`` accepting both str and bytes keys (py2 pickles loaded with encoding='bytes')."""
    for k in (key, key.encode()):
        if k in d:
            return d[k]
    keys = ", ".join(repr(k) for k in list(d)[:10])
    raise ValueError(f"corrupt batch file {path}: no {key!r} entry (keys: {keys})")


def _batch_arrays(path: Path, label_key: str, side: int, encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR/ImageNet16 pickle batch → x (N, side, side, 3) uint8, y (N,) int64."""
    d = _load_pickle(path, encoding)
    data = np.asarray(_entry(d, "data", path))
    labels = np.asarray(_entry(d, label_key, path))
    n_feat = 3 * side * side
    if data.ndim != 2 or data.shape[1] != n_feat or data.dtype != np.uint8:
        raise ValueError(
            f"corrupt batch file {path}: 'data' must be uint8 of shape (N, {n_feat}), got {data.dtype} {data.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"corrupt batch file {path}: {label_key!r} must be {data.shape[0]} integers, "
            f"got {labels.dtype} {labels.shape}"
        )
    x = data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), labels.astype(np.int64)


def _read_batches(
    directory: Path, files: Sequence[str], label_key: str, side: int, encoding: str, source_hint: str
) -> tuple[np.ndarray, np.ndarray]:
    if not directory.is_dir():
        raise FileNotFoundError(f"dataset directory not found: {directory}. Obtain it from {source_hint}.")
    missing = [f for f in files if not (directory / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"dataset files missing in {directory}: {', '.join(missing)}. Obtain them from {source_hint}."
        )
    xs, ys = zip(*(_batch_arrays(directory / f, label_key, side, encoding) for f in files))
    return np.concatenate(xs), np.concatenate(ys)


def _decode_image(data: bytes, name: str, side: int) -> np.ndarray:
    """Decode PNG/JPEG bytes with Pillow to RGB uint8 (side, side, 3); ValueError naming ``name``."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as exc:
        raise ValueError(f"cannot decode image {name}: {type(exc).__name__}: {exc}") from None
    if arr.shape != (side, side, 3):
        raise ValueError(f"image {name} has shape {arr.shape}, expected ({side}, {side}, 3)")
    return arr


def _class_selection(classes: Iterable[str | int] | None) -> list[int]:
    """Class names/ids → sorted list of CIFAR-10 label ids. ValueError for unknown classes."""
    if classes is None:
        return list(range(len(CIFAR10_CLASSES)))
    if isinstance(classes, (str, int)):
        classes = [classes]
    ids = set()
    for c in classes:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c < len(CIFAR10_CLASSES):
            ids.add(int(c))
        elif isinstance(c, str) and c in CIFAR10_CLASSES:
            ids.add(CIFAR10_CLASSES.index(c))
        else:
            raise ValueError(f"unknown CIFAR-10 class {c!r}; allowed: {', '.join(CIFAR10_CLASSES)} or ids 0..9")
    return sorted(ids)


def _select_members(
    entries: Iterable[tuple[str, str, str]], class_ids: list[int], limit: int | None, where: str
) -> list[tuple[int, str, str]]:
    """(key, class_name, file_name) triples → the selected ones as (label, file_name, key),
    ordered by label then file name, truncated to ``limit``."""
    chosen = []
    for key, cls, fname in entries:
        if cls not in CIFAR10_CLASSES:
            raise ValueError(f"unknown CIFAR-10 class folder {cls!r} in {where}; allowed: {', '.join(CIFAR10_CLASSES)}")
        label = CIFAR10_CLASSES.index(cls)
        if label in class_ids:
            chosen.append((label, fname, key))
    chosen.sort()
    return chosen[:limit] if limit is not None else chosen


Selector = Callable[[np.ndarray], np.ndarray]


def _apply_select(chosen: list[tuple[int, str, str]], select: Selector | None) -> list[tuple[int, str, str]]:
    """The members of ``chosen`` at ``select(labels)`` (all when ``select`` is None)."""
    if select is None:
        return chosen
    idx = np.asarray(select(np.asarray([lab for lab, _, _ in chosen], np.int64)))
    return [chosen[int(i)] for i in idx]


def _stack(images: list[np.ndarray], labels: list[int], side: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack(images) if images else np.zeros((0, side, side, 3), np.uint8)
    return x, np.asarray(labels, dtype=np.int64)


# --------------------------------------------------------------------------- folder / tar readers
def read_image_folder(
    split_dir: str | os.PathLike,
    classes: Iterable[str | int] | None = None,
    limit: int | None = None,
    side: int = 32,
    select: Selector | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR-10 image folder ``split_dir/<class_name>/*.png|jpg|jpeg``.

    Class ids follow :data:`CIFAR10_CLASSES` (standard CIFAR-10 order, not alphabetical); images
    are ordered by class id, then by file name, and decoded with Pillow to RGB. Missing class
    folders are allowed (partial datasets); an unknown class folder is an error.

    Args:
        split_dir: directory holding the class folders (e.g. ``CIFAR-10-images/test``).
        classes: optional subset of class names or ids to read (labels keep their standard id).
        limit: read at most this many images (the first in the order above); only these are decoded.
        side: expected image side in pixels.
        select: ``select(labels) -> indices``: keep (and decode) only these positions of the
            listing (after ``classes``/``limit``), e.g. a class-balanced subset
            (:func:`balanced_subset`); the labels are known from the folder names before any
            image is decoded.

    Returns:
        x uint8 (N, side, side, 3), y int64 (N,).

    Raises:
        FileNotFoundError: ``split_dir`` is not a directory.
        ValueError: unknown class folder or class, undecodable image, wrong image size, or no image.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {split_dir} (expected <split>/<class_name>/*.jpg|png)")
    _check_limit(limit)
    class_ids = _class_selection(classes)
    entries = []
    for cdir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        for f in cdir.iterdir():
            if f.is_file() and f.suffix.lower() in IMAGE_EXTS:
                entries.append((str(f), cdir.name, f.name))
    if not entries:
        raise ValueError(f"no images found in {split_dir} (expected <class_name>/*.png|jpg|jpeg)")
    chosen = _apply_select(_select_members(entries, class_ids, limit, str(split_dir)), select)
    images = [_decode_image(Path(key).read_bytes(), key, side) for _, _, key in chosen]
    return _stack(images, [lab for lab, _, _ in chosen], side)


_TAR_MEMBER = re.compile(r"^(?:.*/)?(?P<split>[^/]+)/(?P<cls>[^/]+)/(?P<file>[^/]+)$")


def read_image_tar(
    archive: str | os.PathLike,
    split: str,
    classes: Iterable[str | int] | None = None,
    limit: int | None = None,
    side: int = 32,
    select: Selector | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read CIFAR-10 images from a tar / tar.gz archive with members ``[prefix/]<split>/<class>/<file>``.

    Same ordering and labels as :func:`read_image_folder` (class id, then file name). The archive
    is streamed twice: once to list member names (cheap), once to decode only the selected
    members, so ``limit``/``classes`` keep reading a few images fast even from the 50k train tar.

    Args:
        archive: path of the archive (any compression :mod:`tarfile` understands).
        split: the ``<split>`` path component to read (``'train'`` or ``'test'``).
        classes, limit, side, select: as in :func:`read_image_folder` (only the selected members
            are decoded).

    Returns:
        x uint8 (N, side, side, 3), y int64 (N,).

    Raises:
        FileNotFoundError: the archive does not exist.
        ValueError: not a readable tar archive, no images of ``split`` in it, unknown class
            folder, undecodable image (message names ``archive:member``).
    """
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"image archive not found: {archive}")
    _check_limit(limit)
    class_ids = _class_selection(classes)
    try:
        with tarfile.open(archive, "r:*") as tf:
            entries = []
            for m in tf:
                mt = _TAR_MEMBER.match(m.name)
                if m.isfile() and mt and mt["split"] == split and Path(mt["file"]).suffix.lower() in IMAGE_EXTS:
                    entries.append((m.name, mt["cls"], mt["file"]))
    except (tarfile.TarError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot read tar archive {archive}: {type(exc).__name__}: {exc}") from None
    if not entries:
        raise ValueError(
            f"no images of split {split!r} in {archive} (expected members [prefix/]{split}/<class>/<file>)"
        )
    chosen = _apply_select(_select_members(entries, class_ids, limit, str(archive)), select)
    want = {key: i for i, (_, _, key) in enumerate(chosen)}
    images: list[np.ndarray | None] = [None] * len(chosen)
    try:
        with tarfile.open(archive, "r:*") as tf:
            found = 0
            for m in tf:
                i = want.get(m.name)
                if i is None or images[i] is not None:
                    continue
                fh = tf.extractfile(m)
                images[i] = _decode_image(fh.read(), f"{archive}:{m.name}", side)
                found += 1
                if found == len(chosen):
                    break
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError(f"cannot read tar archive {archive}: {type(exc).__name__}: {exc}") from None
    return _stack(images, [lab for lab, _, _ in chosen], side)


def read_npz(path: str | os.PathLike, side: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Read decoded images from an npz with keys ``x`` (N, side, side, 3) uint8 and ``y`` (N,).

    This is the layout of ``cifar10_jpeg/cifar10_*_decoded*.npz`` (which also has ``names``,
    ignored here). Loaded with ``allow_pickle=False``.

    Raises:
        FileNotFoundError: missing file.
        ValueError: not a valid npz, missing keys, wrong shapes/dtypes (message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"npz file not found: {path}")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as d:
            x, y = d["x"], d["y"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"corrupt npz file {path}: {type(exc).__name__}: {exc}") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (side, side, 3):
        raise ValueError(f"corrupt npz file {path}: 'x' must be uint8 (N, {side}, {side}, 3), got {x.dtype} {x.shape}")
    if y.ndim != 1 or y.shape[0] != x.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"corrupt npz file {path}: 'y' must be {x.shape[0]} integers, got {y.dtype} {y.shape}")
    return x, y.astype(np.int64)
