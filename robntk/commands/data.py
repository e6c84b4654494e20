"""``robntk data status|fetch``: the data files robntk reads, checked and fetched from their official
sources (registry: :mod:`robntk.data.sources`; machinery: :mod:`robntk.data.fetch`).

``robntk data status [NAMES...] [--verify]`` lists every registry entry as present / missing /
incomplete / corrupt and where it comes from (exit 1 when a file is corrupt).
``robntk data fetch [NAMES...] [--mirror URL]`` downloads, verifies and converts entries (no
names: the default set; ``all``: every fetchable entry). Both work on ``--data-dir``, else
``$ROBNTK_DATA``, else ``./data`` when it exists, else ``$XDG_DATA_HOME/robntk``
(``~/.local/share/robntk``): the resolution of every other command
(:func:`robntk.core.paths.resolve_data_dir`), so they read what ``fetch`` wrote.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from robntk.commands._flags import add_dataclass_flags, config_from_args
from robntk.core import paths
from robntk.core.config import flag
from robntk.core.tables import check_writable
from robntk.data import fetch as fetching
from robntk.data import sources
from robntk.data.entry import Entry

_DATA_DIR_HELP = (
    "data directory (default $ROBNTK_DATA, then ./data if it exists, then $XDG_DATA_HOME/robntk, "
    "i.e. ~/.local/share/robntk; the other commands read the same one)"
)
_NAMES_HELP = "registry entries: names (see `robntk data status`) or data-file paths"


@dataclass(frozen=True, kw_only=True)
class StatusOptions:
    """The options of ``robntk data status``.

    Attributes:
        names: entries to show (names or data-file paths; empty: all).
        data_dir: the data directory (None: ``$ROBNTK_DATA``, then ``./data`` if it exists, then the
            user data directory).
        verify: hash every file; by default files over 64 MiB are checked by size only.
    """

    names: tuple[str, ...] = field(
        default=(), metadata=flag(_NAMES_HELP + " (default: all)", flag="names", nargs="*", metavar="NAME")
    )
    data_dir: str | None = field(default=None, metadata=flag(_DATA_DIR_HELP))
    verify: bool = field(
        default=False, metadata=flag("hash every file (default: files over 64 MiB are checked by size only)")
    )


@dataclass(frozen=True, kw_only=True)
class FetchOptions:
    """The options of ``robntk data fetch``.

    Attributes:
        names: entries to fetch (names or data-file paths; empty: the default set; ``all``:
            every fetchable entry).
        data_dir: the data directory (None: ``$ROBNTK_DATA``, then ``./data`` if it exists, then the
            user data directory).
        mirror: base URL serving the download file names (None: ``$ROBNTK_DATA_MIRROR``, else
            the official URLs).
        force: download again entries that are present and verified.
        keep_downloads: keep archives / conversion inputs in ``<data dir>/.downloads``.
        timeout: network timeout in seconds (connection and each read).
        retries: resumptions after a dropped connection.

    Raises:
        ValueError: ``--timeout`` not a finite number > 0, ``--retries`` < 0, ``--mirror`` not an
            http(s):// or file:// URL.
    """

    names: tuple[str, ...] = field(
        default=(),
        metadata=flag(
            _NAMES_HELP
            + "; 'all' = every fetchable entry (default: "
            + ", ".join(e.name for e in sources.default_entries())
            + ")",
            flag="names",
            nargs="*",
            metavar="NAME",
        ),
    )
    data_dir: str | None = field(default=None, metadata=flag(_DATA_DIR_HELP))
    mirror: str | None = field(
        default=None,
        metadata=flag(
            f"base URL serving the same file names (http://, https://, file://; default ${fetching.MIRROR_ENV}, "
            "else the official URLs)",
            metavar="URL",
        ),
    )
    force: bool = field(default=False, metadata=flag("download again even when present and verified"))
    keep_downloads: bool = field(
        default=False, metadata=flag(f"keep archives and conversion inputs in <data dir>/{fetching.DOWNLOADS}")
    )
    timeout: float = field(default=60.0, metadata=flag("network timeout, seconds"))
    retries: int = field(default=3, metadata=flag("resumptions after a dropped connection"))

    def __post_init__(self):
        t = self.timeout
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t > 0):
            raise ValueError(f"--timeout must be a finite number of seconds > 0, got {t!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"--retries must be an integer >= 0, got {self.retries!r}")
        fetching.resolve_mirror(self.mirror)  # ValueError naming a bad URL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sub-commands ``status`` and ``fetch`` of ``robntk data``."""
    for action in parser._actions:  # the CLI's common flags: say this command's default
        if action.dest == "data_dir":
            action.help = _DATA_DIR_HELP
        elif action.dest == "download":  # `data fetch` fetches anyway; `data status` reads nothing
            action.help = argparse.SUPPRESS
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="{status,fetch}")
    for name, cls, func, help_ in (
        ("status", StatusOptions, _status, "list the data files: present / missing / corrupt, and their sources"),
        ("fetch", FetchOptions, _fetch, "download, verify and convert data files from their official sources"),
    ):
        p = sub.add_parser(name, help=help_, description=help_)
        add_dataclass_flags(p, cls)
        p.set_defaults(_data_run=func)


