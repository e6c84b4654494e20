"""``robntk score`` end to end on real CIFAR-10 with a tiny network: one driver, so the same arch
and seed give the same row alone or inside a larger selection; resume and export; bad input."""

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest

from robntk import cli
from robntk.core import paths, registry, tables
from robntk.scoring import config as scoring

# no test writes into the user's compilation cache (robntk.core.compile_cache)
os.environ.setdefault("ROBNTK_COMPILE_CACHE", "off")

TINY = [
    "--C",
    "2",
    "--N",
    "1",
    "--batch-size",
    "4",
    "--eps",
    "8/255",
    "--beta",
    "0.5",
    "--pgd-steps",
    "1",
    "--no-progress",
]


def test_parse_eps_and_tags():
    assert registry.parse_eps("8/255") == pytest.approx(8 / 255)
    assert registry.parse_eps("0.5") == 0.5 and registry.parse_eps(0.0) == 0.0
    assert registry.eps_tag(8 / 255) == "eps8" and registry.eps_tag(0.5 / 255) == "eps0.5"
    assert registry.beta_tag(0.5) == "beta0.5" and registry.beta_tag(1.0) == "beta1"
    assert registry.format_eps(8 / 255) == "8/255" and registry.metric_name("pgd", 8 / 255) == "val_pgd_8.0_acc"
    with pytest.raises(ValueError, match="did you mean 8/255"):
        registry.parse_eps("8")
    for bad in ("-1/255", "abc", "1/0", "nan"):
        with pytest.raises(ValueError, match="eps"):
            registry.parse_eps(bad)


def test_config_validation():
    for kw, msg in (
        (dict(betas=(1.5,)), "beta must be in"),
        (dict(pgd_steps=0), "pgd_steps"),
        (dict(bn_mode="test"), "bn_mode"),
        (dict(dataset="mnist"), "unknown dataset"),
        (dict(seed=-1), "seed"),
        (dict(eps=()), "at least one"),
        (dict(eps=("8",)), "8/255"),
        (dict(attack_bn_mode="x"), "attack_bn_mode"),
    ):
        with pytest.raises(ValueError, match=msg):
            scoring.ScoreConfig(**kw)
    cfg = scoring.ScoreConfig(C=2, N=1, batch_size=4, eps=("8/255",), betas=(0.5,))
    assert cfg.kernel_names() == ["clean", "robust_eps8", "twice_eps8", "all_eps8_beta0.5", "robust_all_eps8_beta0.5"]
    assert cfg.digest() == scoring.ScoreConfig(C=2, N=1, batch_size=4, eps=(8 / 255,)).digest()
    assert cfg.digest() != scoring.ScoreConfig(C=2, N=1, batch_size=4, eps=(8 / 255,), seed=1).digest()
    assert cfg.attack_mode == cfg.bn_mode and scoring.ScoreConfig(attack_bn_mode="eval").attack_mode == "eval"
    # the default protocol: batch-statistics BN for the kernel and the attack, with the reason in the sidecar
    assert scoring.ScoreConfig().bn_mode == "train" and scoring.ScoreConfig().attack_mode == "train"
    # ... at the protocol study's base level: B=16, ε=8/255, β=0.5, PGD-5, sum read-out, C=16, N=5
    d = scoring.ScoreConfig()
    assert (d.batch_size, d.eps, d.betas, d.pgd_steps, d.output_mode, d.C, d.N) == (
        16,
        (8 / 255,),
        (0.5,),
        5,
        "sum",
        16,
        5,
    )
    assert d.kernel_names() == ["clean", "robust_eps8", "twice_eps8", "all_eps8_beta0.5", "robust_all_eps8_beta0.5"]
    # the attack seed: unset (or equal to seed) keeps the config and digest of before it existed
    assert "attack_seed" not in cfg.as_dict() and scoring.ScoreConfig(seed=2, attack_seed=2).attack_seed is None
    other = dataclasses.replace(cfg, attack_seed=1)
    assert other.digest() != cfg.digest() and other.attack_key_seed == 1 and cfg.attack_key_seed == 0
    with pytest.raises(ValueError, match="attack_seed must be None or an integer >= 0"):
        scoring.ScoreConfig(attack_seed=-1)
    prov = scoring.provenance(cfg, "0" * 16)
    assert prov["config"]["bn_mode"] == "train" and "TE-NAS" in prov["bn_mode_note"]
    assert {"jaxlib_version", "jax_enable_x64", "jax_default_matmul_precision", "xla_flags"} <= set(prov)
    assert {"enabled", "dir", "hits", "writes", "used"} <= set(prov["compile_cache"])


