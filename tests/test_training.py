"""Adversarial training (robntk.train.loop, robntk.train.optim, robntk.train.rundir, robntk.commands.train):
schedules, optimizer, data order, the training attacks, resume, NaN, run-directory errors, CLI.

Tiny configurations only (TinyNetwork C=4, N=1, 8×8 images): the whole file runs in well under
a minute on a 2-core CPU. Real-data reproduction: experiments/train_repro/.
"""

from __future__ import annotations

import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from robntk.attacks import iterative as attacks
from robntk.data.datasets import augment, balanced_subset, check_data, epoch_permutation
from robntk.train.loop import (
    NonFiniteLossError,
    TrainConfig,
    build_model,
    init_state,
    make_optimizer,
    train,
    training_attack,
)
from robntk.train.optim import onecycle_schedules
from robntk.train.rundir import CHECKPOINT_DIR, METRICS_FILE, latest_checkpoint_epoch, read_metrics, restore_checkpoint

ARCH_T = "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|none~2|"


def torch_onecycle(step, total, max_lr=0.1, pct=0.3, div=25.0, fdiv=1e4, base_m=0.85, max_m=0.95):
    """Transcription of torch.optim.lr_scheduler.OneCycleLR.get_lr (cos, two phases)."""
    initial = max_lr / div
    min_lr = initial / fdiv
    phases = [
        dict(end=float(pct * total) - 1, lr=(initial, max_lr), m=(max_m, base_m)),
        dict(end=total - 1, lr=(max_lr, min_lr), m=(base_m, max_m)),
    ]
    start = 0.0
    for i, ph in enumerate(phases):
        if step <= ph["end"] or i == len(phases) - 1:
            p = (step - start) / (ph["end"] - start)

            def cos(a, b):
                return b + (a - b) / 2.0 * (math.cos(math.pi * p) + 1)

            return cos(*ph["lr"]), cos(*ph["m"])
        start = ph["end"]


