"""The configuration of one adversarial-training run (:class:`TrainConfig`), NAS-RobBench-201's
protocol by default, and its methods (PGD-AT, FGSM-AT, TRADES, clean) with their attack defaults.

The run directory's ``config.json`` is this dataclass (:func:`read_train_config`); ``robntk
train`` generates its flags from the fields (:func:`robntk.core.config.flag` metadata).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import field
from pathlib import Path
from typing import Any

import numpy as np

from robntk.core.config import flag as _flag
from robntk.core.registry import DATASETS, NUM_CLASSES, parse_eps
from robntk.nb201.cell import to_ops
from robntk.nb201.network import INIT_SCHEMES
from robntk.nb201.searchspace import format_arch_str
from robntk.train import rundir

METHODS = ("pgd", "fgsm", "trades", "clean")
#: Default (steps, step size) of the training attack per method; eps defaults to 8/255.
METHOD_ATTACK_DEFAULTS: dict[str, tuple[int, float | None]] = {
    "pgd": (7, 2.0 / 255.0),  # NAS-RobBench-201 (torchattacks PGD, eps 8/255, alpha 2/255, 7 steps)
    "fgsm": (1, None),  # Wong et al. 2020: alpha = 1.25 * eps
    "trades": (10, 0.007),  # Zhang et al. 2019, CIFAR-10 setting
    "clean": (0, None),
}
#: TRADES' start: x + TRADES_SIGMA·N(0, I) (``trades.py``).
TRADES_SIGMA = 0.001


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or ±inf; the run stops (the last checkpoint is kept)."""


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


