"""Where robntk finds its data, and atomic file writing.

Data location (:func:`resolve_data_dir`), in order of precedence:

1. an explicit ``data_dir`` argument (the CLI's ``--data-dir`` flag),
2. the ``ROBNTK_DATA`` environment variable,
3. ``./data`` relative to the current working directory, when that directory exists,
4. the user data directory (:func:`user_data_dir`): ``$XDG_DATA_HOME/robntk``, else
   ``~/.local/share/robntk`` — where a plain ``robntk data fetch`` puts the files.

``robntk data status|fetch`` resolve the directory the same way, so the files that ``robntk data
fetch`` writes are the files the other commands read. The directory is expected to hold the
layout of the reference data bundle (the registry :mod:`robntk.data.sources` lists every file)::

    nb201_archs/meta.json                      # 15,625 arch strings + isomorphism map
    nasrobbench201/NAS-RobBench-201_html.json  # NAS-RobBench-201, project-page file
    nb201_clean_acc/nats_bench.csv             # NB201 200-epoch standard-training accuracies
    cifar-10-batches-py/data_batch_1 ...       # CIFAR-10, official python batches
    ...

Missing files: :func:`data_file` / :func:`data_files` raise :class:`FileNotFoundError` naming the
file, the data directory and how it was chosen, the ``robntk data fetch NAME`` command that
brings the file (NAME is looked up by the file's relative path in the registry,
:func:`robntk.data.sources.find`) and its source; readers that search several places build the
same sentence with :func:`obtain_hint`. When a fetcher is installed (:func:`set_fetcher`; the
CLI's ``--download`` flag installs :func:`robntk.data.fetch.fetch_missing`), a missing registered
file is fetched into the data directory instead and the reader goes on. This module never imports
:mod:`robntk.data` at import time: the registry is imported inside :func:`obtain_hint`, and the
fetcher is a registered callable.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

DATA_ENV = "ROBNTK_DATA"
DEFAULT_DATA_DIR = Path("data")
XDG_ENV = "XDG_DATA_HOME"

#: How :func:`resolve_data_dir` chose the directory (second element of its result).
HOW_FLAG, HOW_ENV, HOW_CWD, HOW_USER = (
    "--data-dir",
    f"${DATA_ENV}",
    "./data in the working directory",
    "the user data directory",
)

#: ``fetcher(relpaths, root)``: fetch the registry entries holding ``relpaths`` (paths relative to
#: the data directory) into ``root``; None: missing files raise. See :func:`set_fetcher`.
Fetcher = Callable[[Sequence[str], Path], object]
_fetcher: Fetcher | None = None


# --------------------------------------------------------------------------- locations
def user_data_dir() -> Path:
    """``$XDG_DATA_HOME/robntk`` when ``XDG_DATA_HOME`` is an absolute path, else
    ``~/.local/share/robntk`` (the XDG Base Directory Specification,
    https://specifications.freedesktop.org/basedir-spec/latest/). Not created here."""
    xdg = os.environ.get(XDG_ENV, "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "robntk"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The data directory and how it was chosen.

    Args:
        data_dir: explicit directory (the CLI's ``--data-dir``), or None.

    Returns:
        ``(directory, how)``: ``data_dir`` if given (how :data:`HOW_FLAG`), else ``$ROBNTK_DATA``
        (:data:`HOW_ENV`), else ``./data`` if it is a directory (:data:`HOW_CWD`; returned as the
        relative path ``data``), else :func:`user_data_dir` (:data:`HOW_USER`). Nothing is
        created or checked beyond that ``./data`` test.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser(), HOW_FLAG
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser(), HOW_ENV
    if DEFAULT_DATA_DIR.is_dir():
        return DEFAULT_DATA_DIR, HOW_CWD
    return user_data_dir(), HOW_USER


def data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory (see :func:`resolve_data_dir`; not checked for existence here).

    Args:
        data_dir: explicit directory (e.g. the CLI's ``--data-dir``); ``None`` falls back to
            ``$ROBNTK_DATA``, then ``./data`` when it exists, then :func:`user_data_dir`.
    """
    return resolve_data_dir(data_dir)[0]


# --------------------------------------------------------------------------- missing files
def set_fetcher(fetcher: Fetcher | None) -> Fetcher | None:
    """Install the process-wide fetcher that :func:`data_files` calls for missing files (None:
    missing files raise). The CLI's ``--download`` installs
    :func:`robntk.data.fetch.fetch_missing` for the duration of a command (see
    :func:`robntk.data.fetch.download_missing`).

    Returns:
        The fetcher installed before (to restore it).
    """
    global _fetcher
    previous, _fetcher = _fetcher, fetcher
    return previous


def download_enabled() -> bool:
    """True while a fetcher is installed (the CLI's ``--download``)."""
    return _fetcher is not None


def obtain_hint(
    relpath: str,
    data_dir_: str | os.PathLike | None = None,
    *,
    root: Path | None = None,
    n: int = 1,
    download: bool = True,
) -> str:
    """The sentences of a missing-file message that say how to get ``relpath``.

    The registry entry holding ``relpath`` (:func:`robntk.data.sources.find`) gives the
    ``robntk data fetch NAME`` command (with ``--data-dir`` when the directory was given
    explicitly, since the other choices resolve the same way for ``robntk data fetch``), the
    ``--download`` alternative, and the entry's source; an entry that cannot be fetched gives its
    manual instructions instead.

    Args:
        relpath: POSIX path relative to the data directory (a file or a registered folder).
        data_dir_: the explicit data directory, if any (decides the ``--data-dir`` part).
        root: the data directory when it is not the one ``data_dir_`` resolves to (e.g. the
            bundle of an explicit file path); implies ``--data-dir``.
        n: how many files are missing (``it`` / ``them``).
        download: mention ``--download`` (False for readers of an explicitly given file, which
            ``--download`` does not fetch).
    """
    from robntk.data import sources  # late import: core does not depend on robntk.data at import time

    entry = sources.find(relpath)
    if root is None and data_dir_ is not None:
        root = data_dir(data_dir_)
    dir_flag = "" if root is None else f" --data-dir {shlex.quote(str(root))}"
    it = "it" if n == 1 else "them"
    point = f"or point --data-dir / ${DATA_ENV} at a directory that holds '{relpath}'"
    if entry is None:
        return f"Obtain {it} from the robntk reference data bundle, {point}."
    source = f"Source: {entry.source.rstrip('.')}."
    if not entry.fetchable:
        nor = " (nor can --download)" if download else ""
        return f"`robntk data fetch` cannot fetch {it}{nor}: {entry.manual.rstrip('.')}; {point}. {source}"
    rerun = ", or rerun with --download to fetch what is missing and go on" if download else ""
    return (
        f"Obtain {it} from the official source: `robntk data fetch {entry.name}{dir_flag}` downloads and "
        f"verifies {it}{rerun}; {point}. {source}"
    )


_HOW_LONG = {
    HOW_FLAG: "given by --data-dir",
    HOW_ENV: f"from ${DATA_ENV}",
    HOW_CWD: "./data of the working directory",
    HOW_USER: f"the user data directory, as there is no --data-dir, ${DATA_ENV} or ./data",
}


def _where(root: Path, how: str, relpaths: Sequence[str]) -> str:
    """``(data directory ROOT, HOW)``, plus a note when ``./data`` hides the user data directory
    that holds the files."""
    note = ""
    if how == HOW_CWD and all((user_data_dir() / r).is_file() for r in relpaths):
        note = (
            f"; the user data directory {user_data_dir()} holds it but is read only when ./data does not "
            "exist: pass --data-dir"
        )
    return f"(data directory {root}, {_HOW_LONG.get(how, how)}{note})"


def missing_error(
    relpaths: str | Sequence[str], data_dir_: str | os.PathLike | None = None, *, lead: str | None = None
) -> FileNotFoundError:
    """The :class:`FileNotFoundError` of missing data files (returned, for the caller to raise).

    Args:
        relpaths: the missing file(s), relative to the data directory; the first one decides
            the fetch hint (:func:`obtain_hint`).
        data_dir_: the explicit data directory, if any.
        lead: the first sentence (default: ``robntk data file(s) not found: PATH(S)``).
    """
    rels = [relpaths] if isinstance(relpaths, str) else list(relpaths)
    root, how = resolve_data_dir(data_dir_)
    if lead is None:
        lead = (
            f"robntk data file not found: {root / rels[0]}"
            if len(rels) == 1
            else f"robntk data files not found in {root}: {', '.join(rels)}"
        )
    return FileNotFoundError(f"{lead} {_where(root, how, rels)}. {obtain_hint(rels[0], data_dir_, n=len(rels))}")


def data_files(relpaths: Iterable[str], data_dir_: str | os.PathLike | None = None) -> list[Path]:
    """Paths of files inside the data directory, checked to exist; missing ones are fetched
    first when a fetcher is installed (the CLI's ``--download``).

    Args:
        relpaths: paths relative to the data directory, e.g. ``["nb201_archs/meta.json"]``.
        data_dir_: optional explicit data directory (see :func:`resolve_data_dir`).

    Raises:
        FileNotFoundError: a file is (still) missing; the message names the missing files, the
            data directory and how it was chosen, the ``robntk data fetch`` command that brings
            them and their source (:func:`missing_error`).
        OSError, ValueError: from the fetcher (network, checksum mismatch; the message names the
            URL and the ``--mirror`` option).
    """
    rels = list(relpaths)
    root = data_dir(data_dir_)
    missing = [r for r in rels if not (root / r).is_file()]
    if missing and _fetcher is not None:
        _fetcher(missing, root)
        missing = [r for r in missing if not (root / r).is_file()]
    if missing:
        raise missing_error(missing, data_dir_)
    return [root / r for r in rels]


def data_file(relpath: str, data_dir_: str | os.PathLike | None = None) -> Path:
    """Path of one file inside the data directory, checked to exist (see :func:`data_files`).

    Args:
        relpath: path relative to the data directory, e.g. ``"nb201_archs/meta.json"``.
        data_dir_: optional explicit data directory (see :func:`resolve_data_dir`).

    Raises:
        FileNotFoundError: the file does not exist (and no fetcher brought it); the message names
            the full path, how the data directory was chosen, the ``robntk data fetch NAME``
            command that brings it, ``--download``, and its source.
    """
    return data_files([relpath], data_dir_)[0]


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
