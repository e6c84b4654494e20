"""The configuration of a robustness evaluation (:class:`EvalConfig`): which attacks
(:data:`ATTACKS`; the benchmark's by default), at which radii, with which AutoAttack preset
(:data:`AA_VERSIONS`) and batch/seed settings. :class:`robntk.train.evaluation.RobustnessEvaluator`
runs it; ``robntk evaluate`` generates its flags from the fields
(:func:`robntk.core.config.flag` metadata).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import field
from typing import Any

from robntk.core.config import flag as _flag
from robntk.core.registry import eps_255, parse_eps

ATTACKS = ("clean", "fgsm", "pgd", "apgd-ce", "apgd-t", "square", "autoattack")
DEFAULT_ATTACKS = ("clean", "fgsm", "pgd", "autoattack")
ENSEMBLE = ("apgd-ce", "apgd-t", "square")
AA_VERSIONS: dict[str, dict[str, Any]] = {
    # torchattacks 3.4.0 AutoAttack(version='standard'): APGD/APGDT default steps=10,
    # APGDT n_target_classes = n_classes - 1, Square n_queries=5000 (FAB-T omitted here).
    "torchattacks": {"apgd_steps": 10, "apgd_targets": None, "square_queries": 5000},
    # fra31/auto-attack version='standard'
    "original": {"apgd_steps": 100, "apgd_targets": 9, "square_queries": 5000},
}


def parse_attacks(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``'all'``, a comma-separated list of :data:`ATTACKS`, or a sequence of such strings →
    the attacks in order, ``'clean'`` first (it is always computed).

    Raises:
        ValueError: unknown attack name.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    names = [a.strip() for item in items for a in str(item).split(",") if a.strip()]
    if "all" in names:
        return ATTACKS
    for a in names:
        if a not in ATTACKS:
            raise ValueError(f"unknown attack {a!r}; allowed: {', '.join(ATTACKS)} or 'all'")
    return tuple(dict.fromkeys(["clean", *names]))


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how.

    Attributes:
        attacks: subset of :data:`ATTACKS` (default: the benchmark's clean, fgsm, pgd,
            autoattack).
        eps: radii of FGSM and PGD, pixel units (default 3/255, 8/255).
        aa_eps: radii of APGD-CE, APGD-T, Square and the ensemble (default 8/255).
        pgd_steps: PGD iterations (20); step = pgd_step_factor·ε/pgd_steps (2.5).
        aa_version: ``'torchattacks'`` (benchmark) or ``'original'`` presets.
        apgd_steps, apgd_targets, square_queries: override the preset (None = preset; targets
            None in the torchattacks preset = K − 1).
        square_p_init: Square's initial square fraction (0.8).
        batch_size: evaluation batch (256, as the benchmark).
        min_batch: smallest padded batch: a partial batch of n examples is padded to the next
            power of two ≥ max(n, min_batch) (≤ batch_size); each size compiles once. Set it to
            batch_size to always pad to full batches (one compilation per attack).
        seed: seeds every attack's randomness.

    Raises (from :meth:`validate`):
        ValueError: unknown attack or version, eps outside (0, 1] (a bare 8 gets "did you mean
            8/255?"), steps/queries/batch < 1, negative seed.
    """

    attacks: tuple[str, ...] = field(
        default=DEFAULT_ATTACKS,
        metadata=_flag(f"attacks: any of {', '.join(ATTACKS)} (comma- or space-separated), or 'all'"),
    )
    eps: tuple[float, ...] = field(
        default=(3.0 / 255.0, 8.0 / 255.0),
        metadata=_flag("FGSM/PGD radii in [0, 1] pixel units, e.g. 8/255", parse=parse_eps),
    )
    aa_eps: tuple[float, ...] = field(
        default=(8.0 / 255.0,), metadata=_flag("APGD/Square/ensemble radii in [0, 1] pixel units", parse=parse_eps)
    )
    pgd_steps: int = field(default=20, metadata=_flag("PGD iterations"))
    pgd_step_factor: float = field(default=2.5, metadata=_flag("PGD step = factor * eps / steps"))
    aa_version: str = field(default="torchattacks", metadata=_flag("AutoAttack preset", choices=tuple(AA_VERSIONS)))
    apgd_steps: int | None = field(default=None, metadata=_flag("override the preset's APGD iterations"))
    apgd_targets: int | None = field(default=None, metadata=_flag("override the preset's APGD-T target count"))
    square_queries: int | None = field(default=None, metadata=_flag("override the preset's Square budget"))
    square_p_init: float = field(default=0.8, metadata=_flag("Square's initial square fraction"))
    batch_size: int = field(default=256, metadata=_flag("evaluation batch"))
    min_batch: int = field(default=32, metadata=_flag("smallest padded batch (power-of-two buckets)"))
    seed: int = field(default=0, metadata=_flag("seed of every attack's randomness"))

    def __post_init__(self):
        object.__setattr__(self, "attacks", parse_attacks(self.attacks))
        for name in ("eps", "aa_eps"):
            vals = getattr(self, name)
            vals = (vals,) if isinstance(vals, (str, int, float)) else vals
            object.__setattr__(self, name, tuple(parse_eps(e) for e in vals))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the bad value and what is allowed."""
        for a in self.attacks:
            if a not in ATTACKS:
                raise ValueError(f"unknown attack {a!r}; allowed: {', '.join(ATTACKS)} (or 'all')")
        if self.aa_version not in AA_VERSIONS:
            raise ValueError(f"unknown aa_version {self.aa_version!r}; allowed: {', '.join(AA_VERSIONS)}")
        for name in ("eps", "aa_eps"):
            for e in getattr(self, name):
                if not 0.0 < e <= 1.0 or math.isnan(e):
                    raise ValueError(f"{name} values must be in (0, 1] pixel units (e.g. 8/255), got {e!r}")
        for name in ("pgd_steps", "batch_size", "min_batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("apgd_steps", "apgd_targets", "square_queries"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be an integer >= 1 (or None for the preset), got {v!r}")
        if not self.pgd_step_factor > 0:
            raise ValueError(f"pgd_step_factor must be > 0, got {self.pgd_step_factor!r}")
        if not 0.0 < self.square_p_init <= 1.0:
            raise ValueError(f"square_p_init must be in (0, 1], got {self.square_p_init!r}")

    def resolved(self, num_classes: int) -> dict[str, Any]:
        """Settings after applying the preset, for a model with ``num_classes`` outputs.

        Raises:
            ValueError: apgd_targets > num_classes − 1, or APGD-T requested with < 4 classes.
        """
        pre = AA_VERSIONS[self.aa_version]
        steps = self.apgd_steps or pre["apgd_steps"]
        if self.apgd_targets is None:  # preset: 9 (original) or K - 1 (torchattacks), at most K - 1
            targets = max(min(pre["apgd_targets"] or (num_classes - 1), num_classes - 1), 1)
        else:
            targets = self.apgd_targets
        if targets > max(num_classes - 1, 1):
            raise ValueError(f"apgd_targets must be <= num_classes - 1 = {num_classes - 1}, got {targets}")
        if num_classes < 4 and ({"apgd-t", "autoattack"} & set(self.attacks)):
            raise ValueError(f"APGD-T (and the ensemble) need >= 4 classes, the model has {num_classes}")
        d = dataclasses.asdict(self)
        d.update(
            apgd_steps=steps,
            apgd_targets=targets,
            square_queries=self.square_queries or pre["square_queries"],
            num_classes=num_classes,
            eps_255=[eps_255(e) for e in self.eps],
            aa_eps_255=[eps_255(e) for e in self.aa_eps],
            bn_mode="eval",
            ensemble="apgd-ce -> apgd-t -> square (FAB-T not implemented)",
        )
        d["attacks"] = list(self.attacks)
        return d
