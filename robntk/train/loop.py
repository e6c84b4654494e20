"""Adversarial training of NAS-Bench-201 networks, as NAS-RobBench-201 did it, in JAX.

Protocol (Wu et al., ICLR 2024, official code github.com/TT2408/nasrobbench201 ``main.py`` and
``utils_data.py``), the default of :class:`TrainConfig`:

* the one NB201 network (:class:`robntk.nb201.network.TinyNetwork`, C=16, N=5) with the benchmark's
  input normalisation inside, so images are NHWC in [0, 1]; initial weights = "init seed s"
  (``TinyNetwork.init(PRNGKey(seed), arch=arch)``, the same weights ``robntk score --seed s``
  scores);
* PGD-AT (Madry et al., ICLR 2018): PGD L∞, eps 8/255, step 2/255, 7 steps, uniform random start
  (torchattacks 3.4.0 ``PGD``), crafted with BatchNorm in **eval** mode (running statistics);
  the update is then computed in **train** mode on the adversarial batch only (cross-entropy);
* SGD, momentum 0.9, weight decay 5e-4 coupled as PyTorch does, under PyTorch ``OneCycleLR``
  (max lr 0.1) stepped per iteration (:mod:`robntk.train.optim`);
* 50 epochs, batch 256, RandomCrop(32, pad 4) + horizontal flip (ImageNet16-120: crop 16, pad 2),
  done on device (:func:`robntk.data.datasets.augment`).

Other methods (``method=``): ``'fgsm'`` — "fast" FGSM-AT with a uniform random start in the
ε-ball and step 1.25·ε (Wong, Rice & Kolter, ICLR 2020); ``'trades'`` — TRADES (Zhang et al.,
ICML 2019), β = 6, KL inner maximisation from x + 0.001·N(0, I), 10 steps of 0.007 by default;
``'clean'`` — standard training. Every training attack is :func:`robntk.attacks.iterative.pgd` (unrolled
in the trace), crafted with BN in eval mode.

Deviation from the reference, by design: the last partial batch of each epoch is **dropped**
(the reference's DataLoader keeps it: 196 steps/epoch on CIFAR with a final batch of 80, here
195 steps of 256), so that the jitted train step has one shape. The OneCycle schedule is built
on the number of steps actually taken (epochs × ⌊N/B⌋), so it still ends at its minimum.

Determinism and resume: the data order of epoch ``e`` is
``numpy.random.default_rng([seed, e]).permutation(N)`` (:func:`robntk.data.datasets.epoch_permutation`)
and the PRNG key of step ``s`` of epoch ``e`` (augmentation + attack start) is
``fold_in(fold_in(fold_in(key(seed), 1), e), s)`` (:func:`step_key`); both are pure functions of
(seed, epoch, step), so they are the whole "data-order RNG state". A checkpoint (end of every
epoch, :mod:`robntk.train.rundir`) holds params, batch_stats, the optimizer state and the step
counter; a run restarted on the same directory resumes from the last checkpoint and continues
the **same** trajectory (bitwise on the same machine; tested).

Usage::

    from robntk.train.loop import TrainConfig, train
    cfg = TrainConfig(arch="|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+"
                           "|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|", epochs=50)
    summary = train(cfg, x_train_uint8, y_train, "runs/2581_seed0")

or ``robntk train --arch 2581 --dataset cifar10 --eps 8/255 --out runs/2581_seed0``
(:mod:`robntk.commands.train`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from robntk.data.datasets import check_data, epoch_permutation
from robntk.nb201.network import TinyNetwork
from robntk.train import rundir
from robntk.train import step as step_lib
from robntk.train.config import NonFiniteLossError, TrainConfig, _is_int, read_train_config
from robntk.train.optim import onecycle_schedules, sgd_onecycle
from robntk.train.step import StepSpec

# --------------------------------------------------------------------------------------------
# network, optimiser, keys


def build_model(cfg: TrainConfig) -> TinyNetwork:
    """The TinyNetwork of a config (logits over ``cfg.num_classes``)."""
    return TinyNetwork.for_dataset(cfg.dataset, C=cfg.C, N=cfg.N, init_scheme=cfg.init_scheme)


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """The run's SGD under OneCycle (:func:`robntk.train.optim.sgd_onecycle` with the config's values)."""
    return sgd_onecycle(
        total_steps,
        max_lr=cfg.max_lr,
        pct_start=cfg.pct_start,
        div_factor=cfg.div_factor,
        final_div_factor=cfg.final_div_factor,
        base_momentum=cfg.base_momentum,
        max_momentum=cfg.max_momentum,
        weight_decay=cfg.weight_decay,
    )


def lr_curve(cfg: TrainConfig, steps_per_epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """``(epoch position (T,), lr (T,))`` of the run's whole OneCycle schedule (for the figure)."""
    total = cfg.epochs * steps_per_epoch
    lr_fn, _ = onecycle_schedules(
        total, cfg.max_lr, cfg.pct_start, cfg.div_factor, cfg.final_div_factor, cfg.base_momentum, cfg.max_momentum
    )
    t = np.arange(total)
    return t / steps_per_epoch, np.asarray(lr_fn(t))


