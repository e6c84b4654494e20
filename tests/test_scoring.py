"""Scoring pipeline on real CIFAR-10 with a tiny network; CLI bad-input handling; atomic writes."""

import json

import numpy as np
import pandas as pd
import pytest

from robntk import cli, paths, scoring

TINY = dict(C=2, N=1, batch_size=4, eps=("8/255",), betas=(0.5,), pgd_steps=2)


def test_parse_eps_and_tags():
    assert scoring.parse_eps("8/255") == pytest.approx(8 / 255)
    assert scoring.parse_eps("0.5") == 0.5 and scoring.parse_eps(0.0) == 0.0
    assert scoring.eps_tag(8 / 255) == "eps8" and scoring.eps_tag(0.5 / 255) == "eps0.5"
    assert scoring.beta_tag(0.5) == "beta0.5" and scoring.beta_tag(1.0) == "beta1"
    with pytest.raises(ValueError, match="did you mean 8/255"):
        scoring.parse_eps("8")
    for bad in ("-1/255", "abc", "1/0"):
        with pytest.raises(ValueError, match="eps"):
            scoring.parse_eps(bad)


def test_config_validation():
    with pytest.raises(ValueError, match="beta must be in"):
        scoring.ScoreConfig(betas=(1.5,))
    with pytest.raises(ValueError, match="pgd_steps"):
        scoring.ScoreConfig(pgd_steps=0)
    with pytest.raises(ValueError, match="bn_mode"):
        scoring.ScoreConfig(bn_mode="test")
    with pytest.raises(ValueError, match="unknown dataset"):
        scoring.ScoreConfig(dataset="mnist")
    cfg = scoring.ScoreConfig(**TINY)
    assert cfg.kernel_names() == ["clean", "robust_eps8", "twice_eps8", "all_eps8_beta0.5",
                                  "robust_all_eps8_beta0.5"]
    assert cfg.digest() == scoring.ScoreConfig(**TINY).digest() != scoring.ScoreConfig(**{**TINY, "seed": 1}).digest()


def test_run_score_resume_and_columns(tmp_path, data_dir, space, monkeypatch):
    cfg = scoring.ScoreConfig(**TINY)
    out = tmp_path / "s.csv"
    df = scoring.run_score([2581, 10], cfg, out, data_dir=data_dir, space=space, progress=False)
    assert list(df["nb201_index"]) == [2581, 10]
    for col in ["arch_str", "lambda_min_clean", "cond_clean", "lambda_min_robust_eps8", "lambda_min_twice_eps8",
                "lambda_min_all_eps8_beta0.5", "lambda_min_robust_all_eps8_beta0.5", "compile_s", "run_s"]:
        assert col in df.columns
    good, disc = df.iloc[0], df.iloc[1]
    assert good["lambda_min_clean"] > 0 and not good["degenerate"] and np.isfinite(good["cond_clean"])
    assert disc["disconnected"] and disc["degenerate"] and disc["lambda_min_clean"] == 0.0
    assert disc["cond_clean"] == np.inf and not df.drop(columns="arch_str").isna().any().any()
    side = json.loads(scoring.sidecar_path(out).read_text())
    assert side["config"]["batch_size"] == 4 and side["config_digest"] == cfg.digest()
    # resume: only the new arch is computed
    calls = []
    orig = scoring.score_arch
    monkeypatch.setattr(scoring, "score_arch", lambda i, *a: calls.append(i) or orig(i, *a))
    df2 = scoring.run_score([10, 2581, 0], cfg, out, data_dir=data_dir, space=space, progress=False)
    assert calls == [0] and list(df2["nb201_index"]) == [10, 2581, 0]
    pd.testing.assert_frame_equal(df2.iloc[[1]].reset_index(drop=True)[df.columns], df.iloc[[0]].reset_index(drop=True))
    with pytest.raises(ValueError, match="different configuration"):
        scoring.run_score([0], scoring.ScoreConfig(**{**TINY, "seed": 3}), out, data_dir=data_dir, space=space)


@pytest.mark.parametrize("argv, msg", [
    (["--arch", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"], "unknown op"),
    (["--arch", "15625"], "out of range"),
    (["--arch", "1", "--beta", "1.5"], "beta must be in"),
    (["--arch", "1", "--eps", "8"], "did you mean 8/255"),
    (["--arch", "1", "--batch-size", "20000"], "20000"),
    (["--arch", "1", "--sample", "3"], "exactly one of"),
])
def test_cli_bad_input(argv, msg, tmp_path, data_dir, capsys):
    code = cli.main(["score", "--data-dir", str(data_dir), "--out", str(tmp_path / "o.csv"), *argv])
    assert code == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


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


def test_cli_dtype_float64_enables_x64():
    """``--dtype float64`` reaches the config and turns on x64 (in a subprocess: x64 is global)."""
    import subprocess
    import sys

    code = ("import jax; from robntk.cli import build_parser; from robntk.scoring import config_from_args;"
            "a = build_parser().parse_args(['score', '--arch', '3', '--out', 'x.csv', '--dtype', 'float64']);"
            "assert not jax.config.jax_enable_x64; c = config_from_args(a);"
            "assert c.dtype == 'float64' and jax.config.jax_enable_x64;"
            "b = build_parser().parse_args(['score', '--arch', '3', '--out', 'x.csv']);"
            "assert config_from_args(b).dtype == 'float32'; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
