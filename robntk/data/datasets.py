"""Image readers for CIFAR-10, CIFAR-100 and NB201's ImageNet16-120, in the formats people have.

Every loader returns ``(x, y)`` with ``x`` uint8 of shape (N, H, W, 3) (NHWC, RGB, pixel values
0…255) and ``y`` int64 of shape (N,). :func:`fixed_batch` turns one of them into the deterministic
float32 batch in [0, 1] that NTK scoring feeds to every architecture.

Formats read (searched inside the data directory, see :mod:`robntk.core.paths`):

=================  ==========================================================================
CIFAR-10           (a) official python batches ``cifar-10-batches-py/`` (``data_batch_1..5``,
                   ``test_batch``); (b) decoded npz ``cifar10_jpeg/cifar10_{test_decoded,
                   train_decoded_10k}.npz``; (c) image folders ``.../<split>/<class>/*.png|jpg``;
                   (d) tar(.gz) archives of such folders, e.g.
                   ``cifar10_jpeg/CIFAR-10-images_{train,test}_jpg.tar.gz``.
CIFAR-100          official ``cifar-100-python/{train,test}`` pickles.
ImageNet16-120     NB201's ``ImageNet16/{train_data_batch_1..10, val_data}`` pickles.
=================  ==========================================================================

The official archives are at https://www.cs.toronto.edu/~kriz/cifar.html (CIFAR) and in the
NAS-Bench-201 authors' release (ImageNet16, linked from github.com/D-X-Y/NAS-Bench-201 and
github.com/TT2408/nasrobbench201). Pickle files are read with :mod:`pickle`: only load files
from a source you trust.

Training data (:func:`load_split`, :func:`balanced_subset`, :func:`check_data`,
:func:`epoch_permutation`, :func:`augment`): the class-balanced deterministic subsets that
``robntk train`` / ``robntk evaluate`` use (only the selected JPEGs are decoded), the data order
of an epoch and the on-device RandomCrop + flip of NAS-RobBench-201's ``utils_data.py``.

Errors: a missing file/directory raises :class:`FileNotFoundError` naming it, the
``robntk data fetch NAME`` command that brings it (looked up in the registry
:mod:`robntk.data.sources`; ``cifar10``, ``cifar100``) or how to obtain it by hand (ImageNet16),
and its source; with the CLI's ``--download`` the fetchable ones are fetched instead
(:func:`robntk.core.paths.data_files`). A corrupt file (truncated pickle, bad npz, undecodable image, wrong array shapes) raises
:class:`ValueError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from robntk.core import paths
from robntk.core.registry import DATASETS, dataset_info
from robntk.data.readers import (
    Selector,
    _apply_limit,
    _check_limit,
    _check_split,
    _read_batches,
    read_image_folder,
    read_image_tar,
    read_npz,
)

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
IMAGENET16_SOURCE = (
    "the NAS-Bench-201 authors' release of ImageNet16 (downsampled 16x16 ImageNet; linked from "
    "github.com/D-X-Y/NAS-Bench-201 and github.com/TT2408/nasrobbench201, folder 'ImageNet16')"
)
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
CIFAR10_SOURCES: tuple[str, ...] = ("auto", "batches", "npz", "folder", "tar")
#: Image side length per dataset.
IMAGE_SIZE: dict[str, int] = {k: v.image_size for k, v in DATASETS.items()}

_CIFAR10_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_CIFAR10_NPZ = {"train": "cifar10_jpeg/cifar10_train_decoded_10k.npz", "test": "cifar10_jpeg/cifar10_test_decoded.npz"}
_CIFAR10_TARS = {
    "train": (
        "cifar10_jpeg/CIFAR-10-images_train_jpg.tar.gz",
        "cifar10_jpeg/CIFAR-10-images_train_jpg.tar",
        "CIFAR-10-images_train_jpg.tar.gz",
        "CIFAR-10-images_train.tar.gz",
    ),
    "test": (
        "cifar10_jpeg/CIFAR-10-images_test_jpg.tar.gz",
        "cifar10_jpeg/CIFAR-10-images_test_jpg.tar",
        "CIFAR-10-images_test_jpg.tar.gz",
        "CIFAR-10-images_test.tar.gz",
    ),
}
_CIFAR10_FOLDER_ROOTS = ("CIFAR-10-images", "cifar10_jpeg/CIFAR-10-images", "cifar10_images", "cifar10")
_IMAGENET16_FILES = {"train": [f"train_data_batch_{i}" for i in range(1, 11)], "val": ["val_data"]}


# --------------------------------------------------------------------------- CIFAR-10
def _infer_source(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        if any((path / f).is_file() for f in ("data_batch_1", "test_batch")):
            return "batches"
        return "folder"
    if name.endswith(".npz"):
        return "npz"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return "tar"
    raise ValueError(
        f"cannot tell the CIFAR-10 format of {path}: expected a cifar-10-batches-py directory, an image "
        "folder, a .npz file or a .tar(.gz) archive; pass source= explicitly"
    )


def _folder_split_dir(path: Path, split: str) -> Path:
    """An image folder path is either the split directory itself or its parent."""
    return path / split if (path / split).is_dir() else path


def load_cifar10(
    split: str,
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    path: str | os.PathLike | None = None,
    limit: int | None = None,
    classes: Iterable[str | int] | None = None,
    allow_subset: bool = True,
    select: Selector | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load CIFAR-10 images and labels.

    Sources (``source='auto'`` tries them in this order inside the data directory):

    * ``'batches'``: official python batches ``cifar-10-batches-py/`` (``data_batch_1..5`` for
      train, ``test_batch`` for test; pickled dicts with ``b'data'`` (N, 3072) uint8 flattened
      CHW and ``b'labels'``), exactly as ``torchvision.datasets.CIFAR10`` reads them. File order.
    * ``'npz'``: decoded JPEG re-encodings ``cifar10_jpeg/cifar10_test_decoded.npz`` (all 10,000
      test images) / ``cifar10_jpeg/cifar10_train_decoded_10k.npz``. NOTE: the train npz is a
      **10,000-image subset** (the first 1,000 files of each class), not the 50,000 train set;
      pass ``allow_subset=False`` (auto skips it) or ``source='tar'`` to read all 50,000 from
      the train tar. The JPEGs are lossy (quality 75) re-encodings, not bit-identical to the
      official arrays.
    * ``'folder'``: image folders ``<root>/<split>/<class_name>/*.png|jpg`` with ``<root>`` one of
      ``CIFAR-10-images``, ``cifar10_jpeg/CIFAR-10-images``, ``cifar10_images``, ``cifar10``.
    * ``'tar'``: tar(.gz) archives of such folders, e.g. the shared
      ``cifar10_jpeg/CIFAR-10-images_{train,test}_jpg.tar.gz`` (prefix ``CIFAR-10-images/``).

    Folder/tar/npz images are ordered by class (standard order :data:`CIFAR10_CLASSES`), then
    file name; decoding uses Pillow (RGB). Another JPEG decoder may differ by ±1–2 per pixel.

    Args:
        split: ``'train'`` or ``'test'``.
        data_dir: data directory (see :func:`robntk.core.paths.data_dir`).
        source: one of :data:`CIFAR10_SOURCES`.
        path: explicit location overriding the data-dir search: the batches directory, the npz
            file, the image folder (split directory or its parent) or the archive. With
            ``source='auto'`` the format is inferred from the path.
        limit: keep only the first ``limit`` images (of the source's order); for folders/tars
            only those are decoded.
        classes: folder/tar only: subset of class names/ids to read (labels keep their ids).
        allow_subset: in auto mode, accept the 10k train npz subset (default True).
        select: ``select(labels) -> indices`` applied after ``limit``/``classes``: folders and
            tars decode only the selected images (:func:`read_image_folder`); the other
            sources index the loaded arrays.

    Returns:
        x uint8 (N, 32, 32, 3) NHWC RGB, y int64 (N,) in 0..9.

    Raises:
        ValueError: unknown split/source, ``classes`` with a source other than folder/tar,
            corrupt file (named).
        FileNotFoundError: no source found (the message lists the places searched and names
            ``robntk data fetch cifar10``, ``--download`` and the source,
            https://www.cs.toronto.edu/~kriz/cifar.html). With ``--download`` on
            (:func:`robntk.core.paths.download_enabled`), ``source`` 'auto' or 'batches' fetches the
            official batches instead.
    """
    _check_split(split, ("train", "test"))
    if source not in CIFAR10_SOURCES:
        raise ValueError(f"unknown CIFAR-10 source {source!r}; allowed: {', '.join(CIFAR10_SOURCES)}")
    _check_limit(limit)
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"CIFAR-10 path not found: {p}")
        src = _infer_source(p) if source == "auto" else source
        return _load_cifar10_from(src, p, split, limit, classes, select)

    root = paths.data_dir(data_dir)
    searched = []
    candidates: list[tuple[str, Path]] = [("batches", root / "cifar-10-batches-py")]
    if split == "test" or allow_subset or source == "npz":
        candidates.append(("npz", root / _CIFAR10_NPZ[split]))
    candidates += [("folder", root / r / split) for r in _CIFAR10_FOLDER_ROOTS]
    candidates += [("tar", root / t) for t in _CIFAR10_TARS[split]]
    batches = [f"cifar-10-batches-py/{f}" for f in _CIFAR10_BATCHES[split]]
    for src, p in candidates:
        if source != "auto" and src != source:
            continue
        searched.append(str(p))
        ok = p.is_dir() if src in ("batches", "folder") else p.is_file()
        if ok:
            if src == "batches":  # an incomplete directory: fetched with --download, else named
                paths.data_files(batches, data_dir)
            return _load_cifar10_from(src, p, split, limit, classes, select)
    if source in ("auto", "batches") and paths.download_enabled():  # fetch the official batches
        paths.data_files(batches, data_dir)
        return _load_cifar10_from("batches", root / "cifar-10-batches-py", split, limit, classes, select)
    wanted = {
        "npz": _CIFAR10_NPZ[split],
        "tar": _CIFAR10_TARS[split][0],
        "folder": f"{_CIFAR10_FOLDER_ROOTS[0]}/{split}",
    }.get(source, "cifar-10-batches-py")
    raise paths.missing_error(
        wanted, data_dir, lead=(f"no CIFAR-10 {split} data found (source={source!r}); searched: {'; '.join(searched)}")
    )