def test_check_batch():
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 3))
    scoring.check_batch(x, np.array([0, 1, 2, 9]), 10)
    for xx, yy, msg in (
        (x, np.array([0, 1, 2, 10]), r"\[0, 10\)"),
        (x, np.array([0, -1, 2, 3]), r"\[0, 10\)"),
        (x, np.array([0, 1, 2]), "shape|got"),
        (x * 2, np.array([0, 1, 2, 3]), r"\[0, 1\]"),
        (x, np.array([0.5, 1, 2, 3]), "integers"),
    ):
        with pytest.raises(ValueError, match=msg):
            scoring.check_batch(xx, yy, 10)


def test_one_driver_same_row_alone_or_in_a_selection(tmp_path, data_dir, capsys):
    a, b = tmp_path / "alone.csv", tmp_path / "many.csv"
    base = ["score", "--data-dir", str(data_dir), *TINY]
    assert cli.main([*base, "--arch", "2581", "--out", str(a)]) == 0
    assert cli.main([*base, "--arch", "10", "--arch", "2581", "--arch", "0", "--out", str(b)]) == 0
    da, db = pd.read_csv(a), pd.read_csv(b)
    assert list(da.columns[:4]) == ["nb201_index", "arch_str", "disconnected", "degenerate"]
    assert sorted(db["nb201_index"]) == [0, 10, 2581]
    ra, rb = da.iloc[0], db.set_index("nb201_index").loc[2581]
    for col in [c for c in da.columns if c.startswith(("lambda_", "cond_", "trace_", "logdet_"))]:
        assert ra[col] == rb[col], col  # bit-identical: the same compiled program and weights
    good = rb
    assert good["lambda_min_clean"] > 0 and not good["degenerate"] and np.isfinite(good["cond_clean"])
    disc = db.set_index("nb201_index").loc[10]
    assert disc["disconnected"] and disc["degenerate"] and disc["lambda_min_clean"] == 0.0
    side = json.loads(tables.sidecar_path(b).read_text())
    assert side["config"]["batch_size"] == 4 and side["param_definition"].startswith("supernet")
    cc = side["compile_cache"]  # this run's program: traced once (compiled, or loaded from JAX's cache)
    assert cc["traces"] == 1 and cc["compile_s"] > 0 and "dir" in side["provenance"]["compile_cache"]
    # a rerun with a smaller selection resumes (nothing to compute) and still exports every stored row
    capsys.readouterr()
    assert cli.main([*base, "--arch", "10", "--out", str(b)]) == 0
    assert "0 scored, 1 already in" in capsys.readouterr().out
    again = pd.read_csv(b)
    assert list(again["nb201_index"]) == [10, 0, 2581]  # this selection first, then the other stored rows
    pd.testing.assert_frame_equal(again.set_index("nb201_index").sort_index(), db.set_index("nb201_index").sort_index())
    # a different configuration on the same store is refused
    assert cli.main([*base, "--seed", "3", "--arch", "10", "--out", str(b)]) == 2
    assert "configuration" in capsys.readouterr().err


