"""NAS-RobBench-201 loaders: known values of the real files, parity between layouts, the
official per-seed layout on a small hand-written file, results added by robntk, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from robntk.data.benchmark import DATASETS, METRICS, RobBench, load_nb201_accuracy

ARCH_2581 = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_names():
    assert METRICS == (
        "val_acc",
        "val_fgsm_3.0_acc",
        "val_pgd_3.0_acc",
        "val_fgsm_8.0_acc",
        "val_pgd_8.0_acc",
        "autoattack",
    )
    assert DATASETS == ("cifar10", "cifar100", "ImageNet16-120")


def test_known_values(bench, space):
    assert bench.source == "html"  # the bundle has no official per-seed file
    t = bench.table()
    assert t.shape == (6466, 18) and t.index.name == "nb201_index"
    assert list(t.index) == list(space.representatives)
    assert list(t.columns[:6]) == [f"cifar10_{m}" for m in METRICS]
    assert "ImageNet16-120_autoattack" in t.columns and "cifar100_val_pgd_8.0_acc" in t.columns
    assert t["cifar10_val_acc"].idxmax() == 9930
    assert round(t["cifar10_val_acc"].max(), 4) == 0.7956
    assert t["cifar10_val_pgd_8.0_acc"].idxmax() == 2581
    assert round(bench.get(2581, "cifar10", "val_pgd_8.0_acc"), 4) == 0.4811
    assert space.arch_str(2581) == ARCH_2581
    assert bench.get(ARCH_2581, "cifar10", "val_pgd_8.0_acc") == bench.get(2581, "cifar10", "val_pgd_8.0_acc")
    # arch 1000: three-seed mean (the official README's seed-1 value is 0.6730)
    assert round(bench.get(1000, "cifar10", "val_fgsm_3.0_acc"), 4) == 0.6716
    assert round(bench.get("1000", "cifar10", "val_pgd_3.0_acc"), 4) == 0.6663
    assert round(bench.get(0, "cifar10", "val_acc"), 4) == 0.5396
    assert round(bench.get(0, "cifar10", "autoattack"), 4) == 0.2752
    assert round(bench.get(6111, "cifar10", "autoattack"), 4) == 0.4396
    assert bench.get(6111, "imagenet", "val_acc") == bench.get(6111, "ImageNet16-120", "val_acc")  # alias
    # value ranges of the PROVENANCE notes
    assert t.min().min() >= 0.0083 - 1e-4 and t.max().max() <= 0.7956 + 1e-4
    assert not t.isna().any().any()


def test_isomorphs_resolve_to_representative(bench, space):
    col = bench.table()["cifar10_val_pgd_8.0_acc"]
    got = np.array([bench.get(i, "cifar10", "val_pgd_8.0_acc") for i in range(15625)])
    want = col.reindex([space.representative(i) for i in range(15625)]).to_numpy()
    np.testing.assert_array_equal(got, want)
    assert (bench.isomorph == np.array(space.isomorph)).all()
    non_rep = next(i for i in range(15625) if space.representative(i) != i)
    assert bench.get(space.arch_str(non_rep), "cifar100", "autoattack") == bench.get(
        space.representative(non_rep), "cifar100", "autoattack"
    )
    np.testing.assert_array_equal(
        bench.values([non_rep, 2581], "cifar10", "val_pgd_8.0_acc"), [got[non_rep], got[2581]]
    )
    e = bench.table(expand=True)
    assert e.shape == (15625, 19)
    np.testing.assert_array_equal(e["cifar10_val_pgd_8.0_acc"].to_numpy(), got)


def test_csv_and_html_layouts_agree(bench, data_dir):
    csv = RobBench.load(data_dir, source="csv")
    assert csv.source == "csv"
    pd.testing.assert_frame_equal(csv.table(), bench.table())
    assert (csv.isomorph == bench.isomorph).all()
    assert csv.space.arch_str(2581) == ARCH_2581  # built from the CSV's arch_str column


def test_unknown_names_and_bad_archs(bench):
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist'; allowed: cifar10, cifar100, ImageNet16-120"):
        bench.get(0, "mnist", "val_acc")
    with pytest.raises(ValueError, match=r"unknown metric 'val_pgd_8_acc'; allowed: val_acc, .*autoattack"):
        bench.get(0, "cifar10", "val_pgd_8_acc")
    with pytest.raises(ValueError, match="out of range"):
        bench.get(15625, "cifar10", "val_acc")
    with pytest.raises(ValueError, match="unknown op"):
        bench.get("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "cifar10", "val_acc")
    with pytest.raises(ValueError, match="unknown benchmark source"):
        RobBench.load(source="sqlite")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"NAS-RobBench-201_html\.json.*nasrobbench201hp"):
        RobBench.load(tmp_path)
    bad = tmp_path / "NAS-RobBench-201_html.json"
    bad.write_text('acc={"": ["cifar10#val_acc"], "0": [0.5')
    with pytest.raises(ValueError, match=r"corrupt NAS-RobBench-201 file .*NAS-RobBench-201_html\.json"):
        RobBench.from_html_json(bad)
    bad.write_text('acc={"": ["cifar10#val_acc"], "0": "7"}')
    with pytest.raises(ValueError, match=r"corrupt NAS-RobBench-201 file .*missing NB201 indices"):
        RobBench.from_html_json(bad)


def _official_fixture(tmp_path, data_dir):
    """A small file in the official per-seed layout with the real meta.json."""
    meta = json.loads((data_dir / "nb201_archs" / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    seeds = lambda a, b, c: {"1": a, "2": b, "3": c}  # noqa: E731
    res = {
        "cifar10": {
            "1000": {
                "val_acc": seeds(0.70, 0.71, 0.72),
                "val_fgsm_3.0_acc": seeds(0.6730, 0.6700, 0.6718),
                "val_pgd_3.0_acc": {**seeds(0.1, 0.2, 0.3), "threeseed": 0.25},  # threeseed entry wins
                "val_fgsm_8.0_acc": seeds(0.5, 0.5, 0.5),
                "val_pgd_8.0_acc": seeds(0.45, 0.46, 0.47),
                "autoattack": 0.41,
                "val_loss": seeds(1.0, 2.0, 3.0),
                "curve": [1, 2, 3],
            },
            "0": {"val_acc": seeds(0.5, 0.6, 0.7), "autoattack": 0.3},
        },
        "imagenet": {"1000": {"val_acc": seeds(0.12, 0.13, 0.14), "autoattack": 0.04}},
    }
    (tmp_path / "NAS-RobBench-201_all.json").write_text(json.dumps(res))
    return meta


def test_official_per_seed_layout(tmp_path, data_dir):
    meta = _official_fixture(tmp_path, data_dir)
    b = RobBench.from_official(tmp_path / "NAS-RobBench-201_all.json", tmp_path / "meta.json")
    assert b.source == "official"
    assert b.get(1000, "cifar10", "val_fgsm_3.0_acc") == pytest.approx((0.6730 + 0.6700 + 0.6718) / 3)
    assert b.get(1000, "cifar10", "val_acc") == pytest.approx(0.71)
    assert b.get(1000, "cifar10", "val_pgd_3.0_acc") == 0.25
    assert b.get(1000, "cifar10", "autoattack") == 0.41
    assert b.get(1000, "cifar10", "val_loss") == pytest.approx(2.0)  # extra seed-dict metric kept
    assert "curve" not in b.metrics  # list entries ignored
    assert b.get(1000, "ImageNet16-120", "val_acc") == pytest.approx(0.13)  # 'imagenet' key
    assert b.datasets == ["cifar10", "ImageNet16-120"]
    # isomorph resolution through meta.json: 1906 ≅ 1000 and 3599 ≅ 0 in the official map
    assert meta["ids"]["1906"]["isomorph"] == "1000" and meta["ids"]["3599"]["isomorph"] == "0"
    assert b.get(1906, "cifar10", "val_acc") == pytest.approx(0.71)
    assert b.get("3599", "cifar10", "val_acc") == pytest.approx(0.6)
    assert b.get(meta["ids"]["1000"]["nb201-string"], "cifar10", "autoattack") == 0.41
    t = b.table()
    assert list(t.index) == [0, 1000]
    assert np.isnan(t.loc[0, "cifar10_val_pgd_8.0_acc"])
    with pytest.raises(KeyError, match="no cifar10/val_pgd_8.0_acc value"):
        b.get(0, "cifar10", "val_pgd_8.0_acc")
    with pytest.raises(ValueError, match="no values for dataset 'cifar100'|unknown dataset 'cifar100'"):
        b.get(1000, "cifar100", "val_acc")
    # load() prefers the official layout when present
    (tmp_path / "nasrobbench201").mkdir()
    for f in ("NAS-RobBench-201_all.json", "meta.json"):
        (tmp_path / f).rename(tmp_path / "nasrobbench201" / f)
    assert RobBench.load(tmp_path).source == "official"
    # corrupt per-seed entries name the file
    p = tmp_path / "nasrobbench201" / "NAS-RobBench-201_all.json"
    p.write_text(json.dumps({"cifar10": {"5": {"val_acc": {"1": "high"}}}}))
    with pytest.raises(ValueError, match=r"NAS-RobBench-201_all\.json.*\['val_acc'\]"):
        RobBench.load(tmp_path)


def test_add_results(data_dir):
    b = RobBench.load(data_dir)
    old = b.get(2581, "cifar10", "val_pgd_8.0_acc")
    # new dataset and metric: robntk's own evaluation
    rep = b.add_results(2581, "cifar10_robntk", {"val_acc": 0.61, "val_pgd_8.0_acc": 0.33, "val_apgd_8.0_acc": 0.31})
    assert rep == 2581
    assert b.get(2581, "cifar10_robntk", "val_pgd_8.0_acc") == 0.33
    assert b.get(2581, "cifar10_robntk", "val_apgd_8.0_acc") == 0.31
    assert "cifar10_robntk" in b.datasets and "val_apgd_8.0_acc" in b.metrics
    t = b.table()
    assert "cifar10_robntk_val_pgd_8.0_acc" in t.columns and t.shape[0] == 6466
    assert t["cifar10_robntk_val_acc"].notna().sum() == 1
    # an isomorph is stored under its representative
    non_rep = int(np.flatnonzero(b.isomorph != np.arange(15625))[0])
    assert b.add_results(non_rep, "cifar10_robntk", {"val_acc": 0.5}) == int(b.isomorph[non_rep])
    # benchmark values are protected unless overwrite=True
    with pytest.raises(ValueError, match=r"already has cifar10/val_pgd_8.0_acc"):
        b.add_results(2581, "cifar10", {"val_pgd_8.0_acc": 0.1})
    assert b.get(2581, "cifar10", "val_pgd_8.0_acc") == old
    b.add_results(2581, "cifar10", {"val_pgd_8.0_acc": 0.1}, overwrite=True)
    assert b.get(2581, "cifar10", "val_pgd_8.0_acc") == 0.1
    with pytest.raises(ValueError, match="metric 'arch_str' must be a number"):
        b.add_results(1, "cifar10_robntk", {"arch_str": "|none~0|..."})
    assert RobBench.load(data_dir).get(2581, "cifar10", "val_pgd_8.0_acc") == old  # fresh load unaffected


def test_nb201_accuracy(data_dir):
    acc = load_nb201_accuracy(data_dir)
    assert acc.shape == (15625, 3) and acc.index.name == "nb201_index"
    assert list(acc.columns) == ["cifar10_nb201_test_acc", "cifar100_nb201_test_acc", "ImageNet16-120_nb201_test_acc"]
    assert acc.loc[6111].round(6).tolist() == [0.943733, 0.7322, 0.467111]
    assert acc.loc[0].round(6).tolist() == [0.858633, 0.529133, 0.266333]
    assert acc["cifar10_nb201_test_acc"].idxmax() == 6111
    assert round(acc["cifar10_nb201_test_acc"].max(), 5) == 0.94373
    with pytest.raises(FileNotFoundError, match="nats_bench.csv"):
        load_nb201_accuracy("/nonexistent")