# --------------------------------------------------------------------------------------------
# configuration


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (defaults = NAS-RobBench-201's protocol).

    Attributes:
        arch: NB201 arch string (``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``) or 6 ops.
        dataset: ``'cifar10'``, ``'cifar100'`` or ``'ImageNet16-120'`` (selects the number of
            classes, the input normalisation and the crop padding, :data:`robntk.core.registry.DATASETS`).
        method: ``'pgd'`` (Madry PGD-AT, default), ``'fgsm'`` (fast AT), ``'trades'``, ``'clean'``.
        epochs: training epochs (≥ 1). batch_size: images per step (≥ 1).
        seed: "init seed s" of the network; also seeds the data order and every random draw.
        C, N: TinyNetwork width and cells per stage (16, 5 in the benchmark).
        init_scheme: ``'pytorch'`` (the reference's default init) or ``'flax'``.
        eps: training-attack radius in [0, 1] pixel units (8/255); strings like ``'8/255'`` are
            parsed (:func:`robntk.core.registry.parse_eps`).
        attack_steps, attack_step_size: steps and step size (pixel units) of the training attack;
            ``None`` = the method's default (:data:`METHOD_ATTACK_DEFAULTS`: PGD 7 × 2/255,
            FGSM 1 × 1.25·eps, TRADES 10 × 0.007).
        trades_beta: TRADES β (6.0).
        max_lr, pct_start, div_factor, final_div_factor, base_momentum, max_momentum:
            PyTorch ``OneCycleLR`` arguments (0.1, 0.3, 25, 1e4, 0.85, 0.95).
        weight_decay: coupled L2 weight decay (5e-4), on all parameters.
        augment: RandomCrop + horizontal flip (True).
        train_limit: the number of training images used (``None`` = all); informational here,
            the caller selects the subset (the CLI uses :func:`robntk.data.datasets.load_split`).
        arch_index: NB201 index of ``arch`` if known (informational).

    Raises (from :meth:`validate`):
        ValueError: a value outside its allowed range, naming it and what is allowed.
    """

    arch: str
    dataset: str = field(default="cifar10", metadata=_flag("training set (and normalisation)", choices=tuple(DATASETS)))
    method: str = field(default="pgd", metadata=_flag(f"training method: {', '.join(METHODS)}"))
    epochs: int = field(default=50, metadata=_flag("training epochs"))
    batch_size: int = field(default=256, metadata=_flag("images per step"))
    seed: int = field(default=0, metadata=_flag("init seed of the network; also data order and attack seed"))
    C: int = field(default=16, metadata=_flag("TinyNetwork width (NB201: 16)"))
    N: int = field(default=5, metadata=_flag("cells per stage (NB201: 5)"))
    init_scheme: str = field(default="pytorch", metadata=_flag("weight init", choices=INIT_SCHEMES))
    eps: float = field(
        default=8.0 / 255.0, metadata=_flag("training-attack radius in [0, 1] pixel units, e.g. 8/255", parse=parse_eps)
    )
    attack_steps: int | None = field(
        default=None, metadata=_flag("training-attack steps (default: PGD 7, FGSM 1, TRADES 10)")
    )
    attack_step_size: float | None = field(
        default=None,
        metadata=_flag(
            "training-attack step in pixel units, e.g. 2/255 (default: PGD 2/255, FGSM 1.25*eps, TRADES 0.007)",
            parse=parse_eps,
        ),
    )
    trades_beta: float = field(default=6.0, metadata=_flag("TRADES beta"))
    max_lr: float = field(default=0.1, metadata=_flag("OneCycle max lr", flag="--lr"))
    pct_start: float = field(default=0.3, metadata=_flag("OneCycle warm-up fraction"))
    div_factor: float = field(default=25.0, metadata=_flag("OneCycle initial lr = max lr / div factor"))
    final_div_factor: float = field(default=1e4, metadata=_flag("OneCycle final lr = initial lr / this"))
    base_momentum: float = field(default=0.85, metadata=_flag("OneCycle lowest momentum"))
    max_momentum: float = field(default=0.95, metadata=_flag("OneCycle highest momentum"))
    weight_decay: float = field(default=5e-4, metadata=_flag("coupled L2 weight decay (all parameters)"))
    augment: bool = field(default=True, metadata=_flag("RandomCrop + horizontal flip"))
    train_limit: int | None = field(
        default=None, metadata=_flag("train on a class-balanced deterministic subset of this many images")
    )
    arch_index: int | None = None

    def __post_init__(self):
        if not isinstance(self.arch, str):  # normalise op tuples to the arch string
            object.__setattr__(self, "arch", format_arch_str(to_ops(self.arch)))
        if isinstance(self.eps, str):
            object.__setattr__(self, "eps", parse_eps(self.eps))
        if isinstance(self.attack_step_size, str):
            object.__setattr__(self, "attack_step_size", parse_eps(self.attack_step_size))
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
            if not _is_int(v) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not _is_int(self.N) or self.N < 0:
            raise ValueError(f"N must be an integer >= 0, got {self.N!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.init_scheme not in INIT_SCHEMES:
            raise ValueError(f"unknown init_scheme {self.init_scheme!r}; allowed: {', '.join(INIT_SCHEMES)}")
        if (
            not (isinstance(self.eps, (int, float)) and not isinstance(self.eps, bool))
            or math.isnan(self.eps)
            or not 0.0 <= self.eps <= 1.0
        ):
            raise ValueError(f"eps must be in [0, 1] pixel units (e.g. 8/255), got {self.eps!r}")
        if self.method != "clean" and self.eps == 0.0:
            raise ValueError(f"eps must be > 0 for adversarial training method {self.method!r}")
        if self.attack_steps is not None and (not _is_int(self.attack_steps) or self.attack_steps < 1):
            raise ValueError(f"attack_steps must be an integer >= 1 (or None), got {self.attack_steps!r}")
        if self.method == "fgsm" and self.attack_steps not in (None, 1):
            raise ValueError(f"method 'fgsm' is single-step: attack_steps must be 1 or None, got {self.attack_steps!r}")
        if self.attack_step_size is not None and not self.attack_step_size > 0:
            raise ValueError(f"attack_step_size must be > 0 (pixel units), got {self.attack_step_size!r}")
        for name in ("trades_beta", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
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
        if self.train_limit is not None and (not _is_int(self.train_limit) or self.train_limit < 1):
            raise ValueError(f"train_limit must be an integer >= 1 (or None), got {self.train_limit!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (with the resolved attack steps/step size added)."""
        d = dataclasses.asdict(self)
        d["attack_steps_resolved"] = self.steps_resolved
        d["attack_step_size_resolved"] = self.step_size_resolved
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (unknown/derived keys are ignored).

        Raises:
            ValueError: a missing ``arch`` or a bad value.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        if "arch" not in d:
            raise ValueError("training configuration has no 'arch'")
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except TypeError as exc:  # e.g. a number where a string is expected
            raise ValueError(f"bad training configuration: {exc}") from None


def read_train_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The :class:`TrainConfig` stored in a run directory.

    Raises:
        FileNotFoundError: not a run directory. ValueError: the config is corrupt or holds a bad
            value (the message names the file).
    """
    d = rundir.read_config(run_dir)
    try:
        return TrainConfig.from_dict(d)
    except ValueError as exc:
        raise ValueError(f"{Path(run_dir) / rundir.CONFIG_FILE}: {exc}") from None
