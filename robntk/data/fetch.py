"""Check, download, verify and convert the data files of the registry (:mod:`robntk.data.sources`).

``robntk data status`` and ``robntk data fetch`` (:mod:`robntk.commands.data`) are thin wrappers
around :func:`status` and :func:`fetch`.

Where: :func:`resolve_data_dir` (:func:`robntk.core.paths.resolve_data_dir`, the readers' own
resolution) — an explicit directory (``--data-dir``), else ``$ROBNTK_DATA``, else ``./data`` when it
exists, else the user data directory ``$XDG_DATA_HOME/robntk`` (``~/.local/share/robntk`` when
``XDG_DATA_HOME`` is unset). Downloads go to ``<data dir>/.downloads/<file name>.part`` first.

On demand (:func:`fetch_missing`, :func:`download_missing`): the CLI's ``--download`` installs
:func:`fetch_missing` as the fetcher of :func:`robntk.core.paths.data_files`, so a reader that misses
a registered file fetches its entry (and the entries it needs) and goes on.

How (:func:`download`): ``urllib`` from the standard library with a tqdm progress bar; a partial
download is resumed with an HTTP ``Range`` request (a server that ignores it sends the whole
file again, which is then written from the start); a dropped connection is resumed up to
``retries`` times. The complete file is checked against the registry's size and SHA-256 (and
published MD5); a mismatching file is deleted and never reaches its final name. Converted files
(extracted archive members, derived CSVs) are checked against their own checksums before they
are renamed into place (temporary file then ``os.replace``), so the data directory only ever holds
complete, verified files.

Mirrors: ``mirror`` (``--mirror URL``, else ``$ROBNTK_DATA_MIRROR``) replaces every official URL
by ``<mirror>/<Download.filename>`` (``http://``, ``https://`` or ``file://``); the checksums are the
registry's, so a mirror cannot serve other bytes.

Errors: :class:`OSError` for the network (one line naming the URL and the ``--mirror`` option),
HTTP errors and missing inputs; :class:`ValueError` for bad arguments, unknown names, entries that
cannot be fetched (the message says how to obtain them) and checksum mismatches.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import posixpath
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from robntk._version import __version__
from robntk.core import paths
from robntk.data import sources
from robntk.data.convert import CHUNK, check_file, convert
from robntk.data.entry import Download, Entry, Target
from robntk.data.sources import HASH_LIMIT

MIRROR_ENV = "ROBNTK_DATA_MIRROR"
DOWNLOADS = ".downloads"
USER_AGENT = f"robntk/{__version__} (python-urllib; robntk data fetch)"
MIRROR_HINT = f"check the network connection, or serve the files from a mirror: --mirror URL (or ${MIRROR_ENV})"
NUM_ARCHS = 15625


# --------------------------------------------------------------------------- locations
#: The data directory: defined in :mod:`robntk.core.paths` (shared with every reader), kept
#: importable from here.
user_data_dir = paths.user_data_dir
resolve_data_dir = paths.resolve_data_dir


def resolve_mirror(mirror: str | None = None) -> str | None:
    """``mirror``, else ``$ROBNTK_DATA_MIRROR``, else None; checked to be an http(s):// or file:// URL.

    Raises:
        ValueError: another scheme (names the value).
    """
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    if mirror is not None and urllib.parse.urlsplit(mirror).scheme not in ("http", "https", "file"):
        raise ValueError(f"--mirror / ${MIRROR_ENV} must be an http://, https:// or file:// URL, got {mirror!r}")
    return mirror


def source_url(download: Download, mirror: str | None = None) -> str:
    """The URL ``download`` is fetched from: the official one, or ``<mirror>/<filename>``."""
    if not mirror:
        return download.url
    return mirror.rstrip("/") + "/" + urllib.parse.quote(download.filename)


@dataclass(frozen=True)
class FileStatus:
    """State of one registered file: ``'present'``, ``'missing'`` or ``'corrupt'`` (+ detail)."""

    target: Target
    state: str
    detail: str = ""


@dataclass(frozen=True)
class EntryStatus:
    """State of an entry's files, and the bytes of its partial downloads in ``.downloads``."""

    entry: Entry
    files: tuple[FileStatus, ...]
    partial_bytes: int = 0

    @property
    def state(self) -> str:
        """``'present'`` (all files good), ``'missing'`` (none there), ``'corrupt'`` (one fails its
        check) or ``'incomplete'`` (some missing)."""
        states = {f.state for f in self.files}
        if "corrupt" in states:
            return "corrupt"
        return states.pop() if len(states) == 1 else "incomplete"


