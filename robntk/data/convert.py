"""Checking and installing files, and converting the official downloads into what robntk's
readers read: unpacking archives, and the CSV tables built from the benchmark's JSON releases
(arch list, NAS-RobBench-201, Jung et al., NAS-Bench-Suite-Zero), each rebuilt byte for byte as
the reference bundle holds it. :mod:`robntk.data.sources` says which entry needs which
conversion; :mod:`robntk.data.fetch` downloads and calls :func:`convert`. Every file is checked
against its registry size and checksum before it is renamed into place.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import posixpath
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from robntk.data.entry import Download, Entry, Target
from robntk.data.suite_zero import PROXIES as _PROXIES
from robntk.nb201.searchspace import NUM_ARCHS

#: Bytes per read when hashing or copying.
CHUNK = 1 << 20


# --------------------------------------------------------------------------- checking
def file_digests(path: str | os.PathLike, algos: Iterable[str] = ("sha256",)) -> dict[str, str]:
    """Hex digests of a file (read in 1 MiB chunks), e.g. ``{'sha256': ..., 'md5': ...}``."""
    hs = {a: hashlib.new(a, usedforsecurity=False) for a in algos}
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            for h in hs.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hs.items()}


def _expected(obj: Target | Download) -> dict[str, str]:
    return {a: v for a, v in (("sha256", obj.sha256), ("md5", obj.md5)) if v}


def _compare(spec: Target | Download, size: int, digests: dict[str, str]) -> str | None:
    if spec.size is not None and size != spec.size:
        return f"size {size:,} bytes, expected {spec.size:,}"
    for algo, value in _expected(spec).items():
        if algo in digests and digests[algo] != value:
            return f"{algo} {digests[algo]}, expected {value}"
    return None


def check_file(path: str | os.PathLike, spec: Target | Download, hash_: bool = True) -> str | None:
    """Compare a file with its registry size and digests (``hash_=False``: the size only).

    Returns:
        None when it matches, else the first difference (``'size 12 bytes, expected 34'``).
    """
    size = Path(path).stat().st_size
    why = _compare(spec, size, {})
    return why if why or not hash_ else _compare(spec, size, file_digests(path, _expected(spec)))


# --------------------------------------------------------------------------- writing verified files
def _write_stream(src: BinaryIO, dest: Path, spec: Target, what: str) -> None:
    """Copy ``src`` to a temporary file next to ``dest``, check it, rename it to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    hs, size = {a: hashlib.new(a, usedforsecurity=False) for a in _expected(spec)}, 0
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                fh.write(chunk)
                size += len(chunk)
                for h in hs.values():
                    h.update(chunk)
        why = _compare(spec, size, {a: h.hexdigest() for a, h in hs.items()})
        if why:
            raise ValueError(f"{what} does not match the registry for {spec.path}: {why}; not written")
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _install(src: Path, root: Path, spec: Target) -> None:
    """Move a verified download to its final place (same file system: one rename)."""
    dest = root / spec.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dest)
    except OSError:  # another file system: copy (verified), then drop the download
        with open(src, "rb") as fh:
            _write_stream(fh, dest, spec, f"copy of {src}")
        src.unlink()


# --------------------------------------------------------------------------- conversions
def _need(root: Path, rel: str) -> Path:
    p = root / rel
    if not p.is_file():
        raise FileNotFoundError(f"conversion input not found: {p} (fetch its entry first)")
    return p


def _js_json(path: Path):
    """JavaScript ``name=<json>`` files of the NAS-RobBench-201 project page."""
    text = path.read_text(encoding="utf-8")
    return json.loads(text[text.index("=") + 1 :])


def _meta(root: Path) -> tuple[list[str], list[int]]:
    ids = json.loads(_need(root, "nb201_archs/meta.json").read_text(encoding="utf-8"))["ids"]
    return (
        [ids[str(i)]["nb201-string"] for i in range(NUM_ARCHS)],
        [int(ids[str(i)]["isomorph"]) for i in range(NUM_ARCHS)],
    )


def _csv(header: list[str], rows: Iterable[list], terminator: str = "\r\n") -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator=terminator)
    w.writerow(header)
    w.writerows(rows)
    return out.getvalue().encode("utf-8")


def _expanded(acc: dict, i: int) -> int:
    """Representative of index ``i`` in an ``acc={...}`` table (list: itself; else a pointer)."""
    v = acc[str(i)]
    return i if isinstance(v, list) else int(v)


def _archs_csv(root: Path, downloads: list[Path]) -> bytes:
    strs, iso = _meta(root)
    ops = _js_json(_need(root, "nasrobbench201/ops.json"))
    return _csv(
        ["nb201_index", "arch_str", "ops_code", "isomorph_uid", "is_unique"],
        ([i, strs[i], ops[i], iso[i], int(iso[i] == i)] for i in range(NUM_ARCHS)),
    )


def _robbench_csv(root: Path, downloads: list[Path]) -> bytes:
    strs, _ = _meta(root)
    acc = _js_json(_need(root, "nasrobbench201/NAS-RobBench-201_html.json"))
    cols = []
    for label in acc[""]:
        ds, metric = label.split("#")
        metric = re.sub(r"^val_(fgsm|pgd)_(\d+)_acc$", r"val_\1_\2.0_acc", metric)
        cols.append(f"{'ImageNet16-120' if ds == 'imagenet' else ds}_{metric}")
    rows = (
        [i, strs[i], u, int(u == i), *map(repr, acc[str(u)])] for i in range(NUM_ARCHS) for u in [_expanded(acc, i)]
    )
    return _csv(["nb201_index", "arch_str", "uid", "is_evaluated", *cols], rows)