def test_several_draws_aggregate(tmp_path, data_dir):
    """``--attack-seeds 0 1``: two engine runs (same weights and batch, other PGD starts) and their
    aggregate: the clean kernel is the same in both draws, the robust one is not, and the
    aggregate is the geometric mean of the draws' spectra."""
    out = tmp_path / "s.csv"
    assert (
        cli.main(
            [
                "score",
                "--data-dir",
                str(data_dir),
                *TINY,
                "--arch",
                "2581",
                "--arch",
                "10",
                "--attack-seeds",
                "0",
                "1",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    agg = pd.read_csv(out).set_index("nb201_index")
    d0, d1 = (pd.read_csv(tmp_path / f"s.s0_a{a}.csv").set_index("nb201_index") for a in (0, 1))
    assert sorted(agg.index) == [10, 2581] and (agg["n_draws"] == 2).all()
    assert d0.loc[2581, "lambda_min_clean"] == d1.loc[2581, "lambda_min_clean"]
    assert agg.loc[2581, "lambda_min_clean"] == pytest.approx(d0.loc[2581, "lambda_min_clean"], rel=1e-12)
    r0, r1 = d0.loc[2581, "lambda_min_robust_eps8"], d1.loc[2581, "lambda_min_robust_eps8"]
    assert r0 != r1 and agg.loc[2581, "lambda_min_robust_eps8"] == pytest.approx(np.sqrt(r0 * r1), rel=1e-12)
    assert agg.loc[2581, "logdet_clean"] == pytest.approx(d0.loc[2581, "logdet_clean"], rel=1e-12)
    assert agg.loc[10, "degenerate"] and np.isnan(agg.loc[10, "lambda_min_clean"])  # λ_min = 0: no geometric mean
    side = json.loads(tables.sidecar_path(out).read_text())
    assert [d["attack_seed"] for d in side["draws"]] == [0, 1] and side["draws"][1]["config"]["attack_seed"] == 1


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["--arch", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"], "unknown op"),
        (["--arch", "15625"], "out of range"),
        (["--arch", ""], "empty architecture"),
        (["--arch", "nor_conv_3x3"], "is neither an NB201 index"),
        (["--arch", "1", "--beta", "1.5"], "beta must be in"),
        (["--arch", "1", "--eps", "8"], "did you mean 8/255"),
        (["--arch", "1", "--batch-size", "20000"], "20000"),
        (["--arch", "1", "--seed", "-1"], "seed must be an integer >= 0"),
        (["--arch", "1", "--sample", "3"], "exactly one of"),
        (["--arch", "1", "--time-budget", "-5"], "--time-budget"),
        (["--arch", "1", "--shard", "4/4"], "0 <= K < N"),
    ],
)
def test_cli_bad_input(argv, msg, tmp_path, data_dir, capsys):
    code = cli.main(["score", "--data-dir", str(data_dir), "--out", str(tmp_path / "o.csv"), *argv])
    assert code == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_cli_unwritable_output_fails_before_any_work(tmp_path, data_dir, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["score", "--data-dir", str(data_dir), "--arch", "1", "--out", str(blocker / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a directory" in err and str(blocker) in err
    assert cli.main(["score", "--data-dir", str(data_dir), "--arch", "1", "--out", str(tmp_path / "o.txt")]) == 2
    assert ".csv" in capsys.readouterr().err


def test_cli_missing_data(tmp_path, capsys):
    assert cli.main(["score", "--data-dir", str(tmp_path), "--arch", "1", "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "meta.json" in err and "Obtain it from" in err


def test_atomic_write_leaves_nothing_half_written(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with paths.atomic_write(p) as fh:
            fh.write("partial")
            raise RuntimeError("killed")
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["t.csv"]
    df = pd.DataFrame({"nb201_index": [1, 2], "v": [0.5, 1.5]})
    tables.write_table(df, tmp_path / "x.parquet", {"k": 1})
    pd.testing.assert_frame_equal(tables.read_table(tmp_path / "x.parquet", required=("nb201_index",)), df)
    assert tables.read_sidecar(tmp_path / "x.parquet") == {"k": 1}
    with pytest.raises(ValueError, match="has no 'arch_str' column"):
        tables.read_table(tmp_path / "x.parquet", required=("arch_str",))


def test_cli_dtype_float64_enables_x64():
    """``--dtype float64`` reaches the config and turns on x64 (in a subprocess: x64 is global)."""
    import subprocess
    import sys

    code = (
        "import jax; from robntk.cli import build_parser; from robntk.commands._common import score_config;"
        "a = build_parser().parse_args(['score', '--arch', '3', '--out', 'x.csv', '--dtype', 'float64']);"
        "assert not jax.config.jax_enable_x64; c = score_config(a);"
        "assert c.dtype == 'float64' and jax.config.jax_enable_x64;"
        "b = build_parser().parse_args(['score', '--arch', '3', '--out', 'x.csv']);"
        "assert score_config(b).dtype == 'float32'; print('ok')"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