def learnable_data(n=64, side=8, seed=0):
    """10 classes separable by brightness (so a few steps of training help)."""
    rng = np.random.default_rng(seed)
    y = np.tile(np.arange(10), n // 10 + 1)[:n]
    rng.shuffle(y)
    x = np.clip(rng.normal(0, 12, (n, side, side, 3)) + 20 + 22 * y[:, None, None, None], 0, 255).astype(np.uint8)
    return x, y.astype(np.int64)


# ---------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("total", [9750, 50, 7])
def test_onecycle_matches_pytorch_closed_form(total):
    lr_fn, m_fn = onecycle_schedules(total)
    peak = int(0.3 * total) - 1
    for step in sorted({0, 1, 2, peak, peak + 1, total // 2, total - 2, total - 1}):
        lr, m = torch_onecycle(step, total)
        assert float(lr_fn(step)) == pytest.approx(lr, rel=2e-6, abs=1e-12), step
        assert float(m_fn(step)) == pytest.approx(m, rel=2e-6), step
    # the protocol's anchor values
    assert float(lr_fn(0)) == pytest.approx(0.1 / 25, rel=1e-6)
    assert float(m_fn(0)) == pytest.approx(0.95, rel=1e-6)
    assert float(lr_fn(total - 1)) == pytest.approx(0.1 / 25 / 1e4, rel=1e-5)
    assert float(m_fn(total - 1)) == pytest.approx(0.95, rel=1e-6)


def test_onecycle_peak_and_optax_offset():
    total = 50 * 195  # 50 epochs of 195 full batches of 256 (CIFAR, last partial batch dropped)
    lr_fn, m_fn = onecycle_schedules(total)
    assert float(lr_fn(2924)) == pytest.approx(0.1, rel=1e-6)  # PyTorch peaks at pct*T - 1
    assert float(m_fn(2924)) == pytest.approx(0.85, rel=1e-6)
    optax_lr = optax.cosine_onecycle_schedule(total, 0.1)
    assert float(optax_lr(2925)) == pytest.approx(0.1, rel=1e-6)  # optax one step later
    assert float(optax_lr(2924)) < 0.1
    steps = jnp.arange(total)
    rel = jnp.max(jnp.abs(jax.vmap(optax_lr)(steps) - lr_fn(steps)) / lr_fn(steps))
    assert float(rel) > 1e-3  # measurably different (up to ~12% near the end): we do not use it


def test_optimizer_matches_torch_sgd_recurrence():
    """optax chain == torch SGD(momentum, weight_decay) under OneCycleLR, step by step."""
    cfg = TrainConfig(arch=ARCH_T, epochs=1, batch_size=1)
    total = 7
    tx = make_optimizer(cfg, total)
    target = np.array([1.0, -2.0, 0.5], np.float32)
    theta = {"w": jnp.asarray([0.3, 0.1, -0.4], jnp.float32)}
    state = tx.init(theta)
    ref = np.array([0.3, 0.1, -0.4], np.float64)
    buf = None
    for t in range(total):
        g = {"w": 2.0 * (theta["w"] - target)}
        upd, state = tx.update(g, state, theta)
        theta = optax.apply_updates(theta, upd)
        lr, m = torch_onecycle(t, total)
        d = 2.0 * (ref - target) + 5e-4 * ref  # torch: d_p = grad + wd * p
        buf = d.copy() if buf is None else m * buf + d  # first step: buf = d_p
        ref = ref - lr * buf
        assert np.allclose(np.asarray(theta["w"]), ref, rtol=1e-5, atol=1e-7), t
        assert float(state[1].hyperparams["momentum"]) == pytest.approx(m, rel=1e-6)


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(eps=-0.1), "eps"),
        (dict(eps=2.0), "eps"),
        (dict(epochs=0), "epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(method="madry"), "method"),
        (dict(dataset="mnist"), "dataset"),
        (dict(attack_steps=0), "attack_steps"),
        (dict(method="fgsm", attack_steps=3), "single-step"),
        (dict(attack_step_size=-1.0), "attack_step_size"),
        (dict(max_lr=0.0), "max_lr"),
        (dict(weight_decay=-1.0), "weight_decay"),
        (dict(base_momentum=0.99), "momenta"),
        (dict(pct_start=1.5), "pct_start"),
        (dict(arch="|bad|"), "arch"),
    ],
)
def test_config_rejects_bad_values(kwargs, word):
    kw = dict(arch=ARCH_T) | kwargs
    with pytest.raises(ValueError, match=word):
        TrainConfig(**kw)


def test_config_defaults_are_the_benchmark_protocol():
    cfg = TrainConfig(arch=ARCH_T)
    assert (cfg.epochs, cfg.batch_size, cfg.C, cfg.N, cfg.max_lr, cfg.weight_decay) == (50, 256, 16, 5, 0.1, 5e-4)
    assert cfg.steps_resolved == 7 and cfg.step_size_resolved == pytest.approx(2 / 255)
    assert cfg.eps == pytest.approx(8 / 255)
    fg = TrainConfig(arch=ARCH_T, method="fgsm")
    assert fg.steps_resolved == 1 and fg.step_size_resolved == pytest.approx(1.25 * 8 / 255)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_check_data_errors():
    x = np.zeros((10, 8, 8, 3), np.uint8)
    y = np.zeros(10, np.int64)
    with pytest.raises(ValueError, match="batch_size 16 is larger than the data"):
        check_data(x, y, 10, batch_size=16)
    with pytest.raises(ValueError, match="uint8"):
        check_data(x.astype(np.float32), y, 10)
    with pytest.raises(ValueError, match="labels must be in"):
        check_data(x, y + 10, 10)


# ---------------------------------------------------------------------------- data


def test_augment_is_crop_of_padded_image_or_its_flip():
    x = jnp.arange(2 * 5 * 5 * 1, dtype=jnp.float32).reshape(2, 5, 5, 1) + 1.0
    pad = 1
    xp = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    seen = set()
    for s in range(30):
        out = np.asarray(augment(jax.random.key(s), x, pad))
        assert out.shape == x.shape
        for b in range(2):
            hits = [
                (i, j, fl)
                for i in range(2 * pad + 1)
                for j in range(2 * pad + 1)
                for fl in (0, 1)
                if np.array_equal(
                    out[b], (xp[b, i : i + 5, j : j + 5] if not fl else xp[b, i : i + 5, j : j + 5][:, ::-1])
                )
            ]
            assert hits, "output is not a crop (or flipped crop) of the padded image"
            seen.update(hits)
    assert len(seen) >= 12  # offsets and flips vary


def test_balanced_subset_on_class_sorted_labels():
    y = np.repeat(np.arange(10), 100)  # sorted by class, like the JPEG CIFAR-10 npz
    idx = balanced_subset(y, 30, seed=0)
    assert len(idx) == 30 and np.all(np.diff(idx) > 0)
    assert np.all(np.bincount(y[idx], minlength=10) == 3)
    assert np.array_equal(idx, balanced_subset(y, 30, seed=0))
    assert len(balanced_subset(y, None)) == 1000
    with pytest.raises(ValueError):
        balanced_subset(y, 0)


def test_data_order_is_a_function_of_seed_and_epoch():
    a = epoch_permutation(3, 5, 100)
    assert np.array_equal(a, epoch_permutation(3, 5, 100))
    assert not np.array_equal(a, epoch_permutation(3, 6, 100))
    assert not np.array_equal(a, epoch_permutation(4, 5, 100))
    assert np.array_equal(np.sort(a), np.arange(100))


def test_unrolled_training_pgd_equals_attacks_pgd():
    rng = np.random.default_rng(0)
    W = jnp.asarray(rng.normal(size=(48, 10)), jnp.float32)

    def f(p, x):
        return x.reshape(x.shape[0], -1) @ p

    x = jnp.asarray(rng.uniform(0, 1, (6, 4, 4, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 6))
    key = jax.random.key(7)
    ours = training_attack(TrainConfig(arch=ARCH_T), f)(W, x, y, key)  # PGD-7 x 2/255, unrolled
    ref = attacks.pgd(f, W, x, y, 8 / 255, steps=7, alpha=2 / 255, random_init=True, key=key)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=1e-6)
    assert float(jnp.max(jnp.abs(ours - x))) <= 8 / 255 + 1e-6


def _trades_reference(f, params, x, key, eps, steps, step_size):
    """The pre-refactor TRADES inner maximisation, transcribed from ``trades.py``: start at
    x + 0.001·N(0, I), signed steps on Σ KL(f(x) ‖ f(x')), projection after each step."""
    p_nat = jax.nn.softmax(f(params, x))
    xa = x + 0.001 * jax.random.normal(key, x.shape, x.dtype)
    for _ in range(steps):
        g = jax.grad(lambda z: attacks.kl_divergence(f(params, z), p_nat))(xa)
        xa = attacks.project(xa + step_size * jnp.sign(g), x, eps)
    return xa


def test_trades_attack_is_attacks_pgd_with_normal_start_and_kl():
    rng = np.random.default_rng(1)
    W = jnp.asarray(rng.normal(size=(48, 10)), jnp.float32)

    def f(p, x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ p)

    x = jnp.asarray(rng.uniform(0, 1, (6, 4, 4, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 6))
    key = jax.random.key(3)
    cfg = TrainConfig(arch=ARCH_T, method="trades", attack_steps=4)
    ours = jax.jit(training_attack(cfg, f))(W, x, y, key)
    ref = jax.jit(lambda w: _trades_reference(f, w, x, key, 8 / 255, 4, 0.007))(W)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))  # the same algorithm, bitwise
    assert float(jnp.max(jnp.abs(ours - x))) <= 8 / 255 + 1e-6
    # KL by hand: p log p - p log q summed
    p = jax.nn.softmax(jnp.asarray([[1.0, 0.0]]))
    q_logits = jnp.asarray([[0.0, 1.0]])
    q = jax.nn.softmax(q_logits)
    np.testing.assert_allclose(float(attacks.kl_divergence(q_logits, p)), float(jnp.sum(p * jnp.log(p / q))), rtol=1e-6)