def _jung_csv(root: Path, downloads: list[Path]) -> bytes:
    strs, _ = _meta(root)
    acc = _js_json(_need(root, "jung_robustness_nb201_summary/acc.json"))
    cols = [label.replace("#", "_") for label in acc[""]]
    rows = ([i, strs[i], u, *map(repr, acc[str(u)])] for i in range(NUM_ARCHS) for u in [_expanded(acc, i)])
    return _csv(["nb201_index", "arch_str", "uid", *cols], rows)


def _suite_zero_csv(root: Path, downloads: list[Path]) -> bytes:
    strs, iso = _meta(root)
    index = {s: i for i, s in enumerate(strs)}
    c10, i16, i16_nets = downloads

    def read(p: Path) -> list[dict]:
        with open(p, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    rows = []
    for r in read(c10):
        i = index[r["net_str"]]
        rows.append(["cifar10", i, iso[i], r["net"], r["net_str"], *(r[p] for p in _PROXIES)])
    nets = read(i16_nets)
    proxies = read(i16)
    if len(nets) != len(proxies) or any(a["net"] != b["net"] for a, b in zip(nets, proxies)):
        raise ValueError(f"{i16.name} and {i16_nets.name} do not list the same nets in the same order")
    for r, n in zip(proxies, nets):
        i = index[n["net_str"]]
        rows.append(["ImageNet16-120", i, iso[i], r["net"], n["net_str"], *(r[p] for p in _PROXIES)])
    return _csv(
        ["dataset", "nb201_index", "nb201_representative", "naslib_tuple", "arch_str", *_PROXIES], rows, terminator="\n"
    )


_NASLIB_OPS = {0: "skip_connect", 1: "none", 2: "nor_conv_3x3", 3: "nor_conv_1x1", 4: "avg_pool_3x3"}


def _partial_csv(root: Path, downloads: list[Path]) -> bytes:
    strs, _ = _meta(root)
    index = {s: i for i, s in enumerate(strs)}
    data = json.loads(_need(root, "nasbench_suite_zero_nb201_partial/zc_nasbench201_partial.json").read_text())
    proxies = _PROXIES[:-1]  # no zen in the early file
    rows = []
    for ds, per_arch in data.items():
        for key, e in per_arch.items():
            a, b, c, d, e_, f = (_NASLIB_OPS[int(t)] for t in key.strip("()").split(","))
            s = f"|{a}~0|+|{b}~0|{d}~1|+|{c}~0|{e_}~1|{f}~2|"
            rows.append(
                [ds, index[s], s, key, e["idx"], repr(e["val_accuracy"]), *(repr(e[p]["score"]) for p in proxies)]
            )
    return _csv(["dataset", "nb201_index", "arch_str", "naslib_tuple", "naslib_idx", "val_accuracy", *proxies], rows)


def _hp12_csv(root: Path, downloads: list[Path]) -> bytes:
    import pandas as pd  # the pickle comes from a pinned commit and passed its SHA-256 check

    df = pd.read_pickle(_need(root, "nb201_clean_acc/mini-bench-arch-cell-accs.pd"))
    return df.to_csv(index=False, lineterminator="\n").encode("utf-8")


#: Derivations: ``fn(data_dir, downloads) -> bytes`` of the entry's single file.
DERIVATIONS: dict[str, Callable[[Path, list[Path]], bytes]] = {
    "archs_csv": _archs_csv,
    "robbench_csv": _robbench_csv,
    "jung_csv": _jung_csv,
    "suite_zero_csv": _suite_zero_csv,
    "partial_csv": _partial_csv,
    "hp12_csv": _hp12_csv,
}


def _untar(entry: Entry, root: Path, downloads: list[Path]) -> None:
    """Extract the registered members (and only those) of the entry's archive, each verified."""
    want = {t.path: t for t in entry.files}
    done = set()
    with tarfile.open(downloads[0], "r:*") as tar:
        for m in tar:
            name = posixpath.normpath(m.name)
            if name in want and m.isfile() and name not in done:
                _write_stream(tar.extractfile(m), root / name, want[name], f"member {m.name} of {downloads[0].name}")
                done.add(name)
    missing = sorted(set(want) - done)
    if missing:
        raise ValueError(f"archive {downloads[0]} lacks {', '.join(missing)}")


def convert(entry: Entry, root: Path, downloads: list[Path]) -> None:
    """Make the entry's files in ``root`` from its verified ``downloads`` (and its ``needs``).

    Raises:
        ValueError: unknown conversion; output that does not match the registry (not written).
        FileNotFoundError: a needed input is missing.
    """
    if entry.convert == "copy":
        _install(downloads[0], root, entry.files[0])
    elif entry.convert == "untar":
        _untar(entry, root, downloads)
    elif entry.convert in DERIVATIONS:
        (target,) = entry.files
        data = DERIVATIONS[entry.convert](root, downloads)
        _write_stream(io.BytesIO(data), root / target.path, target, f"the output of {entry.convert}")
    else:
        raise ValueError(f"entry {entry.name!r} has no conversion (convert={entry.convert!r})")
