"""Adversarial training of NAS-Bench-201 networks, as NAS-RobBench-201 did it, in JAX.

Protocol (Wu et al., ICLR 2024, official code ``TT2408/nasrobbench201`` ``main.py``; see
``docs/nasrobbench201.md`` §2), the default of :class:`TrainConfig`:

* model ``TinyNetwork(C=16, N=5)`` with the benchmark's input normalisation inside the model, so
  images are NHWC in [0, 1];
* PGD-AT (Madry et al., ICLR 2018): PGD L∞, eps 8/255, step 2/255, 7 steps, uniform random start
  (torchattacks 3.4.0 ``PGD``), crafted with BatchNorm in **eval** mode (running statistics);
  the update is then computed in **train** mode on the adversarial batch only (cross-entropy);
* SGD, momentum 0.9, weight decay 5e-4 coupled as PyTorch does (``wd·θ`` is added to the gradient
  before the momentum buffer), applied to all parameters (BN affine and biases included);
* PyTorch ``OneCycleLR(max_lr=0.1)`` with its defaults, stepped per iteration: pct_start 0.3,
  cosine annealing, div_factor 25, final_div_factor 1e4, momentum cycled 0.95 → 0.85 → 0.95
  (:func:`onecycle_schedules`);
* 50 epochs, batch 256, RandomCrop(32, pad 4) + horizontal flip (ImageNet16-120: crop 16, pad 2),
  done on device (:func:`augment`).

Other methods (``method=``): ``'fgsm'`` — "fast" FGSM-AT with a uniform random start in the
ε-ball and step 1.25·ε (Wong, Rice & Kolter, ICLR 2020); ``'trades'`` — TRADES (Zhang et al.,
ICML 2019), β = 6, KL inner maximisation from x + 0.001·N(0, I), 10 steps of 0.007 by default;
``'clean'`` — standard training. All attacks are crafted with BN in eval mode.

Deviation from the reference, by design: the last partial batch of each epoch is **dropped**
(the reference's DataLoader keeps it: 196 steps/epoch on CIFAR with a final batch of 80, here
195 steps of 256), so that the jitted train step has one shape. The OneCycle schedule is built
on the number of steps actually taken (epochs × ⌊N/B⌋), so it still ends at its minimum.

Determinism and resume: the data order of epoch ``e`` is
``numpy.random.default_rng([seed, e]).permutation(N)`` and the PRNG key of step ``s`` of epoch
``e`` (augmentation + attack random start) is ``fold_in(fold_in(fold_in(key(seed), 1), e), s)``;
both are pure functions of (seed, epoch, step), so they are the whole "data-order RNG state".
A checkpoint (orbax, end of every epoch) holds params, batch_stats, the optimizer state and the
step counter; a run restarted on the same directory resumes from the last checkpoint and
continues the **same** trajectory (bitwise on the same machine; tested).

Run directory layout (``out_dir``)::

    config.json        TrainConfig (checked on resume: a different config is an error)
    checkpoints/<epoch>/  orbax checkpoints (the last 2 kept)
    metrics.jsonl      one JSON line per epoch (loss, accuracy, lr, momentum, time, images/s)
    training.png       loss / accuracy curves (written at the end)
    summary.json       final summary (written at the end)

Usage::

    from robntk.training import TrainConfig, train
    cfg = TrainConfig(arch="|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+"
                           "|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|", epochs=50)
    summary = train(cfg, x_train_uint8, y_train, "runs/2581_seed0")

or ``robntk train --arch 2581 --dataset cifar10 --out runs/2581_seed0``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import attacks
from .network import TinyNetwork, to_ops
from .registry import NUM_CLASSES
from .paths import atomic_save, atomic_write
from .searchspace import format_arch_str

METHODS = ("pgd", "fgsm", "trades", "clean")
DATASETS = tuple(NUM_CLASSES)
#: RandomCrop padding per dataset (crop size = image size), as the benchmark's ``utils_data.py``.
CROP_PAD = {"cifar10": 4, "cifar100": 4, "ImageNet16-120": 2}
#: Default (steps, step size) of the training attack per method; eps defaults to 8/255.
METHOD_ATTACK_DEFAULTS: dict[str, tuple[int, float | None]] = {
    "pgd": (7, 2.0 / 255.0),  # NAS-RobBench-201 (torchattacks PGD, eps 8/255, alpha 2/255, 7 steps)
    "fgsm": (1, None),  # Wong et al. 2020: alpha = 1.25 * eps
    "trades": (10, 0.007),  # Zhang et al. 2019, CIFAR-10 setting
    "clean": (0, None),
}
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "training.png"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or ±inf; the run stops (the last checkpoint is kept)."""