def check_target(root: Path, target: Target, verify: bool = False) -> FileStatus:
    """Check one file of the data directory ``root``.

    Files up to :data:`~robntk.data.sources.HASH_LIMIT` bytes are hashed; larger ones are checked
    by size unless ``verify``.
    """
    path = Path(root) / target.path
    if not path.is_file():
        return FileStatus(target, "missing")
    hash_ = verify or target.size is None or target.size <= HASH_LIMIT
    why = check_file(path, target, hash_)
    if why:
        return FileStatus(target, "corrupt", why)
    if not target.checked:
        return FileStatus(target, "present", "no checksum known")
    return FileStatus(target, "present", "" if hash_ else "size checked (--verify hashes it)")


def entry_status(root: Path, entry: Entry, verify: bool = False) -> EntryStatus:
    """:class:`EntryStatus` of ``entry`` in the data directory ``root``."""
    root = Path(root)
    partial = sum(
        p.stat().st_size for d in entry.downloads if (p := root / DOWNLOADS / (d.filename + ".part")).is_file()
    )
    return EntryStatus(entry, tuple(check_target(root, t, verify) for t in entry.files), partial)


def status(
    data_dir: str | os.PathLike | None = None,
    names: Iterable[str] = (),
    verify: bool = False,
    registry: Iterable[Entry] | None = None,
) -> list[EntryStatus]:
    """Status of the registry entries (``names``: entry names or file paths; empty: all).

    Raises:
        ValueError: an unknown name.
    """
    root, _ = resolve_data_dir(data_dir)
    reg = tuple(sources.REGISTRY if registry is None else registry)
    entries = [sources.get(n, reg) for n in names] if names else list(reg)
    return [entry_status(root, e, verify) for e in dict.fromkeys(entries)]


# --------------------------------------------------------------------------- downloading
class _Dropped(Exception):
    """The connection ended before the whole file arrived (resumable)."""


