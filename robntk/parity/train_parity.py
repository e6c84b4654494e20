"""Step-by-step parity of ``robntk train``'s PGD-AT step with the benchmark's PyTorch step.

:func:`run_train_parity` starts both from the same weights (robntk's "init seed s", converted by
:func:`robntk.parity.torch_reference.load_robntk_variables`), runs robntk's real jitted step
(:func:`robntk.train.step.make_step` with :meth:`StepSpec.of(cfg) <robntk.train.step.StepSpec.of>`,
the cell compiled in, :func:`robntk.train.optim.sgd_onecycle`, the data order
:func:`robntk.train.step.epoch_batch` and keys :func:`robntk.train.loop.step_key` of ``robntk
train``) and :class:`~robntk.parity.torch_reference.ReferenceTrainer` on the same batches, and
after every optimizer step compares the adversarial batch, the loss, the gradients, the weights
and the BN running statistics, and the lr/momentum used.

Same draws: robntk's step splits its key into an augmentation key (RandomCrop offsets and flips,
:func:`robntk.data.datasets.augment`) and an attack key (PGD start U(−1, 1)·ε,
:func:`robntk.attacks.iterative.random_start`). :func:`robntk_draws` makes the same calls on the
same key, so the reference receives the crop offsets, flips and start noise robntk used — the
reference crops and flips in numpy (torchvision ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``
semantics), and adds the noise where torchattacks adds its ``uniform_(-eps, eps)`` draw.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

from robntk.parity import torch_reference as ref
from robntk.train.config import TrainConfig
from robntk.train.loop import build_model, step_key
from robntk.train.optim import sgd_onecycle
from robntk.train.step import StepSpec, epoch_batch, initial_state, make_step

QUANTITIES = ("x_adv", "loss", "grads", "params", "batch_stats", "lr", "momentum")


def robntk_draws(key: jax.Array, shape: tuple[int, int, int, int], pad: int, eps: float, dtype) -> dict:
    """The random decisions robntk's train step takes from its key ``key`` for a batch of
    ``shape`` (B, H, W, C) (``robntk/train/step.py`` ``step_fn``: ``k_aug, k_att = split(key)``;
    ``robntk/data/datasets.py`` ``augment``; ``robntk/attacks/iterative.py`` ``random_start``).

    Returns:
        ``{'offsets': int (B, 2) crop corner (row, column) in the padded image,
        'flips': bool (B,), 'uniform': float32 (B, H, W, C) U(−1, 1), 'noise': ``uniform`` cast to
        ``dtype`` × ε (robntk's start offset)}``.
    """
    B = shape[0]
    k_aug, k_att = jax.random.split(key)
    k_off, k_flip = jax.random.split(k_aug)
    off = np.asarray(jax.random.randint(k_off, (B, 2), 0, 2 * pad + 1)) if pad > 0 else np.zeros((B, 2), int)
    flips = np.asarray(jax.random.bernoulli(k_flip, 0.5, (B, 1, 1, 1))).reshape(B)
    u = np.asarray(jax.random.uniform(k_att, shape, jnp.float32, -1.0, 1.0))
    dt = np.dtype(dtype)
    return {"offsets": off, "flips": flips, "uniform": u, "noise": u.astype(dt) * dt.type(eps)}


def crop_flip(x: np.ndarray, offsets: np.ndarray, flips: np.ndarray, pad: int) -> np.ndarray:
    """torchvision ``RandomCrop(H, padding=pad)`` (zero fill) then ``RandomHorizontalFlip`` with
    the given decisions. x (B, H, W, C); offsets (B, 2) int in [0, 2·pad]; flips bool (B,)."""
    B, H, W, _ = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.stack([xp[i, o[0] : o[0] + H, o[1] : o[1] + W] for i, o in enumerate(offsets)])
    out[flips] = out[flips][:, :, ::-1]
    return out


def _robntk_snapshot(state, m) -> dict[str, Any]:
    return {
        "x_adv": np.asarray(m["x_in"]),
        "loss": np.asarray(m["loss"]),
        "grads": m["grads"],
        "params": state["params"],
        "batch_stats": state["batch_stats"],
        "lr": np.asarray(m["lr"]),
        "momentum": np.asarray(m["momentum"]),
    }


def _reference_snapshot(tmodel, r: dict, like: dict) -> dict[str, Any]:
    """The reference's step in robntk's layout (``like``: robntk ``{'params', 'batch_stats'}``)."""
    v = ref.state_dict_to_variables(tmodel.state_dict(), like)
    return {
        "x_adv": ref.nchw_to_nhwc(r["x_adv"]),
        "loss": np.asarray(r["loss"]),
        "grads": ref.state_dict_to_variables(r["grads"], {"params": like["params"]})["params"],
        "params": v["params"],
        "batch_stats": v["batch_stats"],
        "lr": np.asarray(r["lr"]),
        "momentum": np.asarray(r["momentum"]),
    }


def _diffs(a: dict, b: dict) -> dict[str, float]:
    return {q: ref.max_rel_diff(a[q], b[q]) for q in QUANTITIES}


def run_train_parity(
    arch: str,
    x_all: np.ndarray,
    y_all: np.ndarray,
    *,
    steps: int = 50,
    batch_size: int = 8,
    C: int = 16,
    N: int = 5,
    seed: int = 0,
    dtype: str = "float64",
    biased_running_var: bool = False,
    total_steps: int | None = None,
    shadow_float64: bool = False,
    torch_threads: int | None = 1,
) -> dict[str, Any]:
    """Run ``steps`` PGD-AT steps of robntk and of the reference side by side.

    Args:
        arch: NB201 arch string. x_all: uint8 (n, 32, 32, 3) CIFAR-10 images; y_all: labels (n,).
        steps: optimizer steps compared. batch_size: images per step (n ≥ batch_size).
        C, N: network width and cells per stage. seed: robntk's init seed (also data order/keys).
        dtype: ``'float64'`` (needs ``jax_enable_x64``) or ``'float32'``.
        biased_running_var: the reference's BN running-variance convention
            (:mod:`robntk.parity.torch_reference`; False = PyTorch's).
        total_steps: length of both OneCycle schedules (None: ``steps``, so the whole cycle —
            warm-up, peak, annealing — is traversed).
        shadow_float64: with ``dtype='float32'``, also run the reference in float64 on the same
            draws (the same U(−1, 1) start noise times ε in float64), the exact-arithmetic
            trajectory both float32 runs are measured against (``per_step_vs_float64``).
        torch_threads: ``torch.set_num_threads`` for the run (restored after; None: leave it).
            1 by default: on a shared 2-core machine PyTorch's OpenMP threads spin at barriers
            while another process holds a core, which made a step 10-100× slower.

    Returns:
        ``{'per_step': {quantity: [max relative difference robntk vs reference after step t]},
        'max': {quantity: max over steps}, 'loss_robntk', 'loss_reference' (lists),
        'seconds': {'robntk', 'reference'}, 'config': {...}}``, and with ``shadow_float64``
        ``'per_step_vs_float64': {'robntk': {...}, 'reference': {...}}`` and
        ``'max_vs_float64'`` likewise. Quantities: :data:`QUANTITIES`; the relative difference
        is :func:`~robntk.parity.torch_reference.max_rel_diff` (the second run as reference).

    Raises:
        ValueError: float64 requested without ``jax_enable_x64``, shadow_float64 with float64,
            or a bad configuration.
    """
    if dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype='float64' needs jax_enable_x64 (e.g. `with jax.enable_x64(True):`)")
    if shadow_float64 and dtype != "float32":
        raise ValueError("shadow_float64 compares a float32 run with float64; dtype must be 'float32'")
    total = steps if total_steps is None else total_steps
    threads = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    try:
        return _run(arch, x_all, y_all, steps, batch_size, C, N, seed, dtype, biased_running_var, total, shadow_float64)
    finally:
        torch.set_num_threads(threads)


def _run(arch, x_all, y_all, steps, batch_size, C, N, seed, dtype, biased, total, shadow) -> dict[str, Any]:
    cfg = TrainConfig(arch=arch, C=C, N=N, batch_size=batch_size, seed=seed, epochs=1)
    spec = StepSpec.of(cfg)
    model = build_model(cfg)
    jdt = jnp.float64 if dtype == "float64" else jnp.float32
    variables = model.init(jax.random.PRNGKey(seed), dtype=jdt, arch=cfg.arch)
    tx = sgd_onecycle(total)  # the benchmark's settings are the defaults
    state = initial_state(variables["params"], tx, variables["batch_stats"])
    step_fn = make_step(model, tx, spec, cell=cfg.arch, internals=True)

    def reference(dt):
        tm = ref.build_model(cfg.arch, C=C, N=N, dtype=dt, biased_running_var=biased)
        ref.load_robntk_variables(tm, variables)
        return tm, ref.ReferenceTrainer(
            tm, total, eps=spec.eps, alpha=spec.attack_step_size, attack_steps=spec.attack_steps
        )

    tmodel, trainer = reference(dtype)
    tmodel64, trainer64 = reference("float64") if shadow else (None, None)

    x_all = np.asarray(x_all)
    x_float = x_all.astype(np.float64) / 255.0 if dtype == "float64" else x_all.astype(np.float32) / np.float32(255)
    x_dev = jnp.asarray(x_float) if dtype == "float64" else jnp.asarray(x_all)  # robntk train feeds uint8
    y_dev = jnp.asarray(np.asarray(y_all, np.int32))
    n, per_epoch = len(x_all), max(len(x_all) // batch_size, 1)
    like = {"params": variables["params"], "batch_stats": variables["batch_stats"]}
    per_step: dict[str, list[float]] = {q: [] for q in QUANTITIES}
    vs64: dict[str, dict[str, list[float]]] = {w: {q: [] for q in QUANTITIES} for w in ("robntk", "reference")}
    losses_j, losses_t, secs = [], [], {"robntk": 0.0, "reference": 0.0}
    for t in range(steps):
        idx = epoch_batch(seed, t, n, batch_size)
        e, s = divmod(t, per_epoch)
        key = step_key(seed, e, s)
        t0 = time.perf_counter()
        state, m = step_fn(state, x_dev, y_dev, jnp.asarray(idx, jnp.int32), key)
        jax.block_until_ready(state)
        t1 = time.perf_counter()
        d = robntk_draws(key, (len(idx),) + x_all.shape[1:], spec.crop_pad, spec.eps, x_float.dtype)
        xb = crop_flip(x_float[idx], d["offsets"], d["flips"], spec.crop_pad)
        yb = torch.from_numpy(np.asarray(y_all, np.int64)[idx])
        tdt = ref.torch_dtype(dtype)
        t2 = time.perf_counter()
        r = trainer.step(ref.nhwc_to_nchw(xb, tdt), yb, ref.nhwc_to_nchw(d["noise"], tdt))
        secs["robntk"] += t1 - t0
        secs["reference"] += time.perf_counter() - t2
        a, b = _robntk_snapshot(state, m), _reference_snapshot(tmodel, r, like)
        for q, v in _diffs(a, b).items():
            per_step[q].append(v)
        if shadow:
            x64 = crop_flip(x_all[idx].astype(np.float64) / 255.0, d["offsets"], d["flips"], spec.crop_pad)
            noise64 = d["uniform"].astype(np.float64) * spec.eps
            r64 = trainer64.step(ref.nhwc_to_nchw(x64), yb, ref.nhwc_to_nchw(noise64))
            c = _reference_snapshot(tmodel64, r64, like)
            for w, snap in (("robntk", a), ("reference", b)):
                for q, v in _diffs(snap, c).items():
                    vs64[w][q].append(v)
        losses_j.append(float(m["loss"]))
        losses_t.append(r["loss"])
    out = {
        "per_step": per_step,
        "max": {q: max(v) for q, v in per_step.items()},
        "loss_robntk": losses_j,
        "loss_reference": losses_t,
        "seconds": secs,
        "config": {
            "arch": cfg.arch,
            "steps": steps,
            "total_steps": total,
            "batch_size": batch_size,
            "C": C,
            "N": N,
            "seed": seed,
            "dtype": dtype,
            "biased_running_var": biased,
            "n_images": n,
        },
    }
    if shadow:
        out["per_step_vs_float64"] = vs64
        out["max_vs_float64"] = {w: {q: max(v) for q, v in d.items()} for w, d in vs64.items()}
    return out