def init_state(model: TinyNetwork, tx: optax.GradientTransformation, cfg: TrainConfig) -> dict:
    """Initial train state ``{'params', 'batch_stats', 'opt_state', 'step'}``: the network of
    ``cfg.arch`` for "init seed s" = ``cfg.seed`` (``model.init(PRNGKey(seed), arch=cfg.arch)``)."""
    variables = model.init(jax.random.PRNGKey(cfg.seed), arch=cfg.arch)
    params = variables["params"]
    return {
        "params": params,
        "batch_stats": variables["batch_stats"],
        "opt_state": tx.init(params),
        "step": jnp.asarray(0, jnp.int32),
    }


def step_key(seed: int, epoch: int, step: int) -> jax.Array:
    """PRNG key of one train step (augmentation, attack start): a function of (seed, epoch, step)."""
    k = jax.random.fold_in(jax.random.key(int(seed)), 1)
    return jax.random.fold_in(jax.random.fold_in(k, int(epoch)), int(step))


# --------------------------------------------------------------------------------------------
# the train step


def training_attack(cfg: TrainConfig, f_eval: Callable) -> Callable:
    """The training attack ``(params, x, y, key) -> x_in`` of ``cfg.method``
    (:func:`robntk.train.step.training_attack` of :meth:`StepSpec.of(cfg) <robntk.train.step.StepSpec.of>`),
    all :func:`robntk.attacks.iterative.pgd` with the steps unrolled in the trace (few steps; XLA:CPU runs ops
    in a rolled loop several times slower, benchmarks/RESULTS.md §5): PGD-AT and FGSM-AT (one step of 1.25·ε) from a uniform random
    start on the cross-entropy; TRADES from x + 0.001·N(0, I) on Σ KL(f(x) ‖ f(x')); ``'clean'``
    returns x. ``f_eval`` is the network with BN in eval mode."""
    return step_lib.training_attack(StepSpec.of(cfg), f_eval)


@functools.lru_cache(maxsize=8)
def compiled_train_step(cfg: TrainConfig, total_steps: int) -> Callable:
    """Memoised :func:`make_train_step` for ``(cfg, total_steps)``: a resumed or repeated run in
    the same process reuses the compiled step instead of compiling it again."""
    return make_train_step(build_model(cfg), make_optimizer(cfg, total_steps), cfg)


def make_train_step(model: TinyNetwork, tx: optax.GradientTransformation, cfg: TrainConfig) -> Callable:
    """The jitted train step ``(state, x_all, y_all, idx, key) -> (state, metrics)`` of a
    NAS-RobBench-201 run: :func:`robntk.train.step.make_step` with :meth:`StepSpec.of(cfg)
    <robntk.train.step.StepSpec.of>` and the cell ``cfg.arch`` compiled in.

    The step gathers ``x_all[idx]`` (uint8 (N, H, W, 3) on device) → float/255 → augmentation →
    training attack with BN in eval mode (:func:`training_attack`) → loss in train mode (BN
    batch statistics, running statistics updated with PyTorch momentum 0.1) → optax update.

    ``state`` is a dict pytree ``{'params', 'batch_stats', 'opt_state', 'step'}``.
    ``metrics``: ``loss`` (training objective, mean over the batch), ``acc`` (train-mode accuracy
    on the examples the loss is computed on: adversarial for pgd/fgsm, natural for
    trades/clean), ``lr`` and ``momentum`` used by this step (float32 scalars).
    """
    return step_lib.make_step(model, tx, StepSpec.of(cfg), cell=cfg.arch)


# --------------------------------------------------------------------------------------------
# trained networks


def network_meta(cfg: TrainConfig) -> dict[str, Any]:
    """What a checkpoint records about its network (checked when it is loaded)."""
    return {"arch": cfg.arch, "C": cfg.C, "N": cfg.N, "dataset": cfg.dataset, "num_classes": cfg.num_classes}


