"""Robustness evaluation as NAS-RobBench-201 reports it, plus AutoAttack-style extras.

Metrics (fractions in [0, 1], BN in eval mode, the benchmark's key names, as the reference code
github.com/TT2408/nasrobbench201 ``main.py`` computes them):

===============================  ==============================================================
``val_acc``                      clean accuracy
``val_fgsm_{e}_acc``             FGSM (torchattacks ``FGSM``), e ∈ {3.0, 8.0} (ε in 255ths)
``val_pgd_{e}_acc``              PGD-20, step 2.5·ε/20, uniform random start (torchattacks ``PGD``)
``autoattack``                   AutoAttack-standard-style worst case at ε = 8/255 (see below)
``val_apgd-ce_{e}_acc``          APGD-CE alone (extra)
``val_apgd-t_{e}_acc``           APGD-T alone (extra)
``val_square_{e}_acc``           Square alone (extra)
``val_autoattack_{e}_acc``       the ensemble at every AA radius (``autoattack`` = the 8.0 one)
``val_worst_{e}_acc``            per-example worst case over every attack run at that radius
===============================  ==============================================================

FGSM and PGD are evaluated on every example and report the accuracy on the perturbed images
(as the benchmark does); the APGD/Square family starts from the correctly classified points.

The ensemble (AutoAttack's ``run_standard_evaluation`` / torchattacks ``MultiAttack``) runs
APGD-CE → APGD-T → Square sequentially, each on the points still robust, and an example counts
as robust only if it survives all of them. **FAB-T is not implemented**, so ``autoattack`` is
an upper bound of the real AutoAttack accuracy (in the AutoAttack paper's evaluations FAB-T
rarely lowers the accuracy further once APGD-T has run). Presets (``aa_version``):

* ``'torchattacks'`` (default): what the benchmark ran — torchattacks 3.4.0
  ``AutoAttack(norm='Linf', version='standard', n_classes=K)``, whose APGD and APGD-T use the
  torchattacks defaults ``steps=10`` and ``n_target_classes = K − 1``, and Square 5000 queries.
* ``'original'``: fra31/auto-attack standard — APGD 100 steps, APGD-T 9 targets × 100 steps,
  Square 5000 queries.

Every example draws its randomness from ``fold_in(key(attack, radius, stage), example index)``
(:mod:`robntk.attacks.autoattack`), so results are independent of batching and of which points are
still being attacked; consequently the ensemble is never above any of its members, exactly.
Batches are padded to a fixed size (power-of-two buckets below ``batch_size``) so each attack
compiles once per bucket. Iterative attacks are driven from Python over jitted single steps
(:func:`robntk.attacks.run_attack` with ``loop='host'``: XLA:CPU runs ops inside while loops
several times slower than unrolled, ``benchmarks/RESULTS.md`` §5, and long loops cannot be
unrolled).

Metric names are :func:`robntk.core.registry.metric_name`'s; every ε is in [0, 1] pixel units
(``robntk evaluate --eps 3/255 8/255``, :mod:`robntk.commands.evaluate`). Every attack is an
:class:`robntk.attacks.IterativeAttack` — :func:`~robntk.attacks.fgsm_attack`,
:func:`~robntk.attacks.pgd_attack` (per-example keys), :func:`~robntk.attacks.apgd_attack`
(CE, and one targeted-DLR run per APGD-T target) and :func:`~robntk.attacks.square_attack` — run
the same way by :func:`robntk.attacks.run_attack`. The evaluator writes no file: the caller
(:mod:`robntk.commands.evaluate`) writes :func:`evaluate_run`'s record.

Gradient-masking sanity checks in the spirit of AutoAttack's ``checks.py``
(:func:`sanity_checks`) are stored as ``warnings`` in the output. What to evaluate and how
(:class:`~robntk.train.eval_config.EvalConfig`, the attacks and presets) is
:mod:`robntk.train.eval_config`.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robntk import attacks
from robntk._version import __version__
from robntk.core.registry import AA_METRIC, CLEAN_METRIC, format_eps, metric_name
from robntk.data.datasets import check_data
from robntk.train.eval_config import ATTACKS, ENSEMBLE, EvalConfig
from robntk.train.loop import load_trained

_ATTACK_IDS = {"clean": 0, "fgsm": 1, "pgd": 2, "apgd-ce": 3, "apgd-t": 4, "square": 5}
BENCHMARK_AA_EPS = 8.0 / 255.0


def _bucket(n: int, batch_size: int, min_batch: int = 8) -> int:
    b = min_batch
    while b < n:
        b *= 2
    return min(b, batch_size)


class RobustnessEvaluator:
    """Runs the attacks of an :class:`EvalConfig` on a pure model ``f(params, x) -> logits``.

    Args:
        f: logits function, BN in eval mode (``make_apply(model, variables, 'eval')``).
        params: its parameters.
        num_classes: K.
        cfg: the evaluation configuration.
        progress: tqdm bars per attack stage.

    Use :meth:`evaluate` on uint8 images (N, H, W, 3) and int labels (N,).
    """

    def __init__(self, f: Callable, params, num_classes: int, cfg: EvalConfig, progress: bool = False):
        self.f, self.params, self.num_classes, self.cfg = f, params, num_classes, cfg
        self.settings = cfg.resolved(num_classes)
        self.progress = progress
        self._fns: dict[str, Any] = {}
        self.timing: dict[str, float] = {}

    # -- jitted per-batch functions --------------------------------------------------------
    #
    # Every attack is an IterativeAttack (robntk.attacks), its init / step / finish jitted once
    # per batch size, and run_attack drives the iterations from the host (loop='host'): on
    # XLA:CPU, ops inside a while loop run several times slower than the same ops unrolled
    # (benchmarks/RESULTS.md §5), and unrolling 20-5000 iterations would make compilation explode. The dispatch
    # overhead per iteration is negligible on CPU and GPU.

    def _make(self, kind: str, rank=None) -> attacks.IterativeAttack:
        """The attack ``kind`` with the resolved settings; APGD-T runs one target, the class of
        the ``rank``-th largest clean logit (``rank`` may be traced)."""
        f, s = self.f, self.settings
        if kind == "fgsm":
            return attacks.fgsm_attack(f)
        if kind == "pgd":  # torchattacks PGD: per-example U(-eps, eps) start, step factor*eps/steps
            return attacks.pgd_attack(f, steps=s["pgd_steps"], alpha_factor=s["pgd_step_factor"])
        if kind == "apgd-ce":
            return attacks.apgd_attack(f, steps=s["apgd_steps"], loss="ce")
        if kind == "apgd-t":
            return attacks.apgd_attack(f, steps=s["apgd_steps"], loss="dlr-targeted", target_rank=rank)
        if kind == "square":
            return attacks.square_attack(f, n_queries=s["square_queries"], p_init=s["square_p_init"])
        raise ValueError(f"unknown attack {kind!r}; allowed: {', '.join(ATTACKS[1:-1])}")  # pragma: no cover

    def _jitted(self, kind: str, rank: int) -> attacks.IterativeAttack:
        """:meth:`_make`'s attack with jitted pieces, compiled once per attack (and batch size):
        the APGD-T target rank is an argument of the compiled ``init`` (``step`` and ``finish``
        do not depend on it: the targets live in the carry)."""
        if kind not in self._fns:
            proto = self._make(kind, 2)
            init = jax.jit(lambda p, x, y, e, k, r: self._make(kind, r).init(p, x, y, e, k))
            done = None if proto.done is None else jax.jit(proto.done)
            self._fns[kind] = (init, jax.jit(proto.step), jax.jit(proto.finish), proto.steps, done)
        init, step, finish, steps, done = self._fns[kind]
        r = jnp.asarray(rank, jnp.int32)
        return attacks.IterativeAttack(lambda p, x, y, e, k: init(p, x, y, e, k, r), step, finish, steps, done)

    def _correct(self, params, xa, y):
        if "correct" not in self._fns:
            f = self.f
            self._fns["correct"] = jax.jit(lambda p, z, t: jnp.argmax(f(p, z), -1) == t)
        return self._fns["correct"](params, xa, y)

    def _example_keys(self, key, idx) -> jax.Array:
        """``fold_in(key, i)`` for the global example indices ``idx``: an example's randomness
        does not depend on its batch."""
        if "keys" not in self._fns:
            self._fns["keys"] = jax.jit(lambda k, ii: jax.vmap(lambda i: jax.random.fold_in(k, i))(ii))
        return self._fns["keys"](key, idx)

    def _key(self, kind: str, eps: float) -> jax.Array:
        k = jax.random.fold_in(jax.random.key(self.cfg.seed), _ATTACK_IDS[kind])
        return jax.random.fold_in(k, int(round(eps * 255 * 1000)))

    def _attack_batch(
        self, kind: str, xb: np.ndarray, yb: np.ndarray, idx: np.ndarray, key, eps: float, rank: int
    ) -> np.ndarray:
        """Correct-after-attack flags of one padded batch: the attack run by
        :func:`robntk.attacks.run_attack` on the host, its points re-checked by one shared jitted
        forward pass (:meth:`_correct`), as AutoAttack does. Square stops once every point is
        fooled (checked every 25 queries; fooled points are frozen, so this changes only the
        work done)."""
        x = jnp.asarray(xb.astype(np.float32) / 255.0)
        y = jnp.asarray(yb, jnp.int32)
        if kind != "clean":
            keys = self._example_keys(key, jnp.asarray(idx, jnp.int32))
            x_adv = attacks.run_attack(
                self._jitted(kind, rank),
                self.params,
                x,
                y,
                jnp.asarray(eps, jnp.float32),
                keys,
                loop="host",
                check_every=25,
            )
        else:
            x_adv = x
        return np.asarray(self._correct(self.params, x_adv, y))

    def _run(
        self,
        kind: str,
        eps: float,
        x: np.ndarray,
        y: np.ndarray,
        idx: np.ndarray,
        rank: int = 0,
        desc: str | None = None,
    ) -> np.ndarray:
        """Correct-after-attack flags for the examples ``idx`` (global indices)."""
        from tqdm.auto import tqdm

        out = np.zeros(len(idx), bool)
        if len(idx) == 0:
            return out
        key, bs = self._key(kind, eps), self.cfg.batch_size
        starts = range(0, len(idx), bs)
        bar = tqdm(
            starts,
            desc=desc or f"{kind} eps={format_eps(eps)}",
            disable=not self.progress,
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        for start in bar:
            chunk = idx[start : start + bs]
            size = _bucket(len(chunk), bs, self.cfg.min_batch)
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk))])
            ok = self._attack_batch(kind, x[padded], y[padded], padded, key, eps, rank)
            out[start : start + len(chunk)] = ok[: len(chunk)]
        bar.close()
        return out

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        """Run every configured attack (clean accuracy is always computed: it is the starting set of
        the APGD/Square family).

        Args:
            x: uint8 (N, H, W, 3) images; y: int labels (N,) in [0, K).

        Returns:
            ``{'metrics': {key: accuracy}, 'per_example': {key: bool (N,)}, 'timing_s': {...},
            'ensemble_trace': {'8/255': {stage: robust accuracy after it}}, 'warnings': [...]}``.

        Raises:
            ValueError: bad data (see :func:`robntk.data.datasets.check_data`).
        """
        check_data(x, y, self.num_classes)
        self.timing = {}
        x = np.asarray(x)
        y = np.asarray(y, np.int32)
        n = len(y)
        all_idx = np.arange(n)
        cfg, want = self.cfg, set(self.cfg.attacks)
        per: dict[str, np.ndarray] = {}
        metrics: dict[str, float] = {}
        trace: dict[str, dict[str, float]] = {}

        def timed(name, fn, *a, **kw):
            t = time.perf_counter()
            r = fn(*a, **kw)
            self.timing[name] = self.timing.get(name, 0.0) + time.perf_counter() - t
            return r

        clean = timed("clean", self._run, "clean", 0.0, x, y, all_idx, desc="clean")
        per[CLEAN_METRIC] = clean
        metrics[CLEAN_METRIC] = float(clean.mean())
        worst: dict[float, np.ndarray] = {}

        for kind in ("fgsm", "pgd"):
            if kind not in want:
                continue
            for e in cfg.eps:
                ok = timed(kind, self._run, kind, e, x, y, all_idx)
                per[metric_name(kind, e)] = ok
                metrics[metric_name(kind, e)] = float(ok.mean())
                worst[e] = worst.get(e, clean) & ok

        comps = [c for c in ENSEMBLE if c in want]
        if comps or "autoattack" in want:
            for e in cfg.aa_eps:
                # result of each component per example: -1 unknown, 0 fooled, 1 robust
                res = {c: np.where(clean, -1, 0).astype(np.int8) for c in ENSEMBLE}

                def ensure(comp, need):
                    todo = need & (res[comp] < 0)
                    if not todo.any():
                        return
                    if comp == "apgd-t":
                        alive = todo.copy()
                        for rank in range(2, self.settings["apgd_targets"] + 2):
                            idx = np.flatnonzero(alive)
                            if not len(idx):
                                break
                            ok = timed(
                                comp,
                                self._run,
                                comp,
                                e,
                                x,
                                y,
                                idx,
                                rank=rank,
                                desc=f"apgd-t eps={format_eps(e)} target {rank - 1}",
                            )
                            alive[idx[~ok]] = False
                        res[comp][todo] = alive[todo]
                    else:
                        idx = np.flatnonzero(todo)
                        res[comp][idx] = timed(comp, self._run, comp, e, x, y, idx)

                if "autoattack" in want:
                    alive = clean.copy()
                    stages = {"clean": float(alive.mean())}
                    for comp in ENSEMBLE:
                        ensure(comp, alive)
                        alive &= res[comp] == 1
                        stages[f"after {comp}"] = float(alive.mean())
                    trace[format_eps(e)] = stages
                    per[metric_name("autoattack", e)] = alive
                    metrics[metric_name("autoattack", e)] = float(alive.mean())
                    if abs(e - BENCHMARK_AA_EPS) < 1e-9:
                        metrics[AA_METRIC] = float(alive.mean())
                    # APGD-CE ran on every correctly classified point: report it for free
                    per[metric_name("apgd-ce", e)] = res["apgd-ce"] == 1
                    metrics[metric_name("apgd-ce", e)] = float((res["apgd-ce"] == 1).mean())
                for comp in comps:
                    ensure(comp, clean)
                    ok = res[comp] == 1
                    per[metric_name(comp, e)] = ok
                    metrics[metric_name(comp, e)] = float(ok.mean())
                w = worst.get(e, clean)
                for comp in ENSEMBLE:
                    w = w & (res[comp] != 0)
                worst[e] = w

        for e, w in worst.items():
            per[metric_name("worst", e)] = w
            metrics[metric_name("worst", e)] = float(w.mean())
        return {
            "metrics": metrics,
            "per_example": per,
            "timing_s": dict(self.timing),
            "ensemble_trace": trace,
            "warnings": sanity_checks(metrics, n),
        }


# --------------------------------------------------------------------------------------------
# sanity checks

_KEY_RE = re.compile(r"^val_(?P<attack>[a-z\-]+)_(?P<eps>[0-9.]+)_acc$")


def _parse(metrics: dict[str, float]) -> dict[str, dict[float, float]]:
    out: dict[str, dict[float, float]] = {}
    for k, v in metrics.items():
        m = _KEY_RE.match(k)
        if m:
            out.setdefault(m["attack"], {})[float(m["eps"])] = v
    return out


def sanity_checks(metrics: dict[str, float], n: int | None = None) -> list[str]:
    """Gradient-masking / consistency checks on a metrics dict (AutoAttack ``checks.py`` spirit).

    Flags (tolerance: one example, 1/n, for the statistical checks; 0 for the structural ones):

    * an attack's accuracy above the clean accuracy;
    * the same attack more accurate at a larger radius (robustness must not grow with ε);
    * PGD more accurate than FGSM at the same radius (iterative weaker than single-step);
    * the ensemble above any of its members (impossible by construction: a bug);
    * Square (black-box) more than 1 percentage point below the best white-box attack at the
      same radius — the classic symptom of gradient masking.

    Args:
        metrics: ``{key: accuracy}`` with the key names of :func:`robntk.core.registry.metric_name`.
        n: number of evaluated examples (sets the tolerance; None = 0).

    Returns:
        A list of human-readable warnings (empty when everything is consistent).
    """
    tol = 1.0 / n if n else 0.0
    warns: list[str] = []
    p = _parse(metrics)
    clean = metrics.get(CLEAN_METRIC)
    for atk, by_eps in p.items():
        for e, acc in by_eps.items():
            if clean is not None and acc > clean + tol + 1e-12:
                warns.append(f"{atk} at eps {e}/255: accuracy {acc:.4f} above clean {clean:.4f}")
        es = sorted(by_eps)
        for lo, hi in zip(es, es[1:]):
            if by_eps[hi] > by_eps[lo] + tol + 1e-12:
                warns.append(
                    f"{atk}: accuracy grows with eps ({lo}/255: {by_eps[lo]:.4f} < {hi}/255: {by_eps[hi]:.4f})"
                )
    for e, acc in p.get("pgd", {}).items():
        fg = p.get("fgsm", {}).get(e)
        if fg is not None and acc > fg + tol + 1e-12:
            warns.append(f"PGD weaker than FGSM at eps {e}/255 ({acc:.4f} > {fg:.4f}): possible gradient masking")
    for e, acc in p.get("autoattack", {}).items():
        for comp in ENSEMBLE:
            m = p.get(comp, {}).get(e)
            if m is not None and acc > m + 1e-12:
                warns.append(f"ensemble above its member {comp} at eps {e}/255 ({acc:.4f} > {m:.4f}): bug")
    for e, sq in p.get("square", {}).items():
        wb = [p[a][e] for a in ("pgd", "apgd-ce", "apgd-t") if e in p.get(a, {})]
        if wb and sq < min(wb) - 0.01:
            warns.append(
                f"black-box Square ({sq:.4f}) beats the best white-box attack ({min(wb):.4f}) at eps "
                f"{e}/255 by > 1 point: possible gradient masking"
            )
    return warns


# --------------------------------------------------------------------------------------------
# checkpoint evaluation


def evaluate_run(
    run_dir: str | os.PathLike,
    x: np.ndarray,
    y: np.ndarray,
    cfg: EvalConfig,
    progress: bool = False,
    trained: tuple | None = None,
) -> dict[str, Any]:
    """Evaluate the latest checkpoint of a training run (BN in eval mode).

    Args:
        run_dir: a :func:`robntk.train.loop.train` run directory (:mod:`robntk.train.rundir`).
        x, y: uint8 (N, H, W, 3) images and int labels of the evaluation split.
        cfg: what to run. progress: tqdm bars.
        trained: the run's :func:`robntk.train.loop.load_trained` result if already loaded.

    Returns:
        The JSON-ready record: ``arch``, ``arch_index``, ``dataset``, ``metrics`` (benchmark
        keys + extras, for ``RobBench.add_results(arch, dataset, metrics)``), ``n_examples``,
        ``train_config``, ``eval_config``, ``checkpoint``, ``timing_s``, ``ensemble_trace``
        (robust accuracy after each ensemble stage), ``warnings``.

    Raises:
        FileNotFoundError: not a run directory / no checkpoint.
        ValueError: bad data, a corrupt config or checkpoint, or a checkpoint of another network
            than the config names (:func:`robntk.train.loop.load_trained`).
    """
    tcfg, model, variables, meta = load_trained(run_dir) if trained is None else trained
    f, params = model.make_apply(variables, tcfg.arch, "eval")
    ev = RobustnessEvaluator(f, params, tcfg.num_classes, cfg, progress=progress)
    t = time.perf_counter()
    res = ev.evaluate(x, y)
    wall = time.perf_counter() - t
    return {
        "arch": tcfg.arch,
        "arch_index": tcfg.arch_index,
        "dataset": tcfg.dataset,
        "metrics": res["metrics"],
        "n_examples": int(len(y)),
        "train_config": tcfg.to_dict(),
        "eval_config": ev.settings,
        "checkpoint": {
            "run_dir": str(run_dir),
            "epoch": meta.get("epoch"),
            "step": meta.get("step"),
            "complete": meta.get("epoch") == tcfg.epochs,
        },
        "timing_s": {**res["timing_s"], "total": wall},
        "ensemble_trace": res["ensemble_trace"],
        "warnings": res["warnings"],
        "versions": {"robntk": __version__, "jax": jax.__version__},
    }
