"""Image readers: exact round-trips of tiny files in every supported format, errors, the fixed
NTK batch, and parity of the shared real CIFAR-10 files (npz vs JPEG tar)."""

from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from robntk.data import datasets as D
from robntk.data.readers import CIFAR10_CLASSES

CLASSES = CIFAR10_CLASSES


# --------------------------------------------------------------------------- writers
def _flat(x):
    """NHWC uint8 → (N, 3·H·W) CHW-flattened, the pickled batch layout."""
    return x.transpose(0, 3, 1, 2).reshape(len(x), -1)


def _images(rng, n, side=32):
    return rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)


def _dump(path, obj, protocol=2):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)


def write_cifar10_batches(root, rng, n_per_batch=7):
    """cifar-10-batches-py with bytes keys (like the official py2 pickles loaded in py3)."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    out = {}
    for split, files in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        xs, ys = [], []
        for f in files:
            x = _images(rng, n_per_batch)
            y = rng.integers(0, 10, n_per_batch)
            _dump(
                d / f,
                {
                    b"batch_label": b"x",
                    b"labels": [int(v) for v in y],
                    b"data": _flat(x),
                    b"filenames": [b"a.png"] * n_per_batch,
                },
            )
            xs.append(x)
            ys.append(y)
        out[split] = (np.concatenate(xs), np.concatenate(ys))
    return out


def write_png_tree(split_dir, rng, per_class):
    """<split_dir>/<class>/<name>.png, classes written in a scrambled order, names unsorted."""
    expected_x, expected_y = [], []
    for cls in sorted(per_class, key=lambda c: -CLASSES.index(c)):
        (split_dir / cls).mkdir(parents=True)
    for cls, names in per_class.items():
        imgs = {name: _images(rng, 1)[0] for name in names}
        for name, img in imgs.items():
            Image.fromarray(img).save(split_dir / cls / name)
    for cls in CLASSES:
        for name in sorted(per_class.get(cls, [])):
            expected_x.append(np.asarray(Image.open(split_dir / cls / name).convert("RGB")))
            expected_y.append(CLASSES.index(cls))
    return np.stack(expected_x), np.array(expected_y)


PER_CLASS = {"truck": ["0001.png", "0000.png"], "airplane": ["0002.png", "0000.png", "0001.png"], "cat": ["0000.png"]}


# --------------------------------------------------------------------------- CIFAR-10 formats
def test_cifar10_python_batches_roundtrip(tmp_path):
    ref = write_cifar10_batches(tmp_path, np.random.default_rng(0))
    for split in ("train", "test"):
        x, y = D.load_cifar10(split, tmp_path)
        assert x.dtype == np.uint8 and x.shape == (len(ref[split][0]), 32, 32, 3)
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x, ref[split][0])
        np.testing.assert_array_equal(y, ref[split][1])
    assert len(D.load_cifar10("train", tmp_path)[0]) == 35  # 5 batches × 7, in file order
    x, y = D.load_cifar10("train", tmp_path, limit=9)
    np.testing.assert_array_equal(x, ref["train"][0][:9])
    # explicit path= and source= reach the same data
    x2, _ = D.load_cifar10("test", path=tmp_path / "cifar-10-batches-py")
    np.testing.assert_array_equal(x2, ref["test"][0])
    # a pixel in CHW-flattened order: channel c, row r, col k at c*1024 + r*32 + k
    flat = _flat(ref["test"][0])
    assert x2[3, 5, 7, 2] == flat[3, 2 * 1024 + 5 * 32 + 7]


def test_cifar10_batches_take_precedence_over_npz(tmp_path):
    ref = write_cifar10_batches(tmp_path, np.random.default_rng(1))
    (tmp_path / "cifar10_jpeg").mkdir()
    np.savez(
        tmp_path / "cifar10_jpeg/cifar10_test_decoded.npz",
        x=np.zeros((2, 32, 32, 3), np.uint8),
        y=np.zeros(2, np.uint8),
    )
    np.testing.assert_array_equal(D.load_cifar10("test", tmp_path)[0], ref["test"][0])
    assert len(D.load_cifar10("test", tmp_path, source="npz")[0]) == 2


def test_cifar10_npz_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    x = _images(rng, 6)
    y = np.array([0, 0, 3, 3, 9, 9], np.uint8)
    (tmp_path / "cifar10_jpeg").mkdir()
    np.savez_compressed(
        tmp_path / "cifar10_jpeg/cifar10_train_decoded_10k.npz",
        x=x,
        y=y,
        names=np.array([f"train/c/{i:04d}.jpg" for i in range(6)]),
    )
    xl, yl = D.load_cifar10("train", tmp_path)
    np.testing.assert_array_equal(xl, x)
    assert yl.dtype == np.int64 and yl.tolist() == y.tolist()
    # the 10k train subset is skipped when the caller wants the full set
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 train data"):
        D.load_cifar10("train", tmp_path, allow_subset=False)


def test_cifar10_png_folder_order_and_labels(tmp_path):
    rng = np.random.default_rng(3)
    ex, ey = write_png_tree(tmp_path / "CIFAR-10-images" / "test", rng, PER_CLASS)
    x, y = D.load_cifar10("test", tmp_path)  # auto → folder
    np.testing.assert_array_equal(x, ex)  # PNG is lossless: exact
    assert y.tolist() == [0, 0, 0, 3, 9, 9]  # standard class order, then file name
    assert y.tolist() == ey.tolist()
    # path= may be the split directory or its parent
    np.testing.assert_array_equal(D.load_cifar10("test", path=tmp_path / "CIFAR-10-images")[0], ex)
    np.testing.assert_array_equal(D.load_cifar10("test", path=tmp_path / "CIFAR-10-images" / "test")[0], ex)
    xc, yc = D.load_cifar10("test", tmp_path, classes=["truck", 3])
    assert yc.tolist() == [3, 9, 9]
    np.testing.assert_array_equal(xc, ex[3:])
    assert D.load_cifar10("test", tmp_path, limit=2)[1].tolist() == [0, 0]


def test_cifar10_png_tar_matches_folder(tmp_path):
    rng = np.random.default_rng(4)
    src = tmp_path / "src"
    ex, ey = write_png_tree(src / "CIFAR-10-images" / "test", rng, PER_CLASS)
    (tmp_path / "data" / "cifar10_jpeg").mkdir(parents=True)
    archive = tmp_path / "data" / "cifar10_jpeg" / "CIFAR-10-images_test_jpg.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for p in sorted((src / "CIFAR-10-images").rglob("*"), reverse=True):  # members not in sorted order
            tf.add(p, arcname=str(p.relative_to(src)), recursive=False)
    x, y = D.load_cifar10("test", tmp_path / "data")  # auto → tar
    np.testing.assert_array_equal(x, ex)
    assert y.tolist() == ey.tolist()
    x1, y1 = D.load_cifar10("test", path=archive, classes=["airplane"], limit=2)
    np.testing.assert_array_equal(x1, ex[:2])
    # the archive holds no train split
    with pytest.raises(ValueError, match="no images of split 'train'"):
        D.load_cifar10("train", path=archive)


def test_folder_rejects_unknown_class_and_bad_images(tmp_path):
    split = tmp_path / "CIFAR-10-images" / "test"
    (split / "airplane").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(split / "airplane" / "0000.png")
    (split / "airplane" / "0001.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"cannot decode image .*0001\.png"):
        D.load_cifar10("test", tmp_path)
    (split / "airplane" / "0001.png").unlink()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(split / "airplane" / "0002.png")
    with pytest.raises(ValueError, match=r"0002\.png has shape \(16, 16, 3\)"):
        D.load_cifar10("test", tmp_path)
    (split / "airplane" / "0002.png").unlink()
    (split / "zebra").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(split / "zebra" / "0000.png")
    with pytest.raises(ValueError, match="unknown CIFAR-10 class folder 'zebra'"):
        D.load_cifar10("test", tmp_path)
    with pytest.raises(ValueError, match="unknown CIFAR-10 class 'lion'"):
        D.read_image_folder(split, classes=["lion"])


# --------------------------------------------------------------------------- CIFAR-100, ImageNet16
def test_cifar100_roundtrip(tmp_path):
    rng = np.random.default_rng(5)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    ref = {}
    for split, n in (("train", 9), ("test", 4)):
        x = _images(rng, n)
        fine = rng.integers(0, 100, n)
        _dump(
            d / split,
            {
                b"filenames": [b"f"] * n,
                b"batch_label": b"b",
                b"fine_labels": [int(v) for v in fine],
                b"coarse_labels": [int(v) // 5 for v in fine],
                b"data": _flat(x),
            },
        )
        ref[split] = (x, fine)
    for split in ("train", "test"):
        x, y = D.load_cifar100(split, tmp_path)
        np.testing.assert_array_equal(x, ref[split][0])
        assert y.dtype == np.int64 and y.tolist() == ref[split][1].tolist()  # fine, not coarse labels
    x, y = D.load_dataset("cifar100", "test", tmp_path, limit=2)
    np.testing.assert_array_equal(x, ref["test"][0][:2])


def write_imagenet16(root, rng):
    d = root / "ImageNet16"
    d.mkdir()
    ref = {}
    labels_pool = np.array([1, 2, 60, 119, 120, 121, 500, 1000])
    for split, files in (("train", [f"train_data_batch_{i}" for i in range(1, 11)]), ("val", ["val_data"])):
        xs, ys = [], []
        for f in files:
            x = _images(rng, 5, side=16)
            y = rng.choice(labels_pool, 5)
            # NB201's files have str keys ('data', 'labels'): a py2 pickle read with latin1
            _dump(d / f, {"data": _flat(x), "labels": [int(v) for v in y]})
            xs.append(x)
            ys.append(y)
        ref[split] = (np.concatenate(xs), np.concatenate(ys))
    return ref


def test_imagenet16_120_filter_and_shift(tmp_path):
    ref = write_imagenet16(tmp_path, np.random.default_rng(6))
    for split in ("train", "val"):
        rx, ry = ref[split]
        keep = ry <= 120
        x, y = D.load_imagenet16(split, tmp_path)
        assert x.shape == (int(keep.sum()), 16, 16, 3) and x.dtype == np.uint8
        np.testing.assert_array_equal(x, rx[keep])
        assert y.tolist() == (ry[keep] - 1).tolist()  # labels 1..120 → 0..119
        assert y.min() >= 0 and y.max() <= 119
        # all 1000 classes, still shifted by one
        xa, ya = D.load_imagenet16(split, tmp_path, num_classes=None)
        np.testing.assert_array_equal(xa, rx)
        assert ya.tolist() == (ry - 1).tolist()
    xt, yt = D.load_dataset("ImageNet16-120", "test", tmp_path)  # 'test' = val_data
    np.testing.assert_array_equal(xt, D.load_imagenet16("val", tmp_path)[0])
    with pytest.raises(ValueError, match="num_classes"):
        D.load_imagenet16("train", tmp_path, num_classes=0)


# --------------------------------------------------------------------------- errors
def test_missing_data_messages(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        D.load_cifar10("test", tmp_path)
    msg = str(e.value)
    assert "cifar-10-batches-py" in msg and "https://www.cs.toronto.edu/~kriz/cifar.html" in msg
    assert "CIFAR-10-images_test_jpg.tar.gz" in msg
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python.*kriz/cifar\.html"):
        D.load_cifar100("train", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"ImageNet16.*NAS-Bench-201"):
        D.load_imagenet16("train", tmp_path)
    (tmp_path / "ImageNet16").mkdir()
    with pytest.raises(FileNotFoundError, match="train_data_batch_1"):
        D.load_imagenet16("train", tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown split 'valid'.*'train', 'test'"):
        D.load_cifar10("valid")
    with pytest.raises(ValueError, match="unknown CIFAR-10 source 'hdf5'"):
        D.load_cifar10("test", source="hdf5")
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; allowed: cifar10, cifar100, ImageNet16-120"):
        D.load_dataset("mnist", "test")


def test_corrupt_files_name_the_file(tmp_path):
    ref = write_cifar10_batches(tmp_path, np.random.default_rng(7))
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])  # truncated, as the broken GitHub copies are
    with pytest.raises(ValueError, match=r"corrupt pickle file .*data_batch_3"):
        D.load_cifar10("train", tmp_path)
    assert len(D.load_cifar10("test", tmp_path)[0]) == len(ref["test"][0])  # other split fine
    _dump(tmp_path / "cifar-10-batches-py" / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(ValueError, match=r"test_batch: 'data' must be uint8 of shape \(N, 3072\)"):
        D.load_cifar10("test", tmp_path)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(ValueError, match=r"corrupt npz file .*bad\.npz"):
        D.load_cifar10("test", path=bad)
    np.savez(tmp_path / "nokey.npz", images=np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"corrupt npz file .*nokey\.npz"):
        D.load_cifar10("test", path=tmp_path / "nokey.npz")
    garbage_tar = tmp_path / "x.tar.gz"
    garbage_tar.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ValueError, match=r"cannot read tar archive .*x\.tar\.gz"):
        D.load_cifar10("test", path=garbage_tar)
    # an undecodable member of a tar is named as archive:member
    arch = tmp_path / "imgs.tar"
    with tarfile.open(arch, "w") as tf:
        data = b"\x89PNG broken"
        info = tarfile.TarInfo("CIFAR-10-images/test/cat/0000.png")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match=r"imgs\.tar:CIFAR-10-images/test/cat/0000\.png"):
        D.load_cifar10("test", path=arch)


# --------------------------------------------------------------------------- fixed batch
def test_fixed_batch_deterministic_balanced(tmp_path):
    rng = np.random.default_rng(8)
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    labels = np.repeat(np.arange(10), 6)  # 6 per class; uneven class sizes in the test split
    x = _images(rng, len(labels))
    for i in range(1, 6):
        sl = slice((i - 1) * 12, i * 12)
        _dump(d / f"data_batch_{i}", {b"data": _flat(x[sl]), b"labels": labels[sl].tolist()})
    _dump(d / "test_batch", {b"data": _flat(x[:8]), b"labels": [0, 0, 0, 0, 0, 0, 1, 2]})
    xb, yb = D.fixed_batch("cifar10", 25, seed=3, data_dir=tmp_path)
    assert xb.shape == (25, 32, 32, 3) and xb.dtype == np.float32 and yb.dtype == np.int32
    assert 0.0 <= xb.min() and xb.max() <= 1.0
    counts = np.bincount(yb, minlength=10)
    assert counts.sum() == 25 and counts.max() - counts.min() <= 1
    xb2, yb2 = D.fixed_batch("cifar10", 25, seed=3, data_dir=tmp_path)
    np.testing.assert_array_equal(xb, xb2)
    np.testing.assert_array_equal(yb, yb2)
    assert not np.array_equal(D.fixed_batch("cifar10", 25, seed=4, data_dir=tmp_path)[0], xb)
    # every image of the batch is a distinct dataset image, scaled by 1/255
    flat = x.reshape(len(x), -1).astype(np.float32) / 255
    hits = [np.flatnonzero((flat == row.reshape(-1)).all(1)) for row in xb]
    assert all(len(h) == 1 for h in hits) and len({int(h[0]) for h in hits}) == 25
    assert [int(labels[h[0]]) for h in hits] == yb.tolist()
    # classes with too few images hand their slots to others: test split has 6/1/1
    _, yt = D.fixed_batch("cifar10", 7, data_dir=tmp_path, split="test")
    assert np.bincount(yt, minlength=3)[:3].tolist() == [5, 1, 1]
    with pytest.raises(ValueError, match=r"batch_size 61 exceeds the 60 images"):
        D.fixed_batch("cifar10", 61, data_dir=tmp_path)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        D.fixed_batch("cifar10", 0, data_dir=tmp_path)


# --------------------------------------------------------------------------- real shared data
def test_real_cifar10_test_npz(data_dir):
    if not (data_dir / "cifar10_jpeg" / "cifar10_test_decoded.npz").is_file():
        pytest.skip("cifar10_jpeg not in the data directory")
    x, y = D.load_cifar10("test", data_dir)  # auto → npz (no official batches in the bundle)
    assert x.shape == (10000, 32, 32, 3) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [1000] * 10
    assert tuple(int(v) for v in x[0, 0, 0]) == (141, 159, 179)  # test/airplane/0000.jpg, row 0 col 0
    assert y[0] == 0 and y[-1] == 9
    xb, yb = D.fixed_batch("cifar10", 100, seed=0, data_dir=data_dir, split="test")
    assert np.bincount(yb).tolist() == [10] * 10


def test_real_cifar10_tar_agrees_with_npz(data_dir):
    """First images of the real JPEG tar vs the decoded npz. Decoders may differ: ±2 allowed
    (identical when Pillow uses the same libjpeg-turbo as the one that produced the npz)."""
    archive = data_dir / "cifar10_jpeg" / "CIFAR-10-images_test_jpg.tar.gz"
    if not archive.is_file():
        pytest.skip("cifar10_jpeg not in the data directory")
    xn, yn = D.load_cifar10("test", data_dir, source="npz")
    x, y = D.load_cifar10("test", data_dir, source="tar", limit=4)  # only 4 images decoded
    assert y.tolist() == [0, 0, 0, 0]
    assert np.abs(x.astype(int) - xn[:4]).max() <= 2
    assert tuple(int(v) for v in x[0, 0, 0]) == pytest.approx((141, 159, 179), abs=2)
    xt, yt = D.load_cifar10("test", path=archive, classes=["truck"], limit=3)
    assert yt.tolist() == [9, 9, 9]
    assert np.abs(xt.astype(int) - xn[9000:9003]).max() <= 2


# --------------------------------------------------------------------------- training subsets
def test_load_split_decodes_only_the_selected_images(tmp_path):
    """``load_split(limit=k)`` takes the class-balanced subset from the labels of the tar
    listing and decodes only those images: an undecodable image outside the subset is never
    read (loading everything fails on it)."""
    rng = np.random.default_rng(5)
    src = tmp_path / "src"
    per_class = {"airplane": ["0000.png", "0001.png"], "cat": ["0000.png", "0001.png"], "truck": ["0000.png"]}
    ex, ey = write_png_tree(src / "CIFAR-10-images" / "train", rng, per_class)
    (src / "CIFAR-10-images" / "train" / "cat" / "0002.png").write_bytes(b"not a png")  # listing position 4
    labels = np.array([0, 0, 3, 3, 3, 9])
    seed = next(s for s in range(50) if 4 not in D.balanced_subset(labels, 3, s))
    idx = D.balanced_subset(labels, 3, seed)
    assert np.bincount(labels[idx], minlength=10)[[0, 3, 9]].tolist() == [1, 1, 1]
    (tmp_path / "data" / "cifar10_jpeg").mkdir(parents=True)
    archive = tmp_path / "data" / "cifar10_jpeg" / "CIFAR-10-images_train_jpg.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for p in sorted((src / "CIFAR-10-images").rglob("*")):
            tf.add(p, arcname=str(p.relative_to(src)), recursive=False)
    x, y = D.load_split("cifar10", "train", tmp_path / "data", limit=3, seed=seed)
    pos = {0: 0, 1: 1, 2: 2, 3: 3, 5: 4}  # listing position -> index among the decodable images
    np.testing.assert_array_equal(x, np.stack([ex[pos[int(i)]] for i in idx]))
    assert y.tolist() == labels[idx].tolist()
    with pytest.raises(ValueError, match=r"cannot decode image .*train/cat/0002\.png"):
        D.load_split("cifar10", "train", tmp_path / "data")
    with pytest.raises(ValueError, match="limit must be an integer >= 1"):
        D.load_split("cifar10", "train", tmp_path / "data", limit=0)


def test_real_cifar10_train_subset_is_balanced(data_dir):
    """``robntk train --train-limit 20`` on the shared JPEG tar: 2 images per class, and the same
    images as decoding all 50,000 and subsetting (checked on the labels and the tar order)."""
    if not (data_dir / "cifar10_jpeg" / "CIFAR-10-images_train_jpg.tar.gz").is_file():
        pytest.skip("cifar10_jpeg not in the data directory")
    x, y = D.load_split("cifar10", "train", data_dir, limit=20, seed=0)
    assert x.shape == (20, 32, 32, 3) and np.bincount(y).tolist() == [2] * 10
    # the train tar is ordered by class then file name (5,000 per class), so the subset's positions
    # are balanced_subset of that label vector; those among each class's first 1,000 files are
    # also in the decoded 10k npz (position 1000·c + rank), which checks the decoded pixels
    idx = D.balanced_subset(np.repeat(np.arange(10), 5000), 20, 0)
    assert y.tolist() == (idx // 5000).tolist()
    xn, yn = D.load_cifar10("train", data_dir, source="npz")
    in_npz = [(k, 1000 * (i // 5000) + i % 5000) for k, i in enumerate(idx) if i % 5000 < 1000]
    assert len(in_npz) == 5
    for k, j in in_npz:
        assert yn[j] == y[k] and np.abs(x[k].astype(int) - xn[j]).max() <= 2