def check_network(
    model: TinyNetwork, params, cfg: TrainConfig, where: str | os.PathLike, meta: dict[str, Any] | None = None
) -> None:
    """Raise ValueError unless checkpoint ``params`` (and its ``meta``) belong to ``cfg``'s network.

    Compares the network recorded in ``meta`` (:func:`network_meta`) with ``cfg`` and every
    parameter leaf's path and shape with ``model.param_spec(cfg.arch)``. (For a checkpoint
    without network meta data, cells that differ only in parameter-free ops — none, skip,
    pooling — are indistinguishable.)

    Raises:
        ValueError: naming the configuration's network, the checkpoint ``where`` and what
            differs (the checkpoint's parametric edges, missing/unexpected/mis-shaped leaves).
    """
    mine = network_meta(cfg)
    stored = {k: (meta or {}).get(k) for k in mine if k in (meta or {})}
    diff = {k: (mine[k], v) for k, v in stored.items() if v != mine[k]}
    spec_leaves = jax.tree_util.tree_flatten_with_path(
        model.param_spec(cfg.arch), is_leaf=lambda t: isinstance(t, tuple) and len(t) == 3
    )[0]
    want = {jax.tree_util.keystr(p): tuple(v[0]) for p, v in spec_leaves}
    got = {jax.tree_util.keystr(p): tuple(np.shape(v)) for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    if not diff and got == want:
        return
    conv = sorted({k.split("'")[3] for k in got if k.startswith("['cells_") and "_nor_conv_" in k})
    parts = [f"{k}: config {a!r}, checkpoint {b!r}" for k, (a, b) in diff.items()]
    if got != want:
        parts.append(
            f"missing {sorted(set(want) - set(got))[:3]}, unexpected {sorted(set(got) - set(want))[:3]}, "
            f"shape mismatch at {sorted(k for k in set(want) & set(got) if want[k] != got[k])[:3]}; "
            f"the checkpoint's parametric edges are {conv}"
        )
    raise ValueError(
        f"the run configuration names arch {cfg.arch!r} (C={cfg.C}, N={cfg.N}, {cfg.dataset}), but "
        f"checkpoint {where} holds another network: " + "; ".join(parts)
    )


def load_trained(run_dir: str | os.PathLike) -> tuple[TrainConfig, TinyNetwork, dict, dict]:
    """Load a run for evaluation: ``(config, model, variables, meta)`` with
    ``variables = {'params', 'batch_stats'}`` of the latest checkpoint.

    Raises:
        FileNotFoundError: no config.json or no checkpoint in ``run_dir``.
        ValueError: corrupt config or checkpoint, or a checkpoint of another network than the
            config names (:func:`check_network`).
    """
    cfg = read_train_config(run_dir)
    state, meta = rundir.restore_checkpoint(run_dir)
    model = build_model(cfg)
    if not isinstance(state, dict) or "params" not in state or "batch_stats" not in state:
        raise ValueError(f"checkpoint {rundir.checkpoint_dir(run_dir)} holds no params/batch_stats")
    check_network(model, state["params"], cfg, rundir.checkpoint_dir(run_dir) / str(meta.get("epoch")), meta)
    return cfg, model, {"params": state["params"], "batch_stats": state["batch_stats"]}, meta


# --------------------------------------------------------------------------------------------
# the training loop: resume/init, one epoch, finish


def resume_or_init(
    cfg: TrainConfig, run_dir: Path, n: int, steps_per_epoch: int, total_steps: int, progress: bool
) -> tuple[dict, int]:
    """The state to continue from and its epoch: the latest checkpoint (checked against the
    data size and the network) or the initial state. The metrics log is cut back to it.

    Raises:
        ValueError: a checkpoint trained on another number of images, or corrupt.
    """
    model = build_model(cfg)
    state = init_state(model, make_optimizer(cfg, total_steps), cfg)
    start_epoch = 0
    last = rundir.latest_checkpoint_epoch(run_dir)
    if last is not None:
        state, meta = rundir.restore_checkpoint(run_dir, target=state, epoch=last)
        start_epoch = int(meta["epoch"])
        if meta.get("n_train") != n or meta.get("steps_per_epoch") != steps_per_epoch:
            raise ValueError(
                f"checkpoint in {run_dir} was trained on {meta.get('n_train')} images "
                f"({meta.get('steps_per_epoch')} steps/epoch), now given {n} ({steps_per_epoch})"
            )
        check_network(model, state["params"], cfg, rundir.checkpoint_dir(run_dir) / str(last), meta)
        if progress:
            print(f"resuming {run_dir} from epoch {start_epoch} (step {int(state['step'])})", file=sys.stderr)
    rundir.truncate_metrics(run_dir, start_epoch)
    # commit every leaf to the default device: fresh and restored states then have the same
    # shardings, so a resumed run hits the compiled step instead of compiling it again
    return jax.device_put(state, jax.devices()[0]), start_epoch


@dataclasses.dataclass
class EpochTiming:
    """Wall-clock accounting of one :func:`train` call (seconds, images)."""

    compile_s: float | None = None
    steady_s: float = 0.0
    steady_images: int = 0


def run_epoch(
    step_fn: Callable,
    state: dict,
    data: tuple,
    cfg: TrainConfig,
    epoch: int,
    steps_per_epoch: int,
    timing: EpochTiming,
    *,
    run_dir: Path,
    progress: bool,
    log_every: int,
) -> tuple[dict, dict]:
    """One epoch of ``step_fn`` over the epoch's data order. Returns ``(state, record)`` with the
    epoch's mean loss/accuracy, last lr/momentum and timings; updates ``timing``.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (checked every ``log_every`` steps).
    """
    from tqdm.auto import tqdm

    x_dev, y_dev = data
    perm = epoch_permutation(cfg.seed, epoch, len(x_dev))
    t_ep = time.perf_counter()
    sum_loss = sum_acc = jnp.zeros((), jnp.float32)
    bar = tqdm(
        range(steps_per_epoch),
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        disable=not progress,
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    t_steady = None
    for s in bar:
        idx = jnp.asarray(perm[s * cfg.batch_size : (s + 1) * cfg.batch_size], jnp.int32)
        state, m = step_fn(state, x_dev, y_dev, idx, step_key(cfg.seed, epoch, s))
        sum_loss, sum_acc = sum_loss + m["loss"], sum_acc + m["acc"]
        if s == 0:
            jax.block_until_ready(m["loss"])
            t_steady = time.perf_counter()
            if timing.compile_s is None:
                timing.compile_s = t_steady - t_ep
        if (s + 1) % log_every == 0 or s + 1 == steps_per_epoch:
            loss_now = float(m["loss"])
            if not math.isfinite(loss_now):
                raise NonFiniteLossError(
                    f"non-finite training loss {loss_now} at epoch {epoch + 1}, step {s + 1} "
                    f"(global step {epoch * steps_per_epoch + s + 1}); stopping. Last good "
                    f"checkpoint: epoch {rundir.latest_checkpoint_epoch(run_dir)} in {run_dir}"
                )
            bar.set_postfix(
                loss=f"{float(sum_loss) / (s + 1):.4f}",
                acc=f"{float(sum_acc) / (s + 1):.3f}",
                lr=f"{float(m['lr']):.4f}",
            )
    bar.close()
    mean_loss, mean_acc = float(sum_loss) / steps_per_epoch, float(sum_acc) / steps_per_epoch
    if not math.isfinite(mean_loss):
        raise NonFiniteLossError(
            f"non-finite mean training loss {mean_loss} in epoch {epoch + 1}; stopping. Last "
            f"good checkpoint: epoch {rundir.latest_checkpoint_epoch(run_dir)} in {run_dir}"
        )
    t_end = time.perf_counter()
    if steps_per_epoch > 1:
        timing.steady_s += t_end - t_steady
        timing.steady_images += (steps_per_epoch - 1) * cfg.batch_size
    ep_time = t_end - t_ep
    record = {
        "epoch": epoch + 1,
        "step": int(state["step"]),
        "train_loss": mean_loss,
        "train_acc": mean_acc,
        "lr_last": float(m["lr"]),
        "momentum_last": float(m["momentum"]),
        "epoch_time_s": ep_time,
        "images_per_s": steps_per_epoch * cfg.batch_size / ep_time,
        "method": cfg.method,
    }
    return state, record


def end_epoch(run_dir: Path, cfg: TrainConfig, state: dict, record: dict, n: int, steps_per_epoch: int) -> None:
    """Log the epoch's record, then checkpoint: a kill in between leaves a log line past the
    last checkpoint, which the resume truncates (the epoch is then redone identically)."""
    meta = {
        "epoch": record["epoch"],
        "step": record["step"],
        "seed": cfg.seed,
        "n_train": n,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": cfg.epochs * steps_per_epoch,
        "data_order": "numpy.random.default_rng([seed, epoch]).permutation(n_train)",
        "step_key": "fold_in(fold_in(fold_in(key(seed), 1), epoch), step)",
        "jax_version": jax.__version__,
        **network_meta(cfg),
    }
    rundir.append_metrics(run_dir, record)
    rundir.save_checkpoint(run_dir, record["epoch"], state, meta)


def finish(run_dir: Path, cfg: TrainConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """A complete run's figure (:func:`robntk.core.figures.training_curves`) and ``summary.json``."""
    from robntk.core.figures import training_curves

    recs = rundir.read_metrics(run_dir)
    curve = lr_curve(cfg, summary["steps_per_epoch"])
    summary["plot"] = str(training_curves(recs, run_dir / rundir.PLOT_FILE, lr_curve=curve, title=run_dir.name))
    rundir.write_summary(run_dir, summary)
    return summary


def train(
    cfg: TrainConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    log_every: int = 10,
) -> dict[str, Any]:
    """Train (or resume training) one network; checkpoint and log every epoch.

    Args:
        cfg: the configuration (validated).
        x_train: uint8 (N, H, W, 3) images; y_train: int labels (N,) in [0, num_classes).
        out_dir: run directory (:mod:`robntk.train.rundir`). If it holds a checkpoint, training
            resumes from it (its ``config.json`` must equal ``cfg``); the trajectory is the same
            as uninterrupted.
        progress: show tqdm progress bars (stderr).
        stop_after_epochs: stop once this many epochs are complete in total (to split a run
            over several sessions; the schedule still spans ``cfg.epochs``).
        log_every: host-sync period in steps (progress-bar update and NaN check).

    Returns:
        Summary dict: ``epochs_done``, ``complete``, ``steps_per_epoch``, ``total_steps``,
        ``wall_s`` (this call), ``train_images_per_s`` (this call, excluding each epoch's first
        step), ``compile_s``, ``final`` (last epoch's metrics), ``run_dir``.

    Raises:
        ValueError: bad data (dtype/shape/labels, batch larger than the data), a config that
            differs from the one stored in ``out_dir``, or a corrupt checkpoint.
        PermissionError: ``out_dir`` is not writable (checked before any work).
        NonFiniteLossError: the loss became NaN/inf (the run stops; checkpoints stay valid).
    """
    cfg.validate()
    check_data(x_train, y_train, cfg.num_classes, cfg.batch_size)
    if stop_after_epochs is not None and (not _is_int(stop_after_epochs) or stop_after_epochs < 1):
        raise ValueError(f"stop_after_epochs must be an integer >= 1 (or None), got {stop_after_epochs!r}")
    run_dir = rundir.check_run_dir(out_dir)
    rundir.init_config(run_dir, cfg.to_dict())
    n = len(x_train)
    steps_per_epoch = n // cfg.batch_size
    total_steps = cfg.epochs * steps_per_epoch
    state, start_epoch = resume_or_init(cfg, run_dir, n, steps_per_epoch, total_steps, progress)
    end = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)
    summary: dict[str, Any] = {"run_dir": str(run_dir), "steps_per_epoch": steps_per_epoch, "total_steps": total_steps}
    if start_epoch >= end:
        summary.update(epochs_done=start_epoch, complete=start_epoch >= cfg.epochs, wall_s=0.0)
        return summary

    data = (jnp.asarray(x_train), jnp.asarray(np.asarray(y_train, np.int32)))
    step_fn = compiled_train_step(cfg, total_steps)
    t_call, timing, record = time.perf_counter(), EpochTiming(), {}
    for epoch in range(start_epoch, end):
        state, record = run_epoch(
            step_fn,
            state,
            data,
            cfg,
            epoch,
            steps_per_epoch,
            timing,
            run_dir=run_dir,
            progress=progress,
            log_every=log_every,
        )
        end_epoch(run_dir, cfg, state, record, n, steps_per_epoch)
        if progress:
            print(
                f"epoch {epoch + 1}/{cfg.epochs}: loss {record['train_loss']:.4f} acc {record['train_acc']:.4f} "
                f"({record['epoch_time_s']:.1f} s, {record['images_per_s']:.1f} img/s)",
                file=sys.stderr,
            )
    summary.update(
        epochs_done=end,
        complete=end >= cfg.epochs,
        wall_s=time.perf_counter() - t_call,
        compile_s=timing.compile_s,
        train_images_per_s=timing.steady_images / timing.steady_s if timing.steady_s > 0 else None,
        final=record,
    )
    return finish(run_dir, cfg, summary) if summary["complete"] else summary
