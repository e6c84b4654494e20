"""Build the small data pack that travels to a lent GPU machine (issue 10, "GPU").

The device tool sends the working tree and at most 64 MiB in all; the tracked tree is ≈44 MB, so
the 28 MB CIFAR-10 train npz does not fit beside it. Scoring reads only the fixed batch
(:func:`robntk.data.datasets.fixed_batch`: a class-balanced draw from the labels), so the pack keeps
every label and the images of the fixed batches listed below, and zeros the other images
(``np.savez_compressed``: the zeros cost almost nothing). The pack is then checked: every listed
batch read from the pack equals, bit for bit, the batch read from the full data (same indices,
same pixels, hence the same ``batch_sha256_16`` in the store key), so rows scored on the GPU
merge with rows scored anywhere else.

Usage (writes ``.gpu_pack/``, ignored by git; carry it with the device call)::

    python experiments/gpu/make_pack.py --data-dir ../shared/data

Only CIFAR-10 and the search space are packed: the GPU script scores, and the analysis of its
export runs here against the full data.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from robntk.core.paths import data_dir as resolve_data_dir  # noqa: E402
from robntk.data.datasets import balanced_indices, fixed_batch, read_npz  # noqa: E402

NPZ = "cifar10_jpeg/cifar10_train_decoded_10k.npz"
SPACE_FILES = (
    "nb201_archs/nb201_archs_15625.csv",
    "nb201_archs/meta.json",
    "nb201_archs/NasBenchID_6466_idx.txt",
    "nb201_archs/PROVENANCE.md",
)
#: (batch size, batch seed) pairs whose images the pack keeps: every batch size of the
#: protocol study (16, 32, 64) with the init seeds 0, 1, 2.
BATCHES = tuple((b, s) for b in (16, 32, 64) for s in (0, 1, 2))


def main(argv=None) -> int:
    """Write the pack to ``--out`` (via ``<out>.tmp``, then a rename); returns 0.

    Raises:
        FileNotFoundError: the full data lack the CIFAR-10 npz or a search-space file (named).
        SystemExit: a batch read from the pack differs from the full data (nothing is renamed).
    """
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=None, help="full data directory (default $ROBNTK_DATA)")
    ap.add_argument("--out", default=str(ROOT / ".gpu_pack"))
    args = ap.parse_args(argv)
    src, out = resolve_data_dir(args.data_dir), Path(args.out)
    x, y = read_npz(src / NPZ)
    full = {bs: fixed_batch("cifar10", bs[0], seed=bs[1], data_dir=src) for bs in BATCHES}
    keep = np.zeros(len(y), bool)  # the rows fixed_batch draws (checked against the full data below)
    for b, s in BATCHES:
        keep[balanced_indices(y, b, s)] = True
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / NPZ).parent.mkdir(parents=True)
    np.savez_compressed(tmp / NPZ, x=np.where(keep[:, None, None, None], x, 0).astype(np.uint8), y=y)
    (tmp / "cifar10_jpeg/PROVENANCE.md").write_text(
        f"GPU data pack made by experiments/gpu/make_pack.py from {src / NPZ}: all {len(y)} labels, "
        f"the {int(keep.sum())} images of the fixed batches {list(BATCHES)} (batch size, seed); "
        "every other image is zero. Not for training or evaluation.\n"
    )
    (tmp / "nb201_archs").mkdir()
    for f in SPACE_FILES:
        shutil.copy2(src / f, tmp / f)
    for bs, (xb, yb) in full.items():
        xp, yp = fixed_batch("cifar10", bs[0], seed=bs[1], data_dir=tmp)
        if not (np.array_equal(xp, xb) and np.array_equal(yp, yb)):
            raise SystemExit(f"make_pack: batch {bs} from the pack differs from the full data")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(
        f"wrote {out} ({size / 1e6:.1f} MB; {int(keep.sum())} images kept); "
        f"all {len(BATCHES)} batches equal to the full data"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