def _load_cifar10_from(src: str, p: Path, split: str, limit, classes, select) -> tuple[np.ndarray, np.ndarray]:
    if classes is not None and src not in ("folder", "tar"):
        raise ValueError(f"classes= is only supported for the folder and tar sources, not {src!r}")
    if src == "folder":
        return read_image_folder(_folder_split_dir(p, split), classes=classes, limit=limit, side=32, select=select)
    if src == "tar":
        return read_image_tar(p, split, classes=classes, limit=limit, side=32, select=select)
    if src == "batches":
        x, y = _apply_limit(*_read_batches(p, _CIFAR10_BATCHES[split], "labels", 32, "bytes", CIFAR_URL), limit)
    else:
        x, y = _apply_limit(*read_npz(p, 32), limit)
    if select is None:
        return x, y
    idx = np.asarray(select(y))
    return x[idx], y[idx]


# --------------------------------------------------------------------------- CIFAR-100
def load_cifar100(
    split: str,
    data_dir: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load CIFAR-100 from the official python version ``cifar-100-python/{train,test}``.

    Each file is a pickled dict with ``b'data'`` (N, 3072) uint8 flattened CHW and
    ``b'fine_labels'`` (the 100-class labels used by NB201 / NAS-RobBench-201; coarse labels are
    ignored), as ``torchvision.datasets.CIFAR100`` reads it.

    Args:
        split: ``'train'`` (50,000) or ``'test'`` (10,000).
        data_dir: data directory; ``path`` overrides it with the ``cifar-100-python`` directory.
        limit: keep the first ``limit`` images (file order).

    Returns:
        x uint8 (N, 32, 32, 3), y int64 (N,) in 0..99.

    Raises:
        ValueError: unknown split, corrupt file (named). FileNotFoundError: missing files
        (the message names them, ``robntk data fetch cifar100``, ``--download`` and
        https://www.cs.toronto.edu/~kriz/cifar.html); with ``--download`` on they are fetched.
    """
    _check_split(split, ("train", "test"))
    _check_limit(limit)
    if path is None:  # fetched with --download, else the message names `robntk data fetch cifar100`
        directory = paths.data_file(f"cifar-100-python/{split}", data_dir).parent
    else:
        directory = Path(path).expanduser()
    x, y = _read_batches(directory, [split], "fine_labels", 32, "bytes", f"{CIFAR_URL} (cifar-100-python.tar.gz)")
    return _apply_limit(x, y, limit)


# --------------------------------------------------------------------------- ImageNet16
def load_imagenet16(
    split: str,
    data_dir: str | os.PathLike | None = None,
    num_classes: int | None = 120,
    path: str | os.PathLike | None = None,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load NB201's ImageNet16 (16×16 downsampled ImageNet), e.g. ImageNet16-120.

    Mirrors ``ImageNet16`` of NAS-Bench-201 (``xautodl/datasets/DownsampledImageNet.py``): the
    directory ``ImageNet16/`` holds ``train_data_batch_1..10`` and ``val_data``, each a pickle
    dict ``{'data': (N, 768) uint8 (3×16×16 CHW flattened), 'labels': list of ints 1..1000}``.
    With ``use_num_of_class_only=num_classes`` only labels 1..num_classes are kept, and labels are
    shifted to 0..num_classes-1 (NB201 returns ``target - 1``). ImageNet16-120 (num_classes=120)
    has 151,700 train and 6,000 val images.

    Args:
        split: ``'train'`` or ``'val'``; ``'test'`` is accepted as an alias of ``'val'`` (NB201's
            ImageNet16-120 test/valid splits are both halves of ``val_data``, and
            NAS-RobBench-201 reports its ``val_*`` metrics on all of it).
        data_dir: data directory; ``path`` overrides it with the ``ImageNet16`` directory.
        num_classes: keep labels 1..num_classes (1..1000); ``None`` keeps all 1000.
        limit: keep the first ``limit`` images after class filtering (file order).

    Returns:
        x uint8 (N, 16, 16, 3), y int64 (N,) in 0..num_classes-1.

    Raises:
        ValueError: unknown split, bad num_classes, corrupt file (named), labels outside 1..1000.
        FileNotFoundError: missing directory/files (the message names them and says how to obtain
            them: a manual download, which neither ``robntk data fetch`` nor ``--download`` can do).
    """
    _check_split(split, ("train", "val", "valid", "test"))
    split = "train" if split == "train" else "val"
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or not 1 <= num_classes <= 1000
    ):
        raise ValueError(f"num_classes must be an int in 1..1000 or None, got {num_classes!r}")
    _check_limit(limit)
    if path is None:  # not fetchable: the message says how to obtain the folder
        directory = paths.data_files([f"ImageNet16/{f}" for f in _IMAGENET16_FILES[split]], data_dir)[0].parent
    else:
        directory = Path(path).expanduser()
    x, y = _read_batches(directory, _IMAGENET16_FILES[split], "labels", 16, "latin1", IMAGENET16_SOURCE)
    if y.size and (y.min() < 1 or y.max() > 1000):
        raise ValueError(f"corrupt ImageNet16 data in {directory}: labels must be in 1..1000, got {y.min()}..{y.max()}")
    if num_classes is not None:
        keep = y <= num_classes
        x, y = x[keep], y[keep]
    return _apply_limit(x, y - 1, limit)


# --------------------------------------------------------------------------- dispatch
def canonical_dataset_name(name: str) -> str:
    """Canonical dataset name (case-insensitive; 'imagenet'/'imagenet16' → 'ImageNet16-120').

    Raises:
        ValueError: unknown name (lists :data:`DATASET_NAMES`).
    """
    if isinstance(name, str):
        key = name.strip().lower().replace("_", "-")
        aliases = {
            "cifar10": "cifar10",
            "cifar-10": "cifar10",
            "cifar100": "cifar100",
            "cifar-100": "cifar100",
            "imagenet16-120": "ImageNet16-120",
            "imagenet16": "ImageNet16-120",
            "imagenet": "ImageNet16-120",
        }
        if key in aliases:
            return aliases[key]
    raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASET_NAMES)}")


