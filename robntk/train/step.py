"""The one adversarial-training step of robntk, and the step-count loop around it.

Every training in robntk — NAS-RobBench-201's PGD-AT of one NB201 cell (:mod:`robntk.train.loop`),
the RobNets one-shot supernet and its per-candidate fine-tunes (:mod:`robntk.robnets.oneshot`),
the FSP study's fine-tunes (:mod:`robntk.robnets.fsp`) and RobNet training
(:mod:`robntk.robnets.training`) — runs the step built by :func:`make_step`::

    gather x_all[idx] (uint8 → float/255) → augmentation (RandomCrop + flip) → training attack
    (BN: running or batch statistics) → loss in train mode (BN running statistics updated or
    not) → gradient → optax update (:func:`robntk.train.optim.sgd`)

What differs between those trainings is data (:class:`StepSpec`), not code: the attack (PGD-AT,
FGSM-AT, TRADES or none), the BN mode the attack is crafted in (NAS-RobBench-201: running
statistics; RobNets: batch statistics), whether running statistics exist and are updated (the
one-shot supernet has none: a shared BN mixing paths would be meaningless), and whether the cell
is fixed (compiled in) or an argument of the step (one compilation for every cell: the supernet
samples a path per step, the FSP study and the candidate evaluation run many archs).

A network is any object with TinyNetwork's two methods
``forward(params, stats, x, cell, train) -> (logits, aux)`` and
``apply_train({'params', 'batch_stats'}, x, cell) -> (logits, new_batch_stats)``
(:class:`robntk.nb201.network.TinyNetwork`; RobNet through an adapter,
:class:`robntk.robnets.training.RobNetModel`).

:func:`run_steps` drives a step over a range of optimizer steps with the data order, keys and
cells given as functions of the step number (so a run is a pure function of its seed and resumes
exactly), logging and checkpointing into a run directory (:mod:`robntk.train.rundir`: orbax
checkpoints labelled by step, ``metrics.jsonl`` with one line per logged step).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from robntk.attacks import iterative as attacks
from robntk.data.datasets import augment, epoch_permutation
from robntk.train import rundir
from robntk.train.config import METHODS, TRADES_SIGMA, NonFiniteLossError, TrainConfig, _is_int

#: BN modes of the training attack: running statistics (``'eval'``) or batch statistics (``'train'``).
ATTACK_BN = ("eval", "train")
#: How the attack's iterations are compiled (:func:`robntk.attacks.protocol.run_loop`).
ATTACK_LOOPS = ("unroll", "fori")


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """What one adversarial-training step does, apart from the network and the optimiser.

    Attributes:
        method: ``'pgd'`` (PGD-AT, Madry et al., ICLR 2018), ``'fgsm'`` (one PGD step from a
            uniform random start, Wong et al., ICLR 2020), ``'trades'`` (Zhang et al., ICML 2019)
            or ``'clean'`` (no attack).
        eps: attack radius, L∞, in [0, 1] pixel units.
        attack_steps: attack iterations (≥ 1; ignored for ``'clean'``).
        attack_step_size: step in pixel units; None: 2.5·eps/steps (the rule of
            :func:`robntk.attacks.iterative.pgd`).
        trades_beta: TRADES β.
        augment: RandomCrop(pad ``crop_pad``, zero fill) + horizontal flip
            (:func:`robntk.data.datasets.augment`) before the attack.
        crop_pad: crop padding in pixels (≥ 0).
        attack_bn: BN of the network the attack differentiates: ``'eval'`` (running statistics;
            NAS-RobBench-201) or ``'train'`` (batch statistics, running statistics untouched;
            RobNets' reference ``main.py`` and the one-shot supernet).
        running_stats: the loss forward updates BN running statistics (the state holds
            ``batch_stats``); False: batch statistics only, the state has no ``batch_stats``.
        attack_loop: ``'unroll'`` (steps unrolled in the trace; fast on XLA:CPU for few steps) or
            ``'fori'`` (a rolled loop). The same iterations; float rounding may differ.

    Raises:
        ValueError: a value outside the above (names it and what is allowed).
    """

    method: str
    eps: float
    attack_steps: int
    attack_step_size: float | None = None
    trades_beta: float = 6.0
    augment: bool = True
    crop_pad: int = 4
    attack_bn: str = "eval"
    running_stats: bool = True
    attack_loop: str = "unroll"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown training method {self.method!r}; allowed: {', '.join(METHODS)}")
        if not (isinstance(self.eps, (int, float)) and 0.0 <= self.eps <= 1.0):
            raise ValueError(f"eps must be in [0, 1] pixel units, got {self.eps!r}")
        if self.method != "clean" and (not _is_int(self.attack_steps) or self.attack_steps < 1):
            raise ValueError(f"attack_steps must be an integer >= 1, got {self.attack_steps!r}")
        if self.attack_step_size is not None and not self.attack_step_size > 0:
            raise ValueError(f"attack_step_size must be > 0 (pixel units) or None, got {self.attack_step_size!r}")
        if not _is_int(self.crop_pad) or self.crop_pad < 0:
            raise ValueError(f"crop_pad must be an integer >= 0, got {self.crop_pad!r}")
        if self.attack_bn not in ATTACK_BN:
            raise ValueError(f"attack_bn must be one of {', '.join(ATTACK_BN)}, got {self.attack_bn!r}")
        if self.attack_loop not in ATTACK_LOOPS:
            raise ValueError(f"attack_loop must be one of {', '.join(ATTACK_LOOPS)}, got {self.attack_loop!r}")

    @classmethod
    def of(cls, cfg: TrainConfig) -> StepSpec:
        """The step of a NAS-RobBench-201 run (:class:`robntk.train.config.TrainConfig`): attack
        crafted with BN in eval mode, running statistics updated, attack steps unrolled."""
        from robntk.core.registry import DATASETS

        return cls(
            method=cfg.method,
            eps=cfg.eps,
            attack_steps=cfg.steps_resolved,
            attack_step_size=cfg.step_size_resolved,
            trades_beta=cfg.trades_beta,
            augment=cfg.augment,
            crop_pad=DATASETS[cfg.dataset].crop_pad if cfg.augment else 0,
        )


def training_attack(spec: StepSpec, f: Callable) -> Callable:
    """The training attack ``(params, x, y, key) -> x_in`` of ``spec.method``, all
    :func:`robntk.attacks.iterative.pgd`: PGD-AT and FGSM-AT from a uniform random start on the
    cross-entropy; TRADES from x + 0.001·N(0, I) on Σ KL(f(x) ‖ f(x')); ``'clean'`` returns x.

    Args:
        spec: the step. f: ``f(params, x) -> logits`` in the BN mode the attack uses.
    """
    eps, steps, alpha, loop = spec.eps, spec.attack_steps, spec.attack_step_size, spec.attack_loop
    if spec.method in ("pgd", "fgsm"):
        return lambda p, x, y, k: attacks.pgd(f, p, x, y, eps, steps=steps, alpha=alpha, key=k, loop=loop)
    if spec.method == "trades":

        def trades(p, x, y, k):
            p_nat = jax.nn.softmax(f(p, x))
            return attacks.pgd(
                f,
                p,
                x,
                p_nat,
                eps,
                steps=steps,
                alpha=alpha,
                key=k,
                loop=loop,
                start="normal",
                sigma=TRADES_SIGMA,
                loss_fn=attacks.kl_divergence,
            )

        return trades
    return lambda p, x, y, k: x


def make_step(
    model: Any, tx: optax.GradientTransformation, spec: StepSpec, cell: Any = None, *, internals: bool = False
) -> Callable:
    """Build the jitted train step ``(state, x_all, y_all, idx, key[, cell]) -> (state, metrics)``.

    Args:
        model: the network (module docstring: ``forward`` and ``apply_train``).
        tx: the optimiser, :func:`robntk.train.optim.sgd` (its ``opt_state[1].hyperparams``
            give the lr and momentum reported in the metrics).
        spec: what the step does (:class:`StepSpec`).
        cell: the fixed cell compiled into the step (arch string / op names; any value for a
            network without a cell argument). None: the step takes the cell, int32 (6,) op ids,
            as its last argument (traced: one compilation serves every cell).
        internals: also return, in the metrics, ``x_in`` (the batch the loss was computed on: the
            adversarial examples for pgd/fgsm, shape of the batch) and ``grads`` (the loss
            gradient w.r.t. the parameters, before weight decay; params' structure) — for the
            step-by-step parity with the benchmark's PyTorch code (:mod:`robntk.parity`). Off by
            default: the step then computes and returns exactly what it did before.

    The step's arguments: ``state`` = ``{'params', 'batch_stats' (with running_stats),
    'opt_state', 'step'}``; ``x_all`` (N, H, W, 3) uint8 (scaled by 1/255 after the gather) or
    float in [0, 1], on device; ``y_all`` (N,) int labels; ``idx`` int32 (B,) batch indices;
    ``key`` the step's PRNG key (split into augmentation and attack keys).

    Returns:
        The jitted step. ``metrics``: ``loss`` (training objective, mean over the batch),
        ``acc`` (train-mode accuracy on the examples the loss is computed on), ``lr`` and
        ``momentum`` of this update (float32 scalars).
    """
    trades, beta = spec.method == "trades", spec.trades_beta

    def step_fn(state, x_all, y_all, idx, key, cell_):
        params, bs = state["params"], state.get("batch_stats")
        x = x_all[idx]
        if x.dtype == jnp.uint8:
            x = x.astype(jnp.float32) / 255.0
        y = y_all[idx].astype(jnp.int32)
        k_aug, k_att = jax.random.split(key)
        if spec.augment:
            x = augment(k_aug, x, spec.crop_pad)
        attack = training_attack(spec, lambda p, z: model.forward(p, bs, z, cell_, spec.attack_bn == "train")[0])
        x_in = attack(params, x, y, k_att)

        def apply_train(p, stats, z):
            if spec.running_stats:
                return model.apply_train({"params": p, "batch_stats": stats}, z, cell_)
            return model.forward(p, stats, z, cell_, True)[0], stats

        def loss_fn(p):
            if trades:
                logits_nat, bs1 = apply_train(p, bs, x)
                logits_adv, bs2 = apply_train(p, bs1, x_in)
                _, bs3 = apply_train(p, bs2, x)  # TRADES' third forward (running statistics only)
                robust = attacks.kl_divergence(logits_adv, jax.nn.softmax(logits_nat)) / x.shape[0]
                return attacks.cross_entropy(logits_nat, y) + beta * robust, (logits_nat, bs3)
            logits, bs1 = apply_train(p, bs, x_in)
            return attacks.cross_entropy(logits, y), (logits, bs1)

        (loss, (logits, new_bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        hp = opt_state[1].hyperparams  # the values this update used (optax stores them)
        acc = jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))
        new_state = {"params": optax.apply_updates(params, updates), "opt_state": opt_state, "step": state["step"] + 1}
        if "batch_stats" in state:
            new_state["batch_stats"] = new_bs
        metrics = {"loss": loss, "acc": acc, "lr": hp["learning_rate"], "momentum": hp["momentum"]}
        if internals:
            metrics.update(x_in=x_in, grads=grads)
        return new_state, metrics

    if cell is None:
        return jax.jit(step_fn)
    return jax.jit(lambda state, x_all, y_all, idx, key: step_fn(state, x_all, y_all, idx, key, cell))


def initial_state(params, tx: optax.GradientTransformation, batch_stats=None) -> dict:
    """A step's state ``{'params', ['batch_stats'], 'opt_state', 'step': int32 0}`` (fresh
    optimiser state: zero momentum)."""
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.asarray(0, jnp.int32)}
    if batch_stats is not None:
        state["batch_stats"] = batch_stats
    return state


# --------------------------------------------------------------------------------------------
# the step-count loop


@functools.lru_cache(maxsize=4)
def _perm(seed: int, epoch: int, n: int) -> np.ndarray:
    return epoch_permutation(seed, epoch, n)


def epoch_batch(seed: int, step: int, n: int, batch_size: int) -> np.ndarray:
    """Batch indices (int64 (≤ B,)) of optimizer step ``step`` when every epoch is
    ``max(⌊n/B⌋, 1)`` steps over :func:`robntk.data.datasets.epoch_permutation` ``(seed, epoch,
    n)`` — the data order of NAS-RobBench-201's loop, as a function of the global step."""
    per_epoch = max(n // batch_size, 1)
    e, j = divmod(int(step), per_epoch)
    return _perm(int(seed), e, int(n))[j * batch_size : (j + 1) * batch_size]


def resume_steps(run_dir: str | Path, state: dict, n_train: int, what: str = "run") -> tuple[dict, int]:
    """The state to continue a step-count run from and its step: the latest checkpoint in
    ``run_dir`` (restored into the structure of ``state``), else ``state`` and 0. The metrics
    log is cut back to the checkpoint.

    Raises:
        ValueError: a checkpoint trained on another number of images, or a corrupt one (named).
    """
    run_dir = Path(run_dir)
    last = rundir.latest_checkpoint_epoch(run_dir)
    start = 0
    if last is not None:
        state, meta = rundir.restore_checkpoint(run_dir, target=state, epoch=last)
        if meta.get("n_train") != n_train:
            raise ValueError(
                f"{what} checkpoint {rundir.checkpoint_dir(run_dir) / str(last)} was trained on "
                f"{meta.get('n_train')} images, now given {n_train}; use a new directory"
            )
        start = int(meta["step"])
    if (run_dir / rundir.METRICS_FILE).is_file():
        rundir.truncate_metrics(run_dir, start, key="step")
    return jax.device_put(state, jax.devices()[0]), start


def run_steps(
    step_fn: Callable,
    state: dict,
    data: tuple,
    *,
    start: int,
    stop: int,
    batch_fn: Callable[[int], np.ndarray],
    key_fn: Callable[[int], jax.Array],
    cell_fn: Callable[[int], np.ndarray] | None = None,
    run_dir: str | Path | None = None,
    ckpt_every: int | None = None,
    meta: dict | None = None,
    log_every: int = 0,
    progress: bool = False,
    desc: str = "train",
) -> tuple[dict, list[dict]]:
    """Run optimizer steps ``start .. stop−1`` of ``step_fn`` (:func:`make_step`).

    Args:
        step_fn: the jitted step. state: its state. data: ``(x_all, y_all)`` (device arrays).
        start, stop: the global step range.
        batch_fn, key_fn, cell_fn: step number → batch indices, PRNG key, cell op ids (None: the
            step has the cell compiled in). Pure functions of the step, so a resumed run takes
            the same batches, keys and cells.
        run_dir: a run directory: every ``ckpt_every`` steps and at ``stop`` the logged records
            are appended to its ``metrics.jsonl`` and the state is checkpointed, labelled by
            step, with ``meta`` (+ ``step``). None: nothing is written.
        log_every: record ``{'step', 'loss', 'acc', 'lr'}`` every this many steps (0: never).
        progress, desc: tqdm bar.

    Returns:
        ``(state, records)``.

    Raises:
        NonFiniteLossError: a logged loss is NaN/inf (the last checkpoint stays valid).
    """
    from tqdm.auto import tqdm

    x_all, y_all = data
    records: list[dict] = []
    pending: list[dict] = []
    bar = tqdm(
        range(start, stop),
        initial=start,
        total=stop,
        desc=desc,
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    for t in bar:
        args = (state, x_all, y_all, jnp.asarray(batch_fn(t), jnp.int32), key_fn(t))
        state, m = step_fn(*args) if cell_fn is None else step_fn(*args, cell_fn(t))
        if log_every and (t + 1) % log_every == 0:
            rec = {"step": t + 1, "loss": float(m["loss"]), "acc": float(m["acc"]), "lr": float(m["lr"])}
            if not math.isfinite(rec["loss"]):
                raise NonFiniteLossError(
                    f"non-finite training loss {rec['loss']} at step {t + 1} ({desc}); stopping"
                    + ("" if run_dir is None else f"; last good checkpoint in {run_dir}")
                )
            pending.append(rec)
            bar.set_postfix(loss=f"{rec['loss']:.4f}", refresh=False)
        if run_dir is not None and ckpt_every and ((t + 1) % ckpt_every == 0 or t + 1 == stop):
            for rec in pending:
                rundir.append_metrics(run_dir, rec)
            rundir.save_checkpoint(run_dir, t + 1, state, {**(meta or {}), "step": t + 1})
            records, pending = records + pending, []
    bar.close()
    return state, records + pending