def _transfer(url: str, part: Path, have: int, size: int, timeout: float, bar) -> None:
    """One HTTP request appending to ``part`` (``Range`` from ``have``); raises :class:`_Dropped`."""
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # our partial file is not a prefix of theirs: start over
            part.unlink(missing_ok=True)
            raise _Dropped("HTTP 416, restarting") from None
        raise OSError(
            f"cannot download {url}: HTTP {exc.code} {exc.reason}; check the URL, or use another "
            f"source: --mirror URL (or ${MIRROR_ENV})"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise OSError(f"cannot reach {url}: {reason}; {MIRROR_HINT}") from None
    with resp:
        code = resp.getcode() or 200  # file:// answers without a status
        start = re.match(r"bytes\s+(\d+)-", resp.headers.get("Content-Range") or "")
        if have and code == 206 and start and int(start.group(1)) == have:
            mode = "ab"
        else:  # no Range asked, or the server ignored it: the body is the whole file
            have, mode = 0, "wb"
        bar.n = have
        bar.refresh()
        with open(part, mode) as fh:
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Dropped(f"{type(exc).__name__}: {exc}") from None
                if not chunk:
                    return
                have += len(chunk)
                if have > size:
                    fh.close()
                    part.unlink(missing_ok=True)
                    raise ValueError(
                        f"corrupt download from {url}: more than the {size:,} bytes expected; "
                        "the partial file was deleted"
                    )
                fh.write(chunk)
                bar.update(len(chunk))


def download(
    url: str,
    dest: str | os.PathLike,
    spec: Download,
    *,
    timeout: float = 60.0,
    retries: int = 3,
    progress: bool = True,
    backoff: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial download, and verify it against ``spec``.

    The bytes go to ``dest.part``; an existing ``dest.part`` is resumed with ``Range:
    bytes=<its size>-``. A dropped connection is resumed up to ``retries`` times (waiting
    ``backoff * 2**k`` seconds, at most 10); after that the partial file is kept for the next
    run. When the size is reached, the file is checked (size, SHA-256, MD5 if published) and
    renamed to ``dest``. An existing ``dest`` that passes the check is reused without a request.

    Args:
        url: where to download from. dest: final path. spec: expected size and digests.
        timeout: seconds to wait for the connection and for each read.
        retries: resumptions after a dropped connection. progress: show a tqdm bar (on a TTY).
        backoff: seconds of the first wait between resumptions.

    Returns:
        ``dest``.

    Raises:
        OSError: unreachable URL or HTTP error (one line naming the URL and ``--mirror``);
            connection dropped more than ``retries`` times (partial file kept).
        ValueError: wrong size or digest; the downloaded file is deleted and ``dest`` untouched.
    """
    from tqdm import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and check_file(dest, spec) is None:
        return dest
    part = dest.with_name(dest.name + ".part")
    drops = 0
    with tqdm(
        total=spec.size,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=spec.filename,
        disable=None if progress else True,
        leave=False,
    ) as bar:
        while True:
            have = part.stat().st_size if part.is_file() else 0
            if have > spec.size:
                part.unlink()
                have = 0
            if have == spec.size:
                break
            try:
                _transfer(url, part, have, spec.size, timeout, bar)
                got = part.stat().st_size if part.is_file() else 0
                if got < spec.size:
                    raise _Dropped(f"connection closed after {got:,} of {spec.size:,} bytes")
            except _Dropped as exc:
                drops += 1
                if drops > retries:
                    kept = part.stat().st_size if part.is_file() else 0
                    raise OSError(
                        f"download of {url} interrupted ({exc}); {kept:,} of {spec.size:,} bytes "
                        f"kept in {part}, rerun to resume"
                    ) from None
                time.sleep(min(backoff * 2 ** (drops - 1), 10.0))
    why = check_file(part, spec)
    if why:
        part.unlink(missing_ok=True)
        raise ValueError(f"corrupt download from {url}: {why}; the file was deleted and nothing was written to {dest}")
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------- fetching
@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch` did for one entry: ``'present'`` (already there) or ``'fetched'``."""

    entry: Entry
    action: str


def select(names: Iterable[str], registry: Iterable[Entry] | None = None) -> list[Entry]:
    """Entries named by ``names`` (entry names or file paths; ``'all'``: every fetchable entry;
    empty: the default entries).

    Raises:
        ValueError: unknown name; an entry that cannot be fetched (the message says how to get it).
    """
    reg = tuple(sources.REGISTRY if registry is None else registry)
    names = list(names)
    if not names:
        return [e for e in reg if e.default]
    if "all" in names:
        return [e for e in reg if e.fetchable]
    out = [sources.get(n, reg) for n in names]
    for n, e in zip(names, out):
        if not e.fetchable:
            raise ValueError(f"{n!r} ({e.name}) cannot be fetched automatically: {e.manual}")
    return list(dict.fromkeys(out))


def fetch(
    names: Iterable[str] = (),
    data_dir: str | os.PathLike | None = None,
    *,
    mirror: str | None = None,
    force: bool = False,
    keep_downloads: bool = False,
    timeout: float = 60.0,
    retries: int = 3,
    progress: bool = True,
    backoff: float = 1.0,
    log: Callable[[str], None] = print,
    registry: Iterable[Entry] | None = None,
) -> list[FetchResult]:
    """Download, verify and convert registry entries into the data directory.

    An entry whose files are all present and pass :func:`check_target` is skipped (unless
    ``force``); the entries in its ``needs`` are fetched first (and kept).

    Args:
        names: see :func:`select`. data_dir: see :func:`resolve_data_dir`.
        mirror: base URL serving the download file names (default ``$ROBNTK_DATA_MIRROR``).
        force: download again even when the files are present and good.
        keep_downloads: keep archives and conversion inputs in ``<data dir>/.downloads``.
        timeout, retries, progress, backoff: see :func:`download`. log: receives one line per step.
        registry: entries to use instead of :data:`robntk.data.sources.REGISTRY` (tests).

    Returns:
        One :class:`FetchResult` per entry handled (needs included), in order.

    Raises:
        OSError, ValueError: see the module docstring; files written before the error are kept
        (they are complete and verified).
    """
    reg = tuple(sources.REGISTRY if registry is None else registry)
    by_name = {e.name: e for e in reg}
    mirror = resolve_mirror(mirror)
    root, _ = resolve_data_dir(data_dir)
    wanted = select(names, reg)
    results: list[FetchResult] = []
    done: set[str] = set()

    def ensure(e: Entry, forced: bool) -> None:
        if e.name in done:
            return
        done.add(e.name)
        st = entry_status(root, e)
        if st.state == "present" and not forced:
            results.append(FetchResult(e, "present"))
            log(f"{e.name}: present ({_describe(e)})")
            return
        if st.state == "corrupt":
            bad = "; ".join(f"{f.target.path}: {f.detail}" for f in st.files if f.state == "corrupt")
            log(f"{e.name}: replacing corrupt files ({bad})")
        for n in e.needs:
            ensure(by_name[n], False)
        got = []
        for d in e.downloads:
            url = source_url(d, mirror)
            log(f"{e.name}: downloading {url} ({d.size:,} bytes)")
            got.append(
                download(
                    url,
                    root / DOWNLOADS / d.filename,
                    d,
                    timeout=timeout,
                    retries=retries,
                    progress=progress,
                    backoff=backoff,
                )
            )
        convert(e, root, got)
        if not keep_downloads:
            for p in got:
                p.unlink(missing_ok=True)
        results.append(FetchResult(e, "fetched"))
        log(f"{e.name}: wrote {_describe(e)} in {root} (checksums verified)")

    try:
        for e in wanted:
            ensure(e, force)
    finally:
        _rmdir_if_empty(root / DOWNLOADS)
    return results


def _describe(e: Entry) -> str:
    files = e.files[0].path if len(e.files) == 1 else f"{posixpath.dirname(e.files[0].path)}/ ({len(e.files)} files)"
    return files + (f", {e.size:,} bytes" if e.size is not None else "")


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


# --------------------------------------------------------------------------- on demand (--download)
def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fetch_missing(
    relpaths: Sequence[str],
    data_dir: str | os.PathLike,
    *,
    mirror: str | None = None,
    log: Callable[[str], None] = _stderr,
    progress: bool = True,
    timeout: float = 60.0,
    retries: int = 3,
    registry: Iterable[Entry] | None = None,
) -> list[FetchResult]:
    """Fetch the registry entries that hold the missing files ``relpaths`` into ``data_dir``.

    The fetcher of :func:`robntk.core.paths.data_files` while ``--download`` is on. Paths that no
    entry holds, or whose entry cannot be fetched (``convert=None``), are left alone: the
    reader's missing-file message then says how to obtain them.

    Args:
        relpaths: paths relative to the data directory (files or registered folders).
        data_dir: the data directory (the one the reader resolved).
        mirror: as :func:`fetch` (default ``$ROBNTK_DATA_MIRROR``, else the official URLs).
        log: receives one line per step (default: stderr, so that a command's stdout stays clean).
        progress, timeout, retries: as :func:`fetch`. registry: as :func:`fetch` (tests).

    Returns:
        :func:`fetch`'s results (empty when nothing could be fetched).

    Raises:
        OSError, ValueError: as :func:`fetch` (network errors name the URL and ``--mirror``).
    """
    reg = tuple(sources.REGISTRY if registry is None else registry)
    names = []
    for rel in relpaths:
        e = sources.find(rel, reg)
        if e is not None and e.fetchable and e.name not in names:
            names.append(e.name)
    if not names:
        return []
    root = Path(data_dir)
    log(f"--download: {', '.join(relpaths)} missing in {root}; fetching {', '.join(names)}")
    return fetch(names, root, mirror=mirror, timeout=timeout, retries=retries, progress=progress, log=log, registry=reg)


@contextlib.contextmanager
def download_missing(enabled: bool = True, **kwargs) -> Iterator[None]:
    """Within the block, readers fetch missing registered files instead of raising (the CLI's
    ``--download``); the previous setting is restored afterwards.

    Args:
        enabled: False: a no-op block (readers raise as usual).
        **kwargs: passed to :func:`fetch_missing` (``mirror``, ``log``, ``progress``, ...).
    """
    if not enabled:
        yield
        return
    previous = paths.set_fetcher(functools.partial(fetch_missing, **kwargs))
    try:
        yield
    finally:
        paths.set_fetcher(previous)