# ---------------------------------------------------------------------------- training runs


@pytest.fixture(scope="module")
def pgd_runs(tmp_path_factory):
    """One uninterrupted 3-epoch PGD-AT run and one stopped after 2 epochs (reused by tests;
    3 attack steps instead of 7 to keep compilation short)."""
    x, y = learnable_data()
    cfg = TrainConfig(arch=ARCH_T, C=4, N=1, epochs=3, batch_size=16, seed=1, attack_steps=3)
    full = tmp_path_factory.mktemp("full")
    part = tmp_path_factory.mktemp("part")
    s_full = train(cfg, x, y, full, progress=False)
    s_part = train(cfg, x, y, part, progress=False, stop_after_epochs=2)
    return dict(cfg=cfg, x=x, y=y, full=full, part=part, s_full=s_full, s_part=s_part)


def _assert_same_tree(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_run_outputs(pgd_runs):
    full, s = pgd_runs["full"], pgd_runs["s_full"]
    assert s["complete"] and s["epochs_done"] == 3 and s["steps_per_epoch"] == 4
    recs = read_metrics(full)
    assert [r["epoch"] for r in recs] == [1, 2, 3]
    assert all(math.isfinite(r["train_loss"]) for r in recs)
    assert recs[-1]["lr_last"] == pytest.approx(0.1 / 25 / 1e4, rel=1e-4)  # schedule ends at its minimum
    assert (full / "training.png").stat().st_size > 1000
    assert json.loads((full / "summary.json").read_text())["complete"]
    assert json.loads((full / "config.json").read_text())["arch"] == ARCH_T
    assert pgd_runs["s_part"]["epochs_done"] == 2 and not pgd_runs["s_part"]["complete"]


def test_resume_continues_the_same_trajectory(pgd_runs):
    cfg, x, y, full, part = (pgd_runs[k] for k in ("cfg", "x", "y", "full", "part"))
    # simulate a kill during epoch 2's checkpoint save: drop checkpoint 2 (its log line stays)
    shutil.rmtree(part / CHECKPOINT_DIR / "2")
    assert latest_checkpoint_epoch(part) == 1 and len(read_metrics(part)) == 2
    train(cfg, x, y, part, progress=False)
    target = init_state(build_model(cfg), make_optimizer(cfg, 12), cfg)
    s_full, m_full = restore_checkpoint(full, target)
    s_part, m_part = restore_checkpoint(part, target)
    assert m_full["epoch"] == m_part["epoch"] == 3 and int(s_part["step"]) == 12
    _assert_same_tree(s_full, s_part)  # params, batch_stats, optimizer state: bitwise
    drop = {"epoch_time_s", "images_per_s"}
    clean = [{k: v for k, v in r.items() if k not in drop} for r in read_metrics(part)]
    assert clean == [{k: v for k, v in r.items() if k not in drop} for r in read_metrics(full)]


def test_training_reduces_the_adversarial_loss(pgd_runs):
    cfg, x, y, full = (pgd_runs[k] for k in ("cfg", "x", "y", "full"))
    recs = read_metrics(full)
    assert recs[-1]["train_loss"] < recs[0]["train_loss"]
    model = build_model(cfg)
    s0 = init_state(model, make_optimizer(cfg, 12), cfg)
    s1, _ = restore_checkpoint(full, s0)
    xb = jnp.asarray(x, jnp.float32) / 255.0
    yb = jnp.asarray(y, jnp.int32)

    @jax.jit
    def adv_loss(params, batch_stats):
        def f(p, z):
            return model.apply({"params": p, "batch_stats": batch_stats}, z, cfg.arch, train=False)

        xa = attacks.pgd(f, params, xb, yb, cfg.eps, steps=3, key=jax.random.key(0), unroll=True)
        return attacks.cross_entropy(f(params, xa), yb)

    before = float(adv_loss(s0["params"], s0["batch_stats"]))
    after = float(adv_loss(s1["params"], s1["batch_stats"]))
    assert after < before - 0.05


def test_resume_with_a_different_config_is_an_error(pgd_runs):
    cfg = TrainConfig(**{**pgd_runs["cfg"].__dict__, "seed": 2})
    with pytest.raises(ValueError, match="different configuration"):
        train(cfg, pgd_runs["x"], pgd_runs["y"], pgd_runs["full"], progress=False)


def test_trades_objective_runs(tmp_path):
    """TRADES (natural CE + β·KL, three train-mode forwards) trains finitely. (FGSM-AT is the PGD
    path with one step of 1.25·eps: covered by the config test and the PGD runs.)"""
    x, y = learnable_data(32)
    cfg = TrainConfig(arch=ARCH_T, C=4, N=1, epochs=1, batch_size=16, method="trades", attack_steps=2)
    s = train(cfg, x, y, tmp_path, progress=False)
    assert s["complete"] and math.isfinite(s["final"]["train_loss"]) and s["final"]["method"] == "trades"
    assert s["final"]["train_loss"] > 0


def test_non_finite_loss_stops_the_run(tmp_path):
    x, y = learnable_data(32)
    cfg = TrainConfig(arch=ARCH_T, C=4, N=1, epochs=2, batch_size=16, method="clean", max_lr=1e30)
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        train(cfg, x, y, tmp_path, progress=False)
    assert latest_checkpoint_epoch(tmp_path) is None  # nothing bad was checkpointed
    assert not (tmp_path / METRICS_FILE).exists() or read_metrics(tmp_path) == []


# ---------------------------------------------------------------------------- run directory errors


def test_corrupt_and_incomplete_run_directories_are_named(pgd_runs, tmp_path):
    import robntk.train.loop as T

    run = tmp_path / "run"
    shutil.copytree(pgd_runs["full"], run)
    (run / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"corrupt run configuration .*config\.json"):
        T.load_trained(run)
    (run / "config.json").write_text(json.dumps({"arch": ARCH_T, "epochs": "three"}))
    with pytest.raises(ValueError, match=r"config\.json: epochs must be an integer"):
        T.load_trained(run)
    shutil.copy(pgd_runs["full"] / "config.json", run / "config.json")
    ckpt = run / CHECKPOINT_DIR / "3"
    shutil.rmtree(next(p for p in ckpt.iterdir() if p.is_dir() and p.name == "state"))
    with pytest.raises(ValueError, match=rf"checkpoint {ckpt} is incomplete or corrupt"):
        T.load_trained(run)
    with pytest.raises(FileNotFoundError, match="not a robntk training run directory"):
        T.load_trained(tmp_path / "nope")


def test_unwritable_run_directory_fails_before_training(tmp_path):
    x, y = learnable_data(32)
    blocker = tmp_path / "blocker"  # a file where a directory is needed: unwritable even for root
    blocker.write_text("")
    cfg = TrainConfig(arch=ARCH_T, C=4, N=1, epochs=1, batch_size=16, method="clean")
    with pytest.raises(PermissionError, match=f"cannot write --out {blocker / 'run'}"):
        train(cfg, x, y, blocker / "run", progress=False)


# ---------------------------------------------------------------------------- CLI


def test_cli_train_bad_input_exit_code_2(tmp_path, capsys):
    from robntk.cli import main

    base = ["train", "--arch", ARCH_T, "--out", str(tmp_path / "r"), "--data-dir", str(tmp_path)]
    assert main(base + ["--method", "madry"]) == 2
    assert "unknown training method 'madry'" in capsys.readouterr().err
    assert main(base + ["--eps=-3/255"]) == 2
    assert "eps must be in [0, 1] pixel units" in capsys.readouterr().err
    assert main(base + ["--eps", "8"]) == 2  # the one eps convention: pixel units
    assert "did you mean 8/255?" in capsys.readouterr().err
    assert main(base + ["--attack-step-size", "2"]) == 2
    assert "did you mean 2/255?" in capsys.readouterr().err
    assert main(base + ["--epochs", "0"]) == 2
    assert main(base + ["--seed", "-1"]) == 2
    assert "seed must be a non-negative integer, got -1" in capsys.readouterr().err
    assert main(base + ["--stop-after-epochs", "0"]) == 2
    assert not (tmp_path / "r").exists()  # nothing was written


def test_cli_train_flags_come_from_the_config():
    import argparse

    from robntk.commands import train as cmd
    from robntk.commands._flags import config_from_args

    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    a = p.parse_args(
        ["--arch", ARCH_T, "--out", "x", "--eps", "4/255", "--attack-step-size", "1/255", "--lr", "0.2", "--no-augment"]
    )
    cfg = config_from_args(TrainConfig, a, arch=ARCH_T)
    assert cfg.eps == pytest.approx(4 / 255) and cfg.step_size_resolved == pytest.approx(1 / 255)
    assert cfg.max_lr == 0.2 and not cfg.augment
    d = config_from_args(TrainConfig, p.parse_args(["--arch", ARCH_T, "--out", "x"]), arch=ARCH_T)
    assert d == TrainConfig(arch=ARCH_T)  # every default comes from TrainConfig


def test_cli_train_and_resume(tmp_path, monkeypatch, capsys):
    import robntk.commands.train as cmd
    from robntk.cli import main

    x, y = learnable_data(32)
    monkeypatch.setattr(cmd, "load_split", lambda *a, **k: (x, y))
    out = tmp_path / "run"
    args = [
        "train",
        "--arch",
        ARCH_T,
        "--C",
        "4",
        "--N",
        "1",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--method",
        "clean",
        "--out",
        str(out),
        "--no-progress",
        "--data-dir",
        str(tmp_path),
    ]
    assert main(args + ["--stop-after-epochs", "1"]) == 0
    assert latest_checkpoint_epoch(out) == 1
    assert main(args) == 0  # resumes
    assert latest_checkpoint_epoch(out) == 2 and len(read_metrics(out)) == 2
    fresh = [str(tmp_path / "run2") if a == str(out) else a for a in args]
    assert main(fresh + ["--batch-size", "64"]) == 2  # 64 > 32 images
    assert "larger than the data" in capsys.readouterr().err
    # a different configuration on the same directory is refused before the data are loaded
    monkeypatch.setattr(cmd, "load_split", lambda *a, **k: pytest.fail("data loaded before the config check"))
    assert main(args + ["--seed", "5"]) == 2
    assert "different configuration" in capsys.readouterr().err


def test_train_repro_commands_parse():
    """experiments/train_repro/command.sh uses the current flags (pixel-unit eps) and yields the
    protocol's configurations."""
    import shlex
    from pathlib import Path

    from robntk.cli import build_parser
    from robntk.commands._flags import config_from_args
    from robntk.train.eval_config import EvalConfig

    text = (Path(__file__).resolve().parents[1] / "experiments" / "train_repro" / "command.sh").read_text()
    lines = [ln for ln in text.replace("\\\n", " ").splitlines() if ln.startswith("python -m robntk.cli")]
    assert len(lines) == 2
    argv = [shlex.split(ln.replace('"$DATA"', "data").replace('"$RUN"', "run"))[3:] for ln in lines]
    t = build_parser().parse_args(argv[0])
    cfg = config_from_args(TrainConfig, t, arch=ARCH_T)
    assert (cfg.method, cfg.epochs, cfg.train_limit, cfg.eps) == ("pgd", 5, 2560, pytest.approx(8 / 255))
    e = config_from_args(EvalConfig, build_parser().parse_args(argv[1]))
    assert e.eps == pytest.approx((3 / 255, 8 / 255)) and e.aa_eps == pytest.approx((8 / 255,))
    assert e.square_queries == 500 and e.attacks[0] == "clean" and len(e.attacks) == 7