# --------------------------------------------------------------------------------------------
# configuration


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (defaults = NAS-RobBench-201's protocol).

    Attributes:
        arch: NB201 arch string (``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``) or 6 ops.
        dataset: ``'cifar10'``, ``'cifar100'`` or ``'ImageNet16-120'`` (selects the number of
            classes, the input normalisation and the crop padding).
        method: ``'pgd'`` (Madry PGD-AT, default), ``'fgsm'`` (fast AT), ``'trades'``, ``'clean'``.
        epochs: training epochs (≥ 1). batch_size: images per step (≥ 1).
        seed: seeds the initialisation, the data order and every random draw.
        C, N: TinyNetwork width and cells per stage (16, 5 in the benchmark).
        init_scheme: ``'pytorch'`` (the reference's default init) or ``'flax'``.
        eps: training-attack radius in [0, 1] pixel units (8/255).
        attack_steps, attack_step_size: steps and step size (pixel units) of the training attack;
            ``None`` = the method's default (:data:`METHOD_ATTACK_DEFAULTS`: PGD 7 × 2/255,
            FGSM 1 × 1.25·eps, TRADES 10 × 0.007).
        trades_beta: TRADES β (6.0).
        max_lr, pct_start, div_factor, final_div_factor, base_momentum, max_momentum:
            PyTorch ``OneCycleLR`` arguments (0.1, 0.3, 25, 1e4, 0.85, 0.95).
        weight_decay: coupled L2 weight decay (5e-4), on all parameters.
        augment: RandomCrop + horizontal flip (True).
        train_limit: the number of training images used (``None`` = all); informational here,
            the caller selects the subset (the CLI uses a class-balanced deterministic one).
        arch_index: NB201 index of ``arch`` if known (informational).

    Raises (from :meth:`validate`):
        ValueError: a value outside its allowed range, naming it and what is allowed.
    """

    arch: str
    dataset: str = "cifar10"
    method: str = "pgd"
    epochs: int = 50
    batch_size: int = 256
    seed: int = 0
    C: int = 16
    N: int = 5
    init_scheme: str = "pytorch"
    eps: float = 8.0 / 255.0
    attack_steps: int | None = None
    attack_step_size: float | None = None
    trades_beta: float = 6.0
    max_lr: float = 0.1
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    weight_decay: float = 5e-4
    augment: bool = True
    train_limit: int | None = None
    arch_index: int | None = None

    def __post_init__(self):
        if not isinstance(self.arch, str):  # normalise op tuples to the arch string
            object.__setattr__(self, "arch", format_arch_str(to_ops(self.arch)))
        self.validate()

    @property
    def num_classes(self) -> int:
        """Number of classes of :attr:`dataset`."""
        return NUM_CLASSES[self.dataset]

    @property
    def steps_resolved(self) -> int:
        """Training-attack steps after applying the method default."""
        return METHOD_ATTACK_DEFAULTS[self.method][0] if self.attack_steps is None else self.attack_steps

    @property
    def step_size_resolved(self) -> float:
        """Training-attack step size (pixel units) after applying the method default."""
        if self.attack_step_size is not None:
            return float(self.attack_step_size)
        default = METHOD_ATTACK_DEFAULTS[self.method][1]
        return 1.25 * self.eps if default is None else default

    def validate(self) -> None:
        """Check every field; raise ValueError naming the bad value and what is allowed."""
        to_ops(self.arch)  # raises ValueError for a malformed arch
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; allowed: {', '.join(DATASETS)}")
        if self.method not in METHODS:
            raise ValueError(f"unknown training method {self.method!r}; allowed: {', '.join(METHODS)}")
        for name in ("epochs", "batch_size", "C"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not isinstance(self.N, (int, np.integer)) or self.N < 0:
            raise ValueError(f"N must be an integer >= 0, got {self.N!r}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.init_scheme not in ("pytorch", "flax"):
            raise ValueError(f"unknown init_scheme {self.init_scheme!r}; allowed: pytorch, flax")
        if not (isinstance(self.eps, (int, float)) and 0.0 <= self.eps <= 1.0) or math.isnan(self.eps):
            raise ValueError(f"eps must be in [0, 1] pixel units (e.g. 8/255), got {self.eps!r}")
        if self.method != "clean" and self.eps == 0.0:
            raise ValueError(f"eps must be > 0 for adversarial training method {self.method!r}")
        if self.attack_steps is not None and (
            not isinstance(self.attack_steps, (int, np.integer)) or self.attack_steps < 1
        ):
            raise ValueError(f"attack_steps must be an integer >= 1 (or None), got {self.attack_steps!r}")
        if self.method == "fgsm" and self.attack_steps not in (None, 1):
            raise ValueError(f"method 'fgsm' is single-step: attack_steps must be 1 or None, got {self.attack_steps!r}")
        if self.attack_step_size is not None and not self.attack_step_size > 0:
            raise ValueError(f"attack_step_size must be > 0 (pixel units), got {self.attack_step_size!r}")
        if not self.trades_beta >= 0:
            raise ValueError(f"trades_beta must be >= 0, got {self.trades_beta!r}")
        if not self.max_lr > 0:
            raise ValueError(f"max_lr must be > 0, got {self.max_lr!r}")
        if not 0.0 < self.pct_start < 1.0:
            raise ValueError(f"pct_start must be in (0, 1), got {self.pct_start!r}")
        if not (self.div_factor > 0 and self.final_div_factor > 0):
            raise ValueError(
                f"div_factor and final_div_factor must be > 0, got {self.div_factor!r}, {self.final_div_factor!r}"
            )
        if not 0.0 <= self.base_momentum <= self.max_momentum < 1.0:
            raise ValueError(
                "momenta must satisfy 0 <= base_momentum <= max_momentum < 1, got "
                f"base_momentum={self.base_momentum!r}, max_momentum={self.max_momentum!r}"
            )
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.train_limit is not None and (not isinstance(self.train_limit, (int, np.integer)) or self.train_limit < 1):
            raise ValueError(f"train_limit must be an integer >= 1 (or None), got {self.train_limit!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (with the resolved attack steps/step size added)."""
        d = dataclasses.asdict(self)
        d["attack_steps_resolved"] = self.steps_resolved
        d["attack_step_size_resolved"] = self.step_size_resolved
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict` (unknown/derived keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# --------------------------------------------------------------------------------------------
# optimiser and schedules


def onecycle_schedules(
    total_steps: int,
    max_lr: float = 0.1,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
) -> tuple[Callable, Callable]:
    """PyTorch ``OneCycleLR`` (``anneal_strategy='cos'``, ``three_phase=False``,
    ``cycle_momentum=True``) as two jnp schedules ``step -> lr`` and ``step -> momentum``.

    Closed form (PyTorch ``torch/optim/lr_scheduler.py``), step ``t`` (0-based optimizer steps)::

        initial = max_lr / div_factor;  min_lr = initial / final_div_factor
        e1 = pct_start * total_steps - 1  (float);  e2 = total_steps - 1
        cos_anneal(a, b, p) = b + (a - b) / 2 * (cos(pi * p) + 1)
        t <= e1:  lr = cos_anneal(initial, max_lr, t / e1)
                  momentum = cos_anneal(max_momentum, base_momentum, t / e1)
        t >  e1:  lr = cos_anneal(max_lr, min_lr, (t - e1) / (e2 - e1))
                  momentum = cos_anneal(base_momentum, max_momentum, (t - e1) / (e2 - e1))

    Optimizer step ``t`` uses the values at ``t`` (PyTorch steps the scheduler after the
    optimizer). Steps past ``total_steps - 1`` are clamped to it.

    Note: ``optax.cosine_onecycle_schedule`` is *not* identical: its phases end at
    ``int(pct_start·T)`` and ``T`` instead of ``pct_start·T − 1`` and ``T − 1`` (one step later)
    and it has no momentum cycling; the test-suite quantifies the difference.

    Args:
        total_steps: number of optimizer steps (≥ 1).
        (others): as PyTorch.

    Returns:
        ``(lr_fn, momentum_fn)``, each mapping an int (array) step to a float32 array.

    Raises:
        ValueError: total_steps < 1.
    """
    if not isinstance(total_steps, (int, np.integer)) or total_steps < 1:
        raise ValueError(f"total_steps must be an integer >= 1, got {total_steps!r}")
    initial = max_lr / div_factor
    min_lr = initial / final_div_factor
    e1 = float(pct_start * total_steps) - 1.0
    e2 = float(total_steps - 1)
    d1 = e1 if e1 > 0 else 1.0  # guard 0/0 (PyTorch itself divides by zero there)
    d2 = (e2 - e1) if (e2 - e1) > 0 else 1.0

    # cos_anneal(a, b, p) = b + (a - b) * cos²(πp/2) = b + (a - b) * sin²(π(1 − p)/2), evaluated
    # with 1 − p computed from the step directly: stable in float32 near the end of the cycle,
    # where the textbook form's cos(πp) + 1 cancels catastrophically (lr ≈ 4e-7 there)
    def _anneal(start, end, q):
        return end + (start - end) * jnp.sin(0.5 * jnp.pi * q) ** 2

    def _phase(step):
        t = jnp.minimum(jnp.asarray(step, jnp.float32), e2)
        return t <= e1, (e1 - t) / d1, (e2 - t) / d2

    def lr_fn(step):
        first, q1, q2 = _phase(step)
        return jnp.where(first, _anneal(initial, max_lr, q1), _anneal(max_lr, min_lr, q2)).astype(jnp.float32)

    def momentum_fn(step):
        first, q1, q2 = _phase(step)
        return jnp.where(
            first, _anneal(max_momentum, base_momentum, q1), _anneal(base_momentum, max_momentum, q2)
        ).astype(jnp.float32)

    return lr_fn, momentum_fn


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """SGD as ``torch.optim.SGD(lr, momentum, weight_decay)`` under ``OneCycleLR``.

    ``optax.add_decayed_weights(wd)`` (g ← g + wd·θ, every parameter) →
    ``inject_hyperparams(optax.sgd)(lr_fn, momentum_fn)``: buf ← m_t·buf + g (buf₀ = g, as
    PyTorch's first step), θ ← θ − lr_t·buf. The current lr and momentum are readable from
    ``opt_state[1].hyperparams``.

    Args:
        cfg: the run's configuration. total_steps: optimizer steps of the whole run.
    """
    lr_fn, mom_fn = onecycle_schedules(
        total_steps, cfg.max_lr, cfg.pct_start, cfg.div_factor, cfg.final_div_factor,
        cfg.base_momentum, cfg.max_momentum,
    )
    return optax.chain(
        optax.add_decayed_weights(cfg.weight_decay),
        optax.inject_hyperparams(optax.sgd)(learning_rate=lr_fn, momentum=mom_fn),
    )


# --------------------------------------------------------------------------------------------
# data


def augment(key: jax.Array, x: jax.Array, pad: int) -> jax.Array:
    """RandomCrop(H, padding=pad, zero fill) + RandomHorizontalFlip(0.5), per example, on device.

    Same distribution as torchvision's ``RandomCrop(H, padding=pad)`` followed by
    ``RandomHorizontalFlip()`` (the benchmark's ``utils_data.py``); not the same random stream.

    Args:
        key: PRNG key. x: float (B, H, W, C) images. pad: padding in pixels (≥ 0).

    Returns:
        Augmented images, shape and dtype of ``x``.
    """
    B, H, W, C = x.shape
    k_off, k_flip = jax.random.split(key)
    if pad > 0:
        xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        off = jax.random.randint(k_off, (B, 2), 0, 2 * pad + 1)
        x = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (H, W, C)))(xp, off)
    flip = jax.random.bernoulli(k_flip, 0.5, (B, 1, 1, 1))
    return jnp.where(flip, x[:, :, ::-1, :], x)


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """Data order of ``epoch``: ``numpy.random.default_rng([seed, epoch]).permutation(n)``."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def step_key(seed: int, epoch: int, step: int) -> jax.Array:
    """PRNG key of one train step (augmentation, attack start): a function of (seed, epoch, step)."""
    k = jax.random.fold_in(jax.random.key(int(seed)), 1)
    return jax.random.fold_in(jax.random.fold_in(k, int(epoch)), int(step))


def balanced_subset(y: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray:
    """Indices of a deterministic class-balanced subset of ``limit`` examples (sorted).

    Classes are visited round-robin, each in a seeded random order, so the subset is balanced
    even when the data are stored sorted by class (as the JPEG CIFAR-10 copy is). ``limit``
    None or ≥ len(y) returns all indices.

    Raises:
        ValueError: limit < 1.
    """
    n = len(y)
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    yp = np.asarray(y)[perm]
    rank = np.empty(n, np.int64)
    for c in np.unique(yp):
        where = np.flatnonzero(yp == c)
        rank[where] = np.arange(len(where))
    order = np.lexsort((yp, rank))  # by rank within class, then class
    return np.sort(perm[order[:limit]])


def check_data(x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int | None = None) -> None:
    """Validate a training/evaluation set.

    Args:
        x: uint8 (N, H, W, 3) images. y: integer labels (N,) in [0, num_classes).
        batch_size: if given, must be ≤ N.

    Raises:
        ValueError: wrong dtype/shape, label out of range, or batch larger than the data.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be uint8 of shape (N, H, W, 3), got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({len(x)},), got {y.dtype} {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{y.min()}, {y.max()}]")
    if batch_size is not None and batch_size > len(x):
        raise ValueError(
            f"batch_size {batch_size} is larger than the data ({len(x)} images); use batch_size <= {len(x)}"
        )


# --------------------------------------------------------------------------------------------
# train step


def _kl_div(logits_adv: jax.Array, p_nat: jax.Array) -> jax.Array:
    """Σ_batch KL(p_nat ‖ softmax(logits_adv)) (``nn.KLDivLoss(size_average=False)`` of TRADES)."""
    logq = jax.nn.log_softmax(logits_adv)
    return jnp.sum(jax.scipy.special.xlogy(p_nat, p_nat) - p_nat * logq)


def pgd_attack(f, params, x, y, key, eps, steps: int, step_size) -> jax.Array:
    """PGD L∞ with uniform random start (Madry et al. 2018; torchattacks 3.4.0 ``PGD``), the
    same computation as :func:`robntk.attacks.pgd` (``random_init=True``), with the ``steps``
    iterations unrolled in the trace: on XLA:CPU ops inside a ``while`` loop run ~13× slower
    (measured on TinyNetwork), and the training attack has few steps (7; FGSM-AT 1).

    Args:
        f: ``f(params, x) -> logits`` (BN in eval mode). x: (B, H, W, C) in [0, 1]; y: (B,) int.
        key: PRNG key of the random start. eps, step_size: pixel units. steps: ≥ 1.

    Returns:
        Adversarial examples (shape of x) with ``stop_gradient``.
    """
    xa = attacks.random_start(key, x, eps)
    for _ in range(steps):
        g = attacks.input_grad(f, params, xa, y)
        xa = attacks.project(xa + step_size * jnp.sign(g), x, eps)
    return jax.lax.stop_gradient(xa)


def trades_attack(f, params, x, key, eps, steps: int, step_size) -> jax.Array:
    """TRADES inner maximisation (Zhang et al. 2019, ``trades.py``): start at x + 0.001·N(0, I),
    ``steps`` signed-gradient steps on KL(f(x) ‖ f(x')) (summed over the batch), projection onto
    the L∞ ε-ball and [0, 1] after each step (unrolled, see :func:`pgd_attack`).

    Args: x (B, H, W, C) in [0, 1]; eps, step_size in pixel units. Returns x' (stop_gradient).
    """
    p_nat = jax.nn.softmax(f(params, x))
    xa = x + 0.001 * jax.random.normal(key, x.shape, x.dtype)
    for _ in range(steps):
        g = jax.grad(lambda z: _kl_div(f(params, z), p_nat))(xa)
        xa = attacks.project(xa + step_size * jnp.sign(g), x, eps)
    return jax.lax.stop_gradient(xa)


@functools.lru_cache(maxsize=8)
def compiled_train_step(cfg: TrainConfig, total_steps: int) -> Callable:
    """Memoised :func:`make_train_step` for ``(cfg, total_steps)``: a resumed or repeated run in
    the same process reuses the compiled step instead of compiling it again."""
    return make_train_step(build_model(cfg), make_optimizer(cfg, total_steps), cfg)


def make_train_step(model: TinyNetwork, tx: optax.GradientTransformation, cfg: TrainConfig) -> Callable:
    """Build the jitted train step ``(state, x_all, y_all, idx, key) -> (state, metrics)``.

    Args:
        model, tx, cfg: the network, optimizer and configuration.

    The step gathers ``x_all[idx]`` (uint8 (N, H, W, 3) on device) → float/255 → augmentation →
    training attack with BN in eval mode → loss in train mode (BN batch statistics, running
    statistics updated with PyTorch momentum 0.1) → optax update.

    ``state`` is a dict pytree ``{'params', 'batch_stats', 'opt_state', 'step'}``.
    ``metrics``: ``loss`` (training objective, mean over the batch), ``acc`` (train-mode accuracy
    on the examples the loss is computed on: adversarial for pgd/fgsm, natural for
    trades/clean), ``lr`` and ``momentum`` used by this step (float32 scalars).
    """
    pad = CROP_PAD[cfg.dataset] if cfg.augment else 0
    eps, steps, alpha, beta = cfg.eps, cfg.steps_resolved, cfg.step_size_resolved, cfg.trades_beta
    method = cfg.method

    cell = cfg.arch

    def apply_train(params, bs, x):
        return model.apply_train({"params": params, "batch_stats": bs}, x, cell)

    def step_fn(state, x_all, y_all, idx, key):
        params, bs = state["params"], state["batch_stats"]
        x = x_all[idx].astype(jnp.float32) / 255.0
        y = y_all[idx].astype(jnp.int32)
        k_aug, k_att = jax.random.split(key)
        if cfg.augment:
            x = augment(k_aug, x, pad)

        def f_eval(p, z):
            return model.forward(p, bs, z, cell, False)[0]

        if method in ("pgd", "fgsm"):  # FGSM-AT = one step of 1.25·eps from a random start
            x_in = pgd_attack(f_eval, params, x, y, k_att, eps, steps, alpha)
        elif method == "trades":
            x_in = trades_attack(f_eval, params, x, k_att, eps, steps, alpha)
        else:
            x_in = x

        def loss_fn(p):
            if method == "trades":
                logits_nat, bs1 = apply_train(p, bs, x)
                logits_adv, bs2 = apply_train(p, bs1, x_in)
                _, bs3 = apply_train(p, bs2, x)  # TRADES' third forward (running statistics only)
                robust = _kl_div(logits_adv, jax.nn.softmax(logits_nat)) / x.shape[0]
                loss = attacks.cross_entropy(logits_nat, y) + beta * robust
                return loss, (logits_nat, bs3)
            logits, bs1 = apply_train(p, bs, x_in)
            return attacks.cross_entropy(logits, y), (logits, bs1)

        (loss, (logits, new_bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        hp = opt_state[1].hyperparams  # the values this update used (optax stores them)
        new_params = optax.apply_updates(params, updates)
        acc = jnp.mean((jnp.argmax(logits, -1) == y).astype(jnp.float32))
        new_state = {"params": new_params, "batch_stats": new_bs, "opt_state": opt_state, "step": state["step"] + 1}
        metrics = {"loss": loss, "acc": acc, "lr": hp["learning_rate"], "momentum": hp["momentum"]}
        return new_state, metrics

    return jax.jit(step_fn)


def init_state(model: TinyNetwork, tx: optax.GradientTransformation, cfg: TrainConfig, image_shape) -> dict:
    """Initial train state ``{'params', 'batch_stats', 'opt_state', 'step'}``: the network of
    ``cfg.arch`` for "init seed s" = ``cfg.seed`` (:meth:`robntk.network.TinyNetwork.init` with
    ``PRNGKey(seed)``, the same weights that ``robntk score --seed s`` scores). image_shape: (H, W, 3)
    (unused: the parameter shapes do not depend on the image size)."""
    variables = model.init(jax.random.PRNGKey(cfg.seed), arch=cfg.arch)
    params = variables["params"]
    return {
        "params": params,
        "batch_stats": variables["batch_stats"],
        "opt_state": tx.init(params),
        "step": jnp.asarray(0, jnp.int32),
    }


def build_model(cfg: TrainConfig) -> TinyNetwork:
    """The TinyNetwork of a config (logits over ``cfg.num_classes``)."""
    return TinyNetwork(C=cfg.C, N=cfg.N, num_classes=cfg.num_classes, dataset=cfg.dataset,
                       init_scheme=cfg.init_scheme)


# --------------------------------------------------------------------------------------------
# checkpoints


def _manager(run_dir: Path, create: bool = True):
    import orbax.checkpoint as ocp

    opts = ocp.CheckpointManagerOptions(max_to_keep=2, create=create, enable_async_checkpointing=False)
    return ocp.CheckpointManager((run_dir / CHECKPOINT_DIR).absolute(), options=opts)


def latest_checkpoint_epoch(run_dir: str | os.PathLike) -> int | None:
    """Epoch of the newest complete checkpoint in ``run_dir`` (None if there is none)."""
    d = Path(run_dir) / CHECKPOINT_DIR
    if not d.is_dir():
        return None
    return _manager(Path(run_dir), create=False).latest_step()


def save_checkpoint(run_dir: Path, epoch: int, state: dict, meta: dict) -> None:
    """Save ``state`` and the JSON ``meta`` as checkpoint ``epoch`` (orbax; atomic rename)."""
    import orbax.checkpoint as ocp

    mngr = _manager(run_dir)
    mngr.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    mngr.wait_until_finished()
    mngr.close()


def restore_checkpoint(run_dir: str | os.PathLike, target: dict | None = None, epoch: int | None = None):
    """Restore ``(state, meta)`` from ``run_dir`` (latest epoch unless given).

    Args:
        run_dir: run directory. target: a state pytree with the right structure (restores the
            optimizer state's namedtuples); ``None`` restores plain nested dicts/lists.
        epoch: checkpoint to restore (default: latest).

    Raises:
        FileNotFoundError: no checkpoint in ``run_dir``.
    """
    import orbax.checkpoint as ocp

    run_dir = Path(run_dir)
    ep = latest_checkpoint_epoch(run_dir) if epoch is None else epoch
    if ep is None:
        raise FileNotFoundError(f"no checkpoint found in {run_dir / CHECKPOINT_DIR}")
    mngr = _manager(run_dir, create=False)
    abstract = None if target is None else jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    out = mngr.restore(
        ep, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
    )
    mngr.close()
    return out["state"], out["meta"]


def load_trained(run_dir: str | os.PathLike) -> tuple[TrainConfig, TinyNetwork, dict, dict]:
    """Load a run for evaluation: ``(config, model, variables, meta)`` with
    ``variables = {'params', 'batch_stats'}`` of the latest checkpoint.

    Raises:
        FileNotFoundError: no config.json or no checkpoint in ``run_dir``.
    """
    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: {run_dir} is not a robntk training run directory")
    cfg = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
    state, meta = restore_checkpoint(run_dir)
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    return cfg, build_model(cfg), variables, meta


# --------------------------------------------------------------------------------------------
# logging


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """Per-epoch records of ``metrics.jsonl`` (empty list if absent)."""
    p = Path(run_dir) / METRICS_FILE
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _append_jsonl(path: Path, record: dict) -> None:
    line = json.dumps(record, sort_keys=True) + "\n"
    with open(path, "a") as fh:  # one write of a whole line: atomic for our sizes
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def _truncate_metrics(run_dir: Path, last_epoch: int) -> None:
    recs = [r for r in read_metrics(run_dir) if r["epoch"] <= last_epoch]
    with atomic_write(run_dir / METRICS_FILE) as fh:
        for r in recs:
            fh.write(json.dumps(r, sort_keys=True) + "\n")


def plot_metrics(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Plot per-epoch training loss, accuracy and lr of ``metrics.jsonl`` to a PNG.

    Returns:
        The PNG path (default ``run_dir/training.png``).

    Raises:
        FileNotFoundError: no metrics logged yet.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = read_metrics(run_dir)
    if not recs:
        raise FileNotFoundError(f"no {METRICS_FILE} records in {run_dir}")
    ep = [r["epoch"] for r in recs]
    adv = recs[-1].get("method") in ("pgd", "fgsm")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    axes[0].plot(ep, [r["train_loss"] for r in recs], "o-")
    axes[0].set(xlabel="epoch", ylabel="training loss", title=f"training loss ({recs[-1].get('method')})")
    axes[1].plot(ep, [r["train_acc"] for r in recs], "o-")
    axes[1].set(xlabel="epoch", ylabel="accuracy",
                title="train accuracy (" + ("adversarial" if adv else "natural") + " examples, train-mode BN)")
    cfg_path = Path(run_dir) / CONFIG_FILE
    if cfg_path.is_file() and len(recs) and recs[0]["step"] > 0:
        cfg = TrainConfig.from_dict(json.loads(cfg_path.read_text()))
        spe = recs[0]["step"] // recs[0]["epoch"]
        lr_fn, _ = onecycle_schedules(cfg.epochs * spe, cfg.max_lr, cfg.pct_start, cfg.div_factor,
                                      cfg.final_div_factor, cfg.base_momentum, cfg.max_momentum)
        t = np.arange(cfg.epochs * spe)
        axes[2].plot(t / spe, np.asarray(lr_fn(t)), "-", label="OneCycle lr (per step)")
    spe_ = recs[0]["step"] / recs[0]["epoch"]
    axes[2].plot([(r["step"] - 1) / spe_ for r in recs], [r["lr_last"] for r in recs], "o",
                 label="lr of each epoch's last step")
    axes[2].set(xlabel="epoch", ylabel="learning rate", title="schedule")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(Path(run_dir).name)
    fig.tight_layout()
    out = Path(run_dir) / PLOT_FILE if out is None else Path(out)
    atomic_save(out, lambda p: fig.savefig(p, dpi=110))
    plt.close(fig)
    return out


# --------------------------------------------------------------------------------------------
# the training loop


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
        out_dir: run directory. If it holds a checkpoint, training resumes from it (its
            ``config.json`` must equal ``cfg``); the trajectory is the same as uninterrupted.
        progress: show tqdm progress bars (stderr).
        stop_after_epochs: stop once this many epochs are complete in total (to split a run
            over several sessions; the schedule still spans ``cfg.epochs``).
        log_every: host-sync period in steps (progress-bar update and NaN check).

    Returns:
        Summary dict: ``epochs_done``, ``complete``, ``steps``, ``wall_s`` (this call),
        ``train_images_per_s`` (this call, excluding compilation), ``compile_s``, ``final``
        (last epoch's metrics), ``run_dir``.

    Raises:
        ValueError: bad data (dtype/shape/labels, batch larger than the data) or a config that
            differs from the one stored in ``out_dir``.
        NonFiniteLossError: the loss became NaN/inf (the run stops; checkpoints stay valid).
    """
    from tqdm.auto import tqdm

    cfg.validate()
    check_data(x_train, y_train, cfg.num_classes, cfg.batch_size)
    if stop_after_epochs is not None and (not isinstance(stop_after_epochs, int) or stop_after_epochs < 1):
        raise ValueError(f"stop_after_epochs must be an integer >= 1 (or None), got {stop_after_epochs!r}")
    run_dir = Path(out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / CONFIG_FILE
    cfg_dict = cfg.to_dict()
    if cfg_path.is_file():
        old = json.loads(cfg_path.read_text())
        diff = {k: (old.get(k), v) for k, v in cfg_dict.items() if old.get(k) != v}
        if diff:
            raise ValueError(
                f"{run_dir} holds a run with a different configuration ({diff}; stored, requested); "
                "use a new --out directory or the same settings to resume"
            )
    else:
        with atomic_write(cfg_path) as fh:
            json.dump(cfg_dict, fh, indent=2, sort_keys=True)

    n = len(x_train)
    steps_per_epoch = n // cfg.batch_size
    total_steps = cfg.epochs * steps_per_epoch
    model = build_model(cfg)
    tx = make_optimizer(cfg, total_steps)
    state = init_state(model, tx, cfg, x_train.shape[1:])
    start_epoch = 0
    last = latest_checkpoint_epoch(run_dir)
    if last is not None:
        state, meta = restore_checkpoint(run_dir, target=state, epoch=last)
        start_epoch = int(meta["epoch"])
        if meta.get("n_train") != n or meta.get("steps_per_epoch") != steps_per_epoch:
            raise ValueError(
                f"checkpoint in {run_dir} was trained on {meta.get('n_train')} images "
                f"({meta.get('steps_per_epoch')} steps/epoch), now given {n} ({steps_per_epoch})"
            )
        if progress:
            print(f"resuming {run_dir} from epoch {start_epoch} (step {int(state['step'])})", file=sys.stderr)
    # commit every leaf to the default device: fresh and restored states then have the same
    # shardings, so a resumed run hits the compiled step instead of compiling it again
    state = jax.device_put(state, jax.devices()[0])
    _truncate_metrics(run_dir, start_epoch)
    end_epoch = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)

    summary: dict[str, Any] = {"run_dir": str(run_dir), "steps_per_epoch": steps_per_epoch, "total_steps": total_steps}
    if start_epoch >= end_epoch:
        summary.update(epochs_done=start_epoch, complete=start_epoch >= cfg.epochs, wall_s=0.0)
        return summary

    x_dev = jnp.asarray(x_train)
    y_dev = jnp.asarray(np.asarray(y_train, np.int32))
    step_fn = compiled_train_step(cfg, total_steps)
    t_call = time.perf_counter()
    compile_s = None
    steady_time, steady_images = 0.0, 0
    final: dict[str, Any] = {}
    for epoch in range(start_epoch, end_epoch):
        perm = epoch_permutation(cfg.seed, epoch, n)
        t_ep = time.perf_counter()
        sum_loss = jnp.zeros((), jnp.float32)
        sum_acc = jnp.zeros((), jnp.float32)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False, file=sys.stderr, dynamic_ncols=True)
        t_steady = None
        for s in bar:
            idx = jnp.asarray(perm[s * cfg.batch_size:(s + 1) * cfg.batch_size], jnp.int32)
            state, m = step_fn(state, x_dev, y_dev, idx, step_key(cfg.seed, epoch, s))
            sum_loss = sum_loss + m["loss"]
            sum_acc = sum_acc + m["acc"]
            if compile_s is None:
                jax.block_until_ready(m["loss"])
                compile_s = time.perf_counter() - t_ep
            if s == 0:
                jax.block_until_ready(m["loss"])
                t_steady = time.perf_counter()
            if (s + 1) % log_every == 0 or s + 1 == steps_per_epoch:
                loss_now = float(m["loss"])
                if not math.isfinite(loss_now):
                    raise NonFiniteLossError(
                        f"non-finite training loss {loss_now} at epoch {epoch + 1}, step {s + 1} "
                        f"(global step {epoch * steps_per_epoch + s + 1}); stopping. Last good "
                        f"checkpoint: epoch {latest_checkpoint_epoch(run_dir)} in {run_dir}"
                    )
                bar.set_postfix(loss=f"{float(sum_loss) / (s + 1):.4f}", acc=f"{float(sum_acc) / (s + 1):.3f}",
                                lr=f"{float(m['lr']):.4f}")
        bar.close()
        mean_loss = float(sum_loss) / steps_per_epoch
        mean_acc = float(sum_acc) / steps_per_epoch
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(
                f"non-finite mean training loss {mean_loss} in epoch {epoch + 1}; stopping. Last good "
                f"checkpoint: epoch {latest_checkpoint_epoch(run_dir)} in {run_dir}"
            )
        t_end = time.perf_counter()
        ep_time = t_end - t_ep
        if steps_per_epoch > 1 and t_steady is not None:
            steady_time += t_end - t_steady
            steady_images += (steps_per_epoch - 1) * cfg.batch_size
        meta = {
            "epoch": epoch + 1, "step": int(state["step"]), "seed": cfg.seed, "n_train": n,
            "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
            "data_order": "numpy.random.default_rng([seed, epoch]).permutation(n_train)",
            "step_key": "fold_in(fold_in(fold_in(key(seed), 1), epoch), step)",
            "jax_version": jax.__version__,
        }
        record = {
            "epoch": epoch + 1, "step": int(state["step"]), "train_loss": mean_loss, "train_acc": mean_acc,
            "lr_last": float(m["lr"]), "momentum_last": float(m["momentum"]), "epoch_time_s": ep_time,
            "images_per_s": steps_per_epoch * cfg.batch_size / ep_time, "method": cfg.method,
        }
        # log first, then checkpoint: a kill in between leaves a log line past the last
        # checkpoint, which the resume truncates (the epoch is then redone identically)
        _append_jsonl(run_dir / METRICS_FILE, record)
        save_checkpoint(run_dir, epoch + 1, state, meta)
        final = record
        if progress:
            print(f"epoch {epoch + 1}/{cfg.epochs}: loss {mean_loss:.4f} acc {mean_acc:.4f} "
                  f"({ep_time:.1f} s, {record['images_per_s']:.1f} img/s)", file=sys.stderr)

    wall = time.perf_counter() - t_call
    summary.update(
        epochs_done=end_epoch, complete=end_epoch >= cfg.epochs, wall_s=wall, compile_s=compile_s,
        train_images_per_s=(steady_images / steady_time) if steady_time > 0 else None, final=final,
    )
    if summary["complete"]:
        summary["plot"] = str(plot_metrics(run_dir))
        with atomic_write(run_dir / SUMMARY_FILE) as fh:
            json.dump(summary, fh, indent=2, sort_keys=True)
    return summary


# --------------------------------------------------------------------------------------------
# data loading and CLI


def load_split(dataset: str, split: str, data_dir=None, limit: int | None = None, seed: int = 0):
    """Load a split with :func:`robntk.datasets.load_dataset` and keep a class-balanced
    deterministic subset of ``limit`` images (:func:`balanced_subset`).

    CIFAR-10 is read with ``load_cifar10(split, allow_subset=False)``: the official batches if
    present, else image folders/tars (all 50,000 train images), never the 10k-image train npz.

    Returns:
        ``(x uint8 (n, H, W, 3), y int64 (n,))``.

    Raises:
        ValueError: unknown dataset/split or bad limit. FileNotFoundError: data not found.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    from .datasets import load_cifar10, load_dataset

    if dataset == "cifar10":  # never silently train on the bundle's 10k-image train npz subset
        x, y = load_cifar10(split, data_dir, allow_subset=False)
    else:
        x, y = load_dataset(dataset, split, data_dir=data_dir)
    idx = balanced_subset(np.asarray(y), limit, seed)
    return np.asarray(x)[idx], np.asarray(y, np.int64)[idx]


def resolve_arch(arch: str, data_dir=None) -> tuple[str, int | None]:
    """CLI ``--arch``: an NB201 index (needs the data directory's ``nb201_archs/meta.json``) or an
    arch string. Returns ``(arch_string, index or None)``.

    Raises:
        ValueError: malformed arch string or index out of range.
    """
    from .searchspace import SearchSpace

    a = str(arch).strip()
    if a.isdigit():
        space = SearchSpace.load(data_dir)
        idx = space.resolve(int(a))
        return space.arch_str(idx), idx
    arch_str = format_arch_str(to_ops(a))
    try:
        idx = SearchSpace.load(data_dir).resolve(arch_str)
    except (FileNotFoundError, ValueError):
        idx = None
    return arch_str, idx


def _pixels(v: float | None) -> float | None:
    return None if v is None else float(v) / 255.0


def add_arguments(parser) -> None:
    """Arguments of ``robntk train`` (``--data-dir`` is added by the CLI)."""
    p = parser
    p.add_argument("--arch", required=True, help="NB201 index (e.g. 2581) or arch string")
    p.add_argument("--dataset", default="cifar10", choices=DATASETS)
    p.add_argument("--method", default="pgd", help=f"training method: {', '.join(METHODS)} (default pgd)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-limit", type=int, default=None,
                   help="train on a class-balanced deterministic subset of this many images")
    p.add_argument("--out", required=True, help="run directory (resumes if it holds a checkpoint)")
    p.add_argument("--eps", type=float, default=8.0, help="training-attack radius in 1/255 units (default 8)")
    p.add_argument("--attack-steps", type=int, default=None, help="training-attack steps (method default)")
    p.add_argument("--attack-step-size", type=float, default=None,
                   help="training-attack step in 1/255 units (method default: PGD 2, FGSM 1.25*eps, TRADES 0.007*255)")
    p.add_argument("--trades-beta", type=float, default=6.0)
    p.add_argument("--lr", type=float, default=0.1, help="OneCycle max lr (default 0.1)")
    p.add_argument("--C", type=int, default=16, help="TinyNetwork width (16)")
    p.add_argument("--N", type=int, default=5, help="cells per stage (5)")
    p.add_argument("--no-augment", action="store_true", help="disable RandomCrop + flip")
    p.add_argument("--stop-after-epochs", type=int, default=None,
                   help="stop once this many epochs are done (resume later with the same command)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    """``robntk train``: load the data, train/resume, print the summary. Returns 0, or 3 if
    the loss became non-finite."""
    if not 0.0 <= args.eps <= 255.0:
        raise ValueError(f"--eps must be in [0, 255] (units of 1/255, e.g. 8), got {args.eps}")
    if args.attack_step_size is not None and not args.attack_step_size > 0:
        raise ValueError(f"--attack-step-size must be > 0 (units of 1/255), got {args.attack_step_size}")
    arch, idx = resolve_arch(args.arch, args.data_dir)
    cfg = TrainConfig(
        arch=arch, arch_index=idx, dataset=args.dataset, method=args.method, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, C=args.C, N=args.N, eps=_pixels(args.eps),
        attack_steps=args.attack_steps, attack_step_size=_pixels(args.attack_step_size),
        trades_beta=args.trades_beta, max_lr=args.lr, augment=not args.no_augment,
        train_limit=args.train_limit,
    )
    x, y = load_split(cfg.dataset, "train", args.data_dir, args.train_limit, seed=0)
    try:
        summary = train(cfg, x, y, args.out, progress=not args.no_progress,
                        stop_after_epochs=args.stop_after_epochs)
    except NonFiniteLossError as exc:
        print(f"robntk train: error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps({k: v for k, v in summary.items() if k != "final"} | {"final": summary.get("final")},
                     indent=2, sort_keys=True, default=str))
    return 0