def load_dataset(
    name: str, split: str, data_dir: str | os.PathLike | None = None, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load ``name`` ∈ {'cifar10', 'cifar100', 'ImageNet16-120'} with each loader's default source.

    CIFAR-10 uses :func:`load_cifar10` with ``source='auto'`` (so on the shared data bundle the
    train split is the 10k npz subset), CIFAR-100 :func:`load_cifar100`, ImageNet16-120
    :func:`load_imagenet16` with ``num_classes=120`` (``split='test'`` means ``val_data``).

    Returns:
        x uint8 (N, H, W, 3), y int64 (N,); H = W = :data:`IMAGE_SIZE` [name].

    Raises:
        ValueError: unknown name/split, corrupt files. FileNotFoundError: data missing.
    """
    name = canonical_dataset_name(name)
    if name == "cifar10":
        return load_cifar10(split, data_dir, limit=limit)
    if name == "cifar100":
        return load_cifar100(split, data_dir, limit=limit)
    return load_imagenet16(split, data_dir, num_classes=120, limit=limit)


def balanced_indices(y: np.ndarray, batch_size: int, seed: int = 0) -> np.ndarray:
    """Deterministic class-balanced random sample of ``batch_size`` distinct indices into ``y``.

    Every class present gets ``batch_size // K`` images (K = number of classes present); the
    remaining ``batch_size % K`` slots go to randomly chosen classes; if a class has too few
    images, its unused slots are handed to the others (so counts differ by at most one whenever
    every class has enough images). Within a class the images are a uniformly random subset.
    The result is shuffled, so classes are interleaved.

    Args:
        y: (N,) integer labels.
        batch_size: 1..N.
        seed: seed of :func:`numpy.random.default_rng`.

    Returns:
        int64 (batch_size,) indices.

    Raises:
        ValueError: batch_size < 1 or > N (message names both numbers).
    """
    y = np.asarray(y)
    n = int(y.shape[0])
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in 1..{n} (images available), got {batch_size!r}")
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    pools = [rng.permutation(np.flatnonzero(y == c)) for c in classes]
    quota = np.full(len(classes), batch_size // len(classes))
    quota[rng.choice(len(classes), batch_size % len(classes), replace=False)] += 1
    avail = np.array([len(p) for p in pools])
    take = np.minimum(quota, avail)
    short = batch_size - int(take.sum())
    while short > 0:  # hand leftover slots to classes with spare images, one each per round
        spare = np.flatnonzero(take < avail)
        extra = rng.permutation(spare)[:short]
        take[extra] += 1
        short -= len(extra)
    idx = np.concatenate([p[:t] for p, t in zip(pools, take)])
    return rng.permutation(idx).astype(np.int64)


def fixed_batch(
    name: str, batch_size: int, seed: int = 0, data_dir: str | os.PathLike | None = None, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """The fixed input batch used for NTK scoring (the same batch for every architecture).

    Loads ``name``/``split`` with :func:`load_dataset` and draws a deterministic class-balanced
    random sample with :func:`balanced_indices` (same ``seed`` and same data → same batch).
    Pixels are scaled to [0, 1] (divide by 255, no mean/std normalisation: the networks of
    :mod:`robntk.nb201.network` normalise internally, like NAS-RobBench-201's ``Normalize`` layer).

    Args:
        name: 'cifar10', 'cifar100' or 'ImageNet16-120'.
        batch_size: number of images, 1..N.
        seed: sampling seed.
        data_dir: data directory.
        split: dataset split (default 'train'; for CIFAR-10 on the shared bundle this is the 10k
            train subset).

    Returns:
        x float32 (B, H, W, 3) in [0, 1], y int32 (B,).

    Raises:
        ValueError: batch_size < 1 or larger than the number of images (both named); unknown
            dataset/split; corrupt data. FileNotFoundError: data missing.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    x, y = load_dataset(name, split, data_dir)
    if batch_size > len(y):
        raise ValueError(f"batch_size {batch_size} exceeds the {len(y)} images available in {name} {split!r}")
    idx = balanced_indices(y, batch_size, seed)
    return x[idx].astype(np.float32) / np.float32(255.0), y[idx].astype(np.int32)


# --------------------------------------------------------------------------- training data
def balanced_subset(y: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray:
    """Indices of a deterministic class-balanced subset of ``limit`` examples (sorted).

    Classes are visited round-robin, each in a seeded random order, so the subset is balanced
    even when the data are stored sorted by class (as the JPEG CIFAR-10 copy is). ``limit``
    None or ≥ len(y) returns all indices.

    Raises:
        ValueError: limit < 1.
    """
    n = len(y)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"limit must be an integer >= 1 (or None), got {limit!r}")
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    yp = np.asarray(y)[perm]
    rank = np.empty(n, np.int64)
    for c in np.unique(yp):
        where = np.flatnonzero(yp == c)
        rank[where] = np.arange(len(where))
    order = np.lexsort((yp, rank))  # by rank within class, then class
    return np.sort(perm[order[:limit]])


def load_split(
    dataset: str, split: str, data_dir: str | os.PathLike | None = None, limit: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A split with :func:`load_dataset`'s sources, reduced to the class-balanced deterministic
    subset of ``limit`` images (:func:`balanced_subset` with ``seed``) — the data of
    ``robntk train --train-limit`` and ``robntk evaluate --limit``.

    CIFAR-10 is read with ``load_cifar10(split, allow_subset=False)``: the official batches if
    present, else image folders/tars (all 50,000 train images), never the 10k-image train npz.
    For folders and tars only the selected images are decoded (the labels come from the folder
    names), so a small ``limit`` is fast even from the 50k-image train tar.

    Returns:
        ``(x uint8 (n, H, W, 3), y int64 (n,))``.

    Raises:
        ValueError: unknown dataset/split or bad limit. FileNotFoundError: data not found.
    """
    dataset_info(dataset)
    balanced_subset(np.zeros(0), limit)  # validates limit
    select = (lambda labels: balanced_subset(labels, limit, seed)) if limit is not None else None
    if dataset == "cifar10":  # never silently train on the bundle's 10k-image train npz subset
        x, y = load_cifar10(split, data_dir, allow_subset=False, select=select)
        return np.asarray(x), np.asarray(y, np.int64)
    x, y = load_dataset(dataset, split, data_dir=data_dir)
    idx = balanced_subset(np.asarray(y), limit, seed)
    return np.asarray(x)[idx], np.asarray(y, np.int64)[idx]


def check_data(x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int | None = None) -> None:
    """Validate a training/evaluation set.

    Args:
        x: uint8 (N, H, W, 3) images. y: integer labels (N,) in [0, num_classes).
        batch_size: if given, must be ≤ N.

    Raises:
        ValueError: wrong dtype/shape, label out of range, or batch larger than the data.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be uint8 of shape (N, H, W, 3), got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({len(x)},), got {y.dtype} {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{y.min()}, {y.max()}]")
    if batch_size is not None and batch_size > len(x):
        raise ValueError(
            f"batch_size {batch_size} is larger than the data ({len(x)} images); use batch_size <= {len(x)}"
        )


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """Data order of ``epoch``: ``numpy.random.default_rng([seed, epoch]).permutation(n)``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def augment(key, x, pad: int):
    """RandomCrop(H, padding=pad, zero fill) + RandomHorizontalFlip(0.5), per example, on device.

    Same distribution as torchvision's ``RandomCrop(H, padding=pad)`` followed by
    ``RandomHorizontalFlip()`` (the benchmark's ``utils_data.py``; ``pad`` =
    :attr:`robntk.core.registry.DatasetInfo.crop_pad`); not the same random stream.

    Args:
        key: PRNG key. x: float (B, H, W, C) images (jax array). pad: padding in pixels (≥ 0).

    Returns:
        Augmented images, shape and dtype of ``x``.
    """
    import jax
    import jax.numpy as jnp

    B, H, W, C = x.shape
    k_off, k_flip = jax.random.split(key)
    if pad > 0:
        xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        off = jax.random.randint(k_off, (B, 2), 0, 2 * pad + 1)
        x = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (H, W, C)))(xp, off)
    flip = jax.random.bernoulli(k_flip, 0.5, (B, 1, 1, 1))
    return jnp.where(flip, x[:, :, ::-1, :], x)
