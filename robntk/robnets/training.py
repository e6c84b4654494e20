"""PGD adversarial training and white-box evaluation of the released RobNets, on robntk's one
training stack.

Training (:func:`train_robnet`, configuration :class:`robntk.robnets.config.RobNetTrainConfig`)
follows the reference gmh14/RobNets ``main.py``: PGD-7 L∞ at ε = 8/255, step 2/255, uniform random
start, crafted with the network in train mode (``net.train()``: batch statistics; the running
statistics the attack passes would update are discarded), cross-entropy on the adversarial batch
only, SGD momentum 0.9, weight decay 1e-4, RandomCrop(32, pad 4) + flip. Deviation: a cosine lr
schedule over the run (the reference steps its lr by epochs). The step is
:func:`robntk.train.step.make_step` with :class:`RobNetModel`, the optimiser
:func:`robntk.train.optim.sgd` with :func:`robntk.train.optim.cosine_lr`, and the run directory
:mod:`robntk.train.rundir` (``config.json``, orbax checkpoints every ``ckpt_every`` steps labelled
by step, ``metrics.jsonl``, ``summary.json``); a run restarted on its directory resumes from the
latest checkpoint on the same trajectory.

Evaluation (:func:`evaluate_robnet`, :class:`robntk.robnets.config.RobNetEvalConfig`): RobNets'
Table 2 — clean, FGSM, PGD-20 and PGD-100 (step ``step_size``, random start), MI-FGSM (20 steps
of ``step_size``, decay 1; Dong et al., CVPR 2018) and DeepFool (L∞, 50 steps, overshoot 0.02,
projected onto the ε-ball; Moosavi-Dezfooli et al., CVPR 2016), BN in eval mode, on a
class-balanced CIFAR-10 test subset.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robntk.core.registry import format_eps
from robntk.core.tables import write_json
from robntk.robnets.config import RobNetEvalConfig, RobNetTrainConfig
from robntk.train import rundir
from robntk.train.optim import cosine_lr, sgd
from robntk.train.step import StepSpec, epoch_batch, initial_state, make_step, resume_steps, run_steps

#: Training-log interval (steps).
LOG_EVERY = 20
#: RandomCrop padding of RobNets' CIFAR-10 training.
CROP_PAD = 4


@dataclasses.dataclass(frozen=True)
class RobNetModel:
    """A flax :class:`robntk.robnets.network.RobNet` behind the network interface of
    :func:`robntk.train.step.make_step` (TinyNetwork's ``forward`` / ``apply_train``; the
    ``cell`` argument is ignored: the genotype is part of the module)."""

    module: Any

    def forward(self, params, stats, x, cell, train: bool):
        """``(logits (B, K), {})``; ``train``: batch statistics (running-statistic updates
        discarded), else running statistics."""
        v = {"params": params, "batch_stats": stats}
        if train:
            return self.module.apply(v, x, train=True, mutable=["batch_stats"])[0], {}
        return self.module.apply(v, x, train=False), {}

    def apply_train(self, variables, x, cell):
        """Train-mode forward updating the running statistics: ``(logits, new batch_stats)``."""
        logits, new = self.module.apply(variables, x, train=True, mutable=["batch_stats"])
        return logits, new["batch_stats"]


def build_robnet(cfg: RobNetTrainConfig):
    """The flax RobNet of a training configuration (:func:`robntk.robnets.network.robnet` with
    the C/layers overrides)."""
    from robntk.robnets.network import robnet

    return robnet(cfg.model, **cfg.overrides())


def step_spec(cfg: RobNetTrainConfig) -> StepSpec:
    """RobNets' training step: PGD-``pgd_steps`` at ``eps``, step ``pgd_step_size``, crafted with
    batch statistics, running statistics updated by the loss forward, crop pad 4 + flip."""
    return StepSpec(
        method="pgd",
        eps=cfg.eps,
        attack_steps=cfg.pgd_steps,
        attack_step_size=cfg.pgd_step_size,
        augment=True,
        crop_pad=CROP_PAD,
        attack_bn="train",
        running_stats=True,
        attack_loop="fori",
    )


def total_steps(cfg: RobNetTrainConfig, n: int) -> int:
    """Optimizer steps of a run on ``n`` images: ``int(epochs · max(⌊n/B⌋, 1))``, capped by
    ``max_steps``.

    Raises:
        ValueError: fewer images than a batch, or a run of less than one step.
    """
    if cfg.batch_size > n:
        raise ValueError(f"batch_size (--batch-size) {cfg.batch_size} is larger than the data ({n} images)")
    per_epoch = max(n // cfg.batch_size, 1)
    total = int(cfg.epochs * per_epoch)
    if cfg.max_steps is not None:
        total = min(cfg.max_steps, total)
    if total < 1:
        raise ValueError(f"epochs (--epochs) {cfg.epochs} x {per_epoch} steps per epoch is less than one step")
    return total


def load_train_data(cfg: RobNetTrainConfig, data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 training images, uint8 (n, 32, 32, 3), and int32 labels: the whole split, or a
    class-balanced ``train_limit`` subset (:func:`robntk.data.datasets.balanced_indices`, ``seed``)."""
    from robntk.data.datasets import balanced_indices, load_dataset

    x, y = load_dataset("cifar10", "train", data_dir)
    if cfg.train_limit:
        i = balanced_indices(y, cfg.train_limit, seed=cfg.seed)
        x, y = x[i], y[i]
    return np.asarray(x, np.uint8), np.asarray(y, np.int32)


