"""The GPU data pack (experiments/gpu/make_pack.py) holds exactly the fixed batches."""

import importlib.util
from pathlib import Path

import numpy as np

from robntk.data.datasets import balanced_indices, fixed_batch, read_npz

ROOT = Path(__file__).resolve().parents[1]


def _make_pack():
    spec = importlib.util.spec_from_file_location("make_pack", ROOT / "experiments/gpu/make_pack.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pack_keeps_the_fixed_batches_and_nothing_else(data_dir, tmp_path):
    mp = _make_pack()
    assert mp.main(["--data-dir", str(data_dir), "--out", str(tmp_path / "pack")]) == 0
    pack = tmp_path / "pack"
    for b, s in ((32, 0), (16, 2), (64, 1)):
        xp, yp = fixed_batch("cifar10", b, seed=s, data_dir=pack)
        xf, yf = fixed_batch("cifar10", b, seed=s, data_dir=data_dir)
        np.testing.assert_array_equal(xp, xf)
        np.testing.assert_array_equal(yp, yf)
    x, y = read_npz(pack / mp.NPZ)
    _, y_full = read_npz(data_dir / mp.NPZ)
    np.testing.assert_array_equal(y, y_full)  # every label, so the draw is the same
    used = np.zeros(len(y), bool)
    for b, s in mp.BATCHES:
        used[balanced_indices(y, b, s)] = True
    assert not x[~used].any() and x[used].any()  # the other images are zero
    assert sum(p.stat().st_size for p in pack.rglob("*") if p.is_file()) < 8e6  # travels beside the tree
    assert not (tmp_path / "pack.tmp").exists()
