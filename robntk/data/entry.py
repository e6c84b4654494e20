"""The schema of the data registry (:mod:`robntk.data.sources`): a :class:`Target` is a file in
the data directory as the readers read it, a :class:`Download` one file fetched from the network,
and an :class:`Entry` ties the files to their downloads, provenance and conversion.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """A file in the data directory, as the readers read it.

    Attributes:
        path: POSIX path relative to the data directory.
        size: size in bytes (None: unknown).
        sha256, md5: hex digests (None: unknown); a file is verified against every known one.
    """

    path: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None

    @property
    def checked(self) -> bool:
        """True when a checksum is known."""
        return self.sha256 is not None or self.md5 is not None


@dataclass(frozen=True)
class Download:
    """One file fetched from the network.

    Attributes:
        url: the official URL (pinned to a commit for GitHub files).
        size: size in bytes. sha256: hex digest. md5: published MD5 (optional second check).
        filename: the name under which a mirror (``--mirror URL``) serves it: ``URL/filename``
            (default: the last component of ``url``).
    """

    url: str
    size: int
    sha256: str
    md5: str | None = None
    filename: str = ""

    def __post_init__(self):
        if not self.filename:
            object.__setattr__(self, "filename", posixpath.basename(self.url))


@dataclass(frozen=True)
class Entry:
    """One registry entry: files the readers read, their sources and how they are made.

    Attributes:
        name: short name used on the command line (``robntk data fetch NAME``).
        title: one-line description.
        files: the files in the data directory.
        downloads: the official downloads (empty for derivations of other entries and for
            entries that cannot be fetched).
        convert: how ``downloads`` (and the files of ``needs``) become ``files``: ``'copy'``,
            ``'untar'`` or the name of a derivation of :mod:`robntk.data.fetch`; None: not
            fetchable (see ``manual``).
        needs: entries whose files the conversion reads (fetched first).
        source: provenance (repository, commit, path, license).
        origin: the original release when ``downloads`` is a byte-identical copy of it.
        used_by: the reader(s) of the files.
        default: fetched by ``robntk data fetch`` without names.
        manual: how to obtain the files when ``convert`` is None.
    """

    name: str
    title: str
    files: tuple[Target, ...]
    source: str
    used_by: str
    downloads: tuple[Download, ...] = ()
    convert: str | None = "copy"
    needs: tuple[str, ...] = ()
    origin: str = ""
    default: bool = False
    manual: str = ""

    @property
    def fetchable(self) -> bool:
        """True when ``robntk data fetch`` can make the files."""
        return self.convert is not None

    @property
    def size(self) -> int | None:
        """Total size of ``files`` in bytes (None if one size is unknown)."""
        sizes = [t.size for t in self.files]
        return None if None in sizes else sum(sizes)  # type: ignore[arg-type]

    @property
    def where(self) -> str:
        """Where the files come from, in one line (for ``status``)."""
        if self.downloads:
            urls = [d.url for d in self.downloads]
            text = urls[0] if len(urls) == 1 else f"{urls[0]} (+{len(urls) - 1} more)"
            return "from " + text + (f", converted ({self.convert})" if self.convert not in ("copy", None) else "")
        if self.convert is not None:
            return f"derived from {', '.join(self.needs)} ({self.convert})"
        return "manual: " + self.manual