def run(args: argparse.Namespace) -> int:
    """Run the chosen sub-command."""
    return args._data_run(args)


def _files(e: Entry) -> str:
    if len(e.files) == 1:
        return e.files[0].path
    return f"{os.path.dirname(e.files[0].path)}/ ({len(e.files)} files)"


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    return f"{n / 1e6:,.1f} MB" if n >= 1e6 else f"{n / 1e3:,.1f} kB"


def _status(args: argparse.Namespace) -> int:
    """Print one block per entry; exit 1 when a file is corrupt."""
    opts = config_from_args(StatusOptions, args)
    root, how = fetching.resolve_data_dir(opts.data_dir)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"--data-dir {root} is a file, not a directory")
    rows = fetching.status(root, opts.names, verify=opts.verify)
    print(f"data directory: {root} ({how}{'' if root.is_dir() else '; does not exist yet'})")
    for st in rows:
        e = st.entry
        kind = "default" if e.default else ("manual" if not e.fetchable else "optional")
        print(f"{st.state:<10} {e.name:<24} {_files(e)} [{_size(e.size)}, {kind}]")
        print(f"{'':<11}{e.where}")
        for f in st.files:
            if f.state == "corrupt":
                print(f"{'':<11}corrupt: {f.target.path}: {f.detail}")
            elif f.state == "present" and f.detail:
                print(f"{'':<11}note: {f.target.path}: {f.detail}")
        if st.partial_bytes:
            print(
                f"{'':<11}partial download: {st.partial_bytes:,} bytes in {fetching.DOWNLOADS}/ "
                "(`robntk data fetch` resumes it)"
            )
    counts: dict[str, int] = {}
    for st in rows:
        counts[st.state] = counts.get(st.state, 0) + 1
    hint = (
        ""
        if set(counts) <= {"present"}
        else (f" Get entries with `robntk data fetch NAMES...{_dir_flag(opts.data_dir)}`.")
    )
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + "." + hint)
    return 1 if counts.get("corrupt") else 0


def _dir_flag(data_dir: str | None) -> str:
    return "" if data_dir is None else f" --data-dir {shlex.quote(str(data_dir))}"


def _fetch(args: argparse.Namespace) -> int:
    """Fetch; print where the files went and, if other commands would not find them, how to point them there."""
    opts = config_from_args(FetchOptions, args)
    root, how = fetching.resolve_data_dir(opts.data_dir)
    check_writable(root, "--data-dir", kind="dir")  # before any download
    print(f"data directory: {root} ({how})", flush=True)
    res = fetching.fetch(
        opts.names,
        root,
        mirror=opts.mirror,
        force=opts.force,
        keep_downloads=opts.keep_downloads,
        timeout=float(opts.timeout),
        retries=opts.retries,
        log=lambda line: print(line, flush=True),
    )
    fetched = sum(r.action == "fetched" for r in res)
    print(f"done: {fetched} fetched, {len(res) - fetched} already present")
    readers = paths.data_dir(None)
    if _resolved(readers) != _resolved(root):
        q = shlex.quote(str(root))
        shown = readers if readers.is_absolute() else f"./{readers}"
        print(
            f"note: the other robntk commands read {shown} by default; pass --data-dir {q} or "
            f"export {paths.DATA_ENV}={q}"
        )
    return 0


def _resolved(p: Path) -> Path:
    return Path(os.path.abspath(p.expanduser()))
