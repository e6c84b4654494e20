"""robntk's one optimiser, SGD with coupled weight decay (:func:`sgd`), and its schedules: PyTorch's
``OneCycleLR`` (NAS-RobBench-201's training) and cosine decay (RobNets), in optax.

Reference: the benchmark's ``main.py`` (github.com/TT2408/nasrobbench201):
``torch.optim.SGD(lr, momentum=0.9, weight_decay=5e-4)`` on all parameters and
``OneCycleLR(max_lr=0.1)`` with its defaults, stepped per iteration. PyTorch's formulas are in
``torch/optim/lr_scheduler.py`` (``OneCycleLR``) and ``torch/optim/sgd.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import optax


def _float():
    """JAX's default float dtype now: float32, float64 under ``jax_enable_x64`` (read at call time)."""
    return jnp.result_type(float)


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
        ``(lr_fn, momentum_fn)``, each mapping an int (array) step to an array of JAX's default
        float dtype: float32, or float64 under ``jax_enable_x64`` (PyTorch computes the schedule
        in double precision; a float32 lr would perturb a float64 run by ~1e-7 relative per step).

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
        t = jnp.minimum(jnp.asarray(step, _float()), e2)
        return t <= e1, (e1 - t) / d1, (e2 - t) / d2

    def lr_fn(step):
        first, q1, q2 = _phase(step)
        return jnp.where(first, _anneal(initial, max_lr, q1), _anneal(max_lr, min_lr, q2)).astype(_float())

    def momentum_fn(step):
        first, q1, q2 = _phase(step)
        return jnp.where(
            first, _anneal(max_momentum, base_momentum, q1), _anneal(base_momentum, max_momentum, q2)
        ).astype(_float())

    return lr_fn, momentum_fn


def sgd(
    learning_rate: float | Callable, momentum: float | Callable | None = 0.9, weight_decay: float = 0.0
) -> optax.GradientTransformation:
    """SGD as ``torch.optim.SGD(lr, momentum, weight_decay)``: the one optimiser of every robntk
    training (NAS-RobBench-201's run, the RobNets supernet and fine-tunes, the FSP study, RobNet
    training).

    ``optax.add_decayed_weights(wd)`` (g ← g + wd·θ, every parameter, coupled as PyTorch does) →
    ``inject_hyperparams(optax.sgd)(learning_rate, momentum)``: buf ← m_t·buf + g (buf₀ = g, as
    PyTorch's first step), θ ← θ − lr_t·buf. The lr and momentum used by the latest update are
    readable from ``opt_state[1].hyperparams`` (float32 scalars).

    Args:
        learning_rate: a float, or a schedule ``step -> lr`` (0-based optimizer steps), e.g.
            :func:`onecycle_schedules`' or :func:`cosine_lr`.
        momentum: a float in [0, 1), a schedule, or None (plain SGD).
        weight_decay: coupled L2 factor (≥ 0; 0 adds exactly nothing).

    Returns:
        The optax transformation.

    Raises:
        ValueError: a negative weight decay, a non-positive constant lr, or a constant momentum
            outside [0, 1).
    """
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if not callable(learning_rate) and not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if momentum is not None and not callable(momentum) and not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate, momentum=momentum),
    )


def cosine_lr(lr: float, total_steps: int) -> Callable:
    """Cosine decay from ``lr`` to 0 over ``total_steps`` optimizer steps
    (``optax.cosine_decay_schedule(lr, max(total_steps, 1))``: lr_t = lr·½(1 + cos(π·min(t, T)/T));
    Loshchilov & Hutter, SGDR, ICLR 2017, without restarts). The RobNets supernet's and RobNet
    training's schedule."""
    return optax.cosine_decay_schedule(lr, max(int(total_steps), 1))


def sgd_onecycle(
    total_steps: int,
    *,
    max_lr: float = 0.1,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    weight_decay: float = 5e-4,
) -> optax.GradientTransformation:
    """SGD as ``torch.optim.SGD(lr, momentum, weight_decay)`` under ``OneCycleLR``: :func:`sgd`
    with the lr and momentum schedules of :func:`onecycle_schedules`.

    Args:
        total_steps: optimizer steps of the whole run (≥ 1).
        (others): as :func:`onecycle_schedules`; weight_decay the coupled L2 factor.

    Raises:
        ValueError: total_steps < 1.
    """
    lr_fn, mom_fn = onecycle_schedules(
        total_steps, max_lr, pct_start, div_factor, final_div_factor, base_momentum, max_momentum
    )
    return sgd(lr_fn, mom_fn, weight_decay)