def train_robnet(
    cfg: RobNetTrainConfig,
    out_dir: str | Path,
    data_dir=None,
    progress: bool = True,
    data: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """PGD adversarial training of a RobNet into the run directory ``out_dir`` (module docstring).

    Step t uses the batch :func:`robntk.train.step.epoch_batch` ``(seed, t, n, batch_size)`` and
    the key ``fold_in(PRNGKey(seed), t)``; initial weights ``module.init(PRNGKey(seed))``.

    Args:
        cfg: the configuration. out_dir: run directory (resumes from its latest checkpoint).
        data_dir: data directory. progress: tqdm bar.
        data: ``(x uint8 (n, 32, 32, 3), y int (n,))`` instead of loading CIFAR-10.

    Returns:
        The summary (also ``summary.json``): model, steps, steps done, final logged loss.

    Raises:
        ValueError: ``out_dir`` holds another configuration (checked before the data are loaded),
            ``data`` not uint8 images with labels in [0, 10), a batch larger than the data, a run
            of less than one step, a corrupt checkpoint.
        PermissionError: ``out_dir`` not writable.
    """
    out = rundir.check_run_dir(out_dir, "--out")
    rundir.check_config(out, cfg.to_dict())
    if data is not None:
        from robntk.data.datasets import check_data

        check_data(data[0], data[1], 10)
    x, y = load_train_data(cfg, data_dir) if data is None else (np.asarray(data[0]), np.asarray(data[1], np.int32))
    total = total_steps(cfg, len(y))
    model = build_robnet(cfg)
    tx = sgd(cosine_lr(cfg.lr, total), cfg.momentum, cfg.weight_decay)
    v = jax.jit(lambda k: model.init(k, jnp.zeros((1,) + x.shape[1:], jnp.float32), train=False))(
        jax.random.PRNGKey(cfg.seed)
    )
    rundir.init_config(out, cfg.to_dict())
    state, start = resume_steps(out, initial_state(v["params"], tx, v["batch_stats"]), len(y), "RobNet")
    meta = {
        "n_train": len(y),
        "seed": cfg.seed,
        "model": cfg.model,
        "overrides": cfg.overrides(),
        "total_steps": total,
        "data_order": "robntk.train.step.epoch_batch(seed, step, n_train, batch_size)",
        "step_key": "fold_in(PRNGKey(seed), step)",
    }
    # scaled on the host (true division, as before the move to the train stack): the on-device
    # x / 255 of a uint8 batch is compiled differently and can differ in the last bit
    xf = x.astype(np.float32) / np.float32(255.0)
    state, _ = run_steps(
        make_step(RobNetModel(model), tx, step_spec(cfg), cell=cfg.model),
        state,
        (jnp.asarray(xf), jnp.asarray(y)),
        start=start,
        stop=total,
        batch_fn=lambda t: epoch_batch(cfg.seed, t, len(y), cfg.batch_size),
        key_fn=lambda t: jax.random.fold_in(jax.random.PRNGKey(cfg.seed), t),
        run_dir=out,
        ckpt_every=cfg.ckpt_every,
        meta=meta,
        log_every=LOG_EVERY,
        progress=progress,
        desc=f"PGD-AT {cfg.model}",
    )
    logged = rundir.read_metrics(out, key="step")
    summary = {
        "model": cfg.model,
        "overrides": cfg.overrides(),
        "total_steps": total,
        "steps_done": int(state["step"]),
        "resumed_from_step": start,
        "n_train": len(y),
        "last_logged": logged[-1] if logged else None,
        "run_dir": str(out),
    }
    rundir.write_summary(out, summary)
    return summary


def load_robnet(run_dir: str | Path) -> tuple[RobNetTrainConfig, Any, dict, dict]:
    """``(config, flax module, {'params', 'batch_stats'}, checkpoint meta)`` of the latest
    checkpoint of a :func:`train_robnet` run.

    Raises:
        FileNotFoundError: not a run directory, or no checkpoint.
        ValueError: a corrupt configuration or checkpoint (named).
    """
    d = rundir.read_config(run_dir)
    try:
        cfg = RobNetTrainConfig.from_dict(d)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{Path(run_dir) / rundir.CONFIG_FILE}: not a RobNet training configuration ({exc})") from None
    state, meta = rundir.restore_checkpoint(run_dir)
    if not isinstance(state, dict) or "params" not in state or "batch_stats" not in state:
        raise ValueError(f"checkpoint in {rundir.checkpoint_dir(run_dir)} holds no params/batch_stats")
    return cfg, build_robnet(cfg), {"params": state["params"], "batch_stats": state["batch_stats"]}, meta


def evaluate_robnet(
    cfg: RobNetEvalConfig, run_dir: str | Path, out: str | Path | None = None, data_dir=None, progress: bool = True
) -> dict[str, Any]:
    """Clean and white-box accuracies of a trained RobNet (module docstring), written to ``out``
    (default ``run_dir/eval.json``).

    Batch b0 of the test subset (``limit`` class-balanced images, seed 0) uses the PGD start key
    ``PRNGKey(b0)``.

    Returns:
        ``{'run', 'n', 'eps', 'accuracy': {attack: fraction}, 'protocol', 'checkpoint_step'}``.

    Raises:
        FileNotFoundError: not a run directory / no checkpoint. ValueError: corrupt run.
    """
    from tqdm.auto import tqdm

    from robntk.attacks.iterative import deepfool, fgsm, mifgsm, pgd
    from robntk.data.datasets import balanced_indices, load_dataset

    tcfg, model, variables, meta = load_robnet(run_dir)
    bs = variables["batch_stats"]
    f = jax.jit(lambda p, z: model.apply({"params": p, "batch_stats": bs}, z, train=False))
    params = variables["params"]
    eps, a = cfg.eps, cfg.step_size
    x, y = load_dataset("cifar10", "test", data_dir)
    i = balanced_indices(y, cfg.limit, seed=0)
    x, y = x[i].astype(np.float32) / 255.0, y[i].astype(np.int32)
    fns = {
        "clean": lambda xb, yb, k: xb,
        "fgsm": jax.jit(lambda xb, yb, k: fgsm(f, params, xb, yb, eps)),
        "pgd20": jax.jit(lambda xb, yb, k: pgd(f, params, xb, yb, eps, steps=20, alpha=a, key=k)),
        "pgd100": jax.jit(lambda xb, yb, k: pgd(f, params, xb, yb, eps, steps=100, alpha=a, key=k)),
        "mifgsm": jax.jit(lambda xb, yb, k: mifgsm(f, params, xb, yb, eps, steps=20, alpha=a)),
        "deepfool": jax.jit(
            lambda xb, yb, k: deepfool(f, params, xb, yb, num_classes=10, steps=50, norm="linf", eps=eps)
        ),
    }
    res = {}
    for name in tqdm(cfg.attack_list, desc="attacks", disable=not progress):
        correct = 0
        for b0 in range(0, len(y), cfg.batch_size):
            xb, yb = jnp.asarray(x[b0 : b0 + cfg.batch_size]), jnp.asarray(y[b0 : b0 + cfg.batch_size])
            xa = fns[name](xb, yb, jax.random.PRNGKey(b0))
            correct += int(jnp.sum(jnp.argmax(f(params, xa), -1) == yb))
        res[name] = correct / len(y)
    e, s = format_eps(eps), format_eps(a)
    record = {
        "run": str(run_dir),
        "n": len(y),
        "eps": eps,
        "accuracy": res,
        "checkpoint_step": meta.get("step"),
        "eval_config": cfg.to_dict(),
        "model": tcfg.model,
        "protocol": f"L-inf eps {e}; PGD-20/100 step {s} random start; MI-FGSM 20 steps step {s} decay 1; "
        "DeepFool L-inf 50 steps overshoot 0.02 projected onto the eps-ball; eval-mode BN",
    }
    write_json(record, Path(out) if out is not None else Path(run_dir) / "eval.json")
    return record
