"""`robntk bound` (quick grid), result files, and the notebook's code cells."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robntk import cli
from robntk.theory import experiment as ex

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bounds")
    df = ex.run_experiment(quick=True, out_dir=out)
    return df, out


def test_quick_experiment_outputs(quick_run):
    df, out = quick_run
    for name in (
        "bounds.csv",
        "config.json",
        "summary.md",
        "lambda_vs_width.png",
        "lambda_vs_rho.png",
        "lambda_vs_beta.png",
        "ratio_by_arch.png",
        "cnn_filter_size.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "lambda_vs_width.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp")) and not list(out.glob(".*"))  # no leftovers of atomic writes
    csv = pd.read_csv(out / "bounds.csv")
    assert len(csv) == len(df) > 0
    cfg = ex.QUICK_CONFIG
    n_archs = len(cfg["fcn"]["activations"]) * len(cfg["fcn"]["structures"]) + 1
    assert len(df) == (n_archs - 1) * 2 * 3 * 2 + 1 * 1 * 3 * 2  # FCN: widths × β × kernels; CNN 1 width
    assert {"lam_emp", "lam_ana", "bound", "bound_eig", "bound_path", "bound_apriori", "ratio_ana"} <= set(csv.columns)
    # the bounds are true inequalities for the analytic kernel
    for col in ("holds_ana", "holds_ana_gershgorin", "holds_ana_eig", "holds_ana_path", "holds_ana_apriori"):
        assert df[col].all(), col
    assert (df["bound"] > 0).all() and (df["ratio_ana"] >= 1).all()
    # identities: β = 0 rows of K_all are the clean kernel; β = 1 K_all = β = 0 K̃_all (both K̃_ε)
    k0 = df[(df.kernel == "K_all") & (df.beta == 0.0)]
    assert np.allclose(k0.groupby(["arch", "width"])["lam_ana"].nunique(), 1)
    a = df[(df.kernel == "K_all") & (df.beta == 1.0)].set_index(["arch", "width", "rho"])["lam_emp"]
    b = df[(df.kernel == "K_tilde_all") & (df.beta == 0.0)].set_index(["arch", "width", "rho"])["lam_emp"]
    np.testing.assert_allclose(a.sort_index(), b.sort_index(), rtol=1e-10)
    meta = json.loads((out / "config.json").read_text())
    assert meta["config"]["fcn"]["widths"] == cfg["fcn"]["widths"]
    assert meta["summary"]["all"]["held_analytic"] == len(df)


def test_cli_bound_quick_and_errors(tmp_path, capsys):
    out = tmp_path / "res"
    override = tmp_path / "cfg.json"
    override.write_text(
        json.dumps({"fcn": {"activations": ["gelu"], "structures": [[2, "all"]]}, "cnn": {"activations": []}})
    )
    assert cli.main(["bound", "--quick", "--out", str(out), "--no-plots", "--config", str(override)]) == 0
    assert "| all |" in capsys.readouterr().out
    df = pd.read_csv(out / "bounds.csv")
    assert set(df["activations"]) == {"gelu|gelu"} and df["holds_ana"].all()
    assert cli.main(["bound", "--quick", "--out", str(out), "--widths", "0"]) == 2
    assert "--widths must be integers >= 1, got 0" in capsys.readouterr().err
    override.write_text(json.dumps({"betas": [0.5, 2.0]}))
    assert cli.main(["bound", "--quick", "--out", str(out), "--config", str(override)]) == 2
    assert "beta must be in [0, 1], got 2.0" in capsys.readouterr().err
    override.write_text(json.dumps({"rhos": [-0.1]}))
    assert cli.main(["bound", "--quick", "--out", str(out), "--config", str(override)]) == 2
    override.write_text(json.dumps({"fcn": {"activations": ["elu"]}}))
    assert cli.main(["bound", "--quick", "--out", str(out), "--config", str(override)]) == 2
    assert "unknown activation 'elu'" in capsys.readouterr().err
    override.write_text(json.dumps({"widths": [1]}))
    assert cli.main(["bound", "--quick", "--out", str(out), "--config", str(override)]) == 2
    assert "unknown config key 'widths'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "override, flags, msg",
    [
        ({"betas": 0.5}, [], "config key 'betas' must be a list, got number 0.5"),
        ({"seeds": ["a"]}, [], "config key 'seeds[0]' must be an int, got string 'a'"),
        ({"seeds": []}, [], "config key 'seeds' must list at least one value"),
        ({"fcn": 5}, [], "config key 'fcn' must be an object, got int 5"),
        ({"fcn": {"structures": [[2]]}}, [], "config key 'fcn.structures[0]' must be a list like [1, 'none']"),
        ({"fcn": {"depth": 2}}, [], "unknown config key 'fcn.depth'"),
        ({"attack_width": None, "rhos": [0.3]}, ["--seeds", "-1"], "--seeds must be an integer >= 0, got -1"),
        ({}, ["--seeds", ","], "--seeds must list at least one integer, got ','"),
        ({}, ["--widths", "a,b"], "--widths must be comma-separated integers, got 'a,b'"),
    ],
)
def test_cli_bound_config_type_errors(override, flags, msg, tmp_path, capsys):
    """Type errors in --config / --seeds are one-line errors (exit 2) before anything runs."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(override))
    out = tmp_path / "res"
    assert cli.main(["bound", "--quick", "--out", str(out), "--no-plots", "--config", str(cfg), *flags]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_cli_bound_bad_files(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text("{betas: [0.5]")
    assert cli.main(["bound", "--quick", "--out", str(tmp_path / "r"), "--config", str(cfg)]) == 2
    assert f"config file {cfg} is not valid JSON" in capsys.readouterr().err
    blocker = tmp_path / "blocker"  # a file where a directory is needed: unwritable even for root
    blocker.write_text("")
    assert cli.main(["bound", "--quick", "--out", str(blocker / "res"), "--no-plots"]) == 2
    assert f"cannot write --out {blocker / 'res'}" in capsys.readouterr().err


def test_check_override_is_the_theory_packages():
    """The type check of grid overrides lives in robntk.theory (robntk bound only calls it)."""
    from robntk.theory import check_override

    ok = {"fcn": {"widths": [8, 16], "structures": [[2, "all"]]}, "attack_width": None, "betas": [0, 1]}
    assert check_override(ok) is ok
    with pytest.raises(ValueError, match=r"config key 'betas\[1\]' must be a number, got string 'x'"):
        check_override({"betas": [0.5, "x"]})
    with pytest.raises(ValueError, match="the configuration must be a JSON object, got list"):
        check_override([1])
    with pytest.raises(ValueError, match=r"unknown config key 'depth'; allowed: a"):
        check_override({"depth": 2}, template={"a": 1})
