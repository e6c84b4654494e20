"""The configurations of every RobNets job: one frozen dataclass per ``robntk robnets`` sub-command.

Each field's ``metadata`` (:func:`robntk.core.config.flag`) makes it a command-line flag
(``robntk/commands/robnets.py`` generates the flags, so every default has one source: these
classes), and ``__post_init__`` validates every value before any work starts, raising a
ValueError that names the field (its flag) and what is allowed. ε and attack steps are in
[0, 1] pixel units everywhere and parsed by :func:`robntk.core.registry.parse_eps`
(``--eps 8/255``; a bare ``8`` is refused with "did you mean 8/255?").

* :class:`OneShotConfig` — the one-shot adversarial supernet search (:mod:`robntk.robnets.oneshot`),
  with :data:`REDUCED` (2 CPU cores) and :data:`FULL` (GPU) presets;
* :class:`FSPConfig` — finding 3, the FSP-matrix study (:mod:`robntk.robnets.fsp`);
* :class:`DensityConfig`, :class:`DirectEdgesConfig` — findings 1 and 2 on the benchmark
  (:mod:`robntk.robnets.findings`);
* :class:`RobNetTrainConfig`, :class:`RobNetEvalConfig` — PGD adversarial training and the
  white-box evaluation of the released RobNets (:mod:`robntk.robnets.training`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from robntk.core.config import flag
from robntk.core.registry import check_seed, parse_eps
from robntk.nb201.searchspace import DISCONNECTED_REPRESENTATIVES

#: Connected NB201 isomorphism representatives (6,466 minus the disconnected ones).
NUM_CONNECTED = 6466 - len(DISCONNECTED_REPRESENTATIVES)
#: RobNets' released models (:data:`robntk.robnets.space.CONFIGS`).
MODELS = ("robnet_large_v1", "robnet_large_v2", "robnet_free")
#: Attacks of ``robntk robnets eval`` (RobNets' Table 2 columns).
EVAL_ATTACKS = ("clean", "fgsm", "pgd20", "pgd100", "mifgsm", "deepfool")


def optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A flag parser that reads ``none`` as None and anything else with ``parse``."""

    def conv(text):
        return None if isinstance(text, str) and text.strip().lower() == "none" else parse(text)

    conv.__name__ = getattr(parse, "__name__", "value")
    return conv


def _check_ints(cfg, names, low: int = 1, optional_: tuple[str, ...] = ()) -> None:
    """Raise ValueError unless every field in ``names`` is an int >= ``low`` (or None when listed
    in ``optional_``); the message names the flag."""
    for name in names:
        v = getattr(cfg, name)
        if v is None and name in optional_:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            flag_ = "--" + name.replace("_", "-")
            raise ValueError(
                f"{name} ({flag_}) must be an integer >= {low}{' or none' if name in optional_ else ''}, got {v!r}"
            )


def _check_positive(cfg, names) -> None:
    for name in names:
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} (--{name.replace('_', '-')}) must be a finite number > 0, got {v!r}")


def _check_eps(cfg, names, allow_none: tuple[str, ...] = ()) -> None:
    for name in names:
        v = getattr(cfg, name)
        if v is None and name in allow_none:
            continue
        if isinstance(v, str):
            object.__setattr__(cfg, name, parse_eps(v))
            v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ValueError(
                f"{name} (--{name.replace('_', '-')}) must be in [0, 1] pixel units (e.g. 8/255), got {v!r}"
            )


class _Config:
    """``to_dict`` / ``from_dict`` shared by the configurations."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: unknown keys (named) or a bad value.
        """
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        bad = set(d) - names
        if bad:
            raise ValueError(f"unknown {cls.__name__} fields {sorted(bad)}; allowed: {', '.join(sorted(names))}")
        return cls(**d)


# --------------------------------------------------------------------------- one-shot search
@dataclass(frozen=True)
class OneShotConfig(_Config):
    """One-shot adversarial supernet search (defaults: the full configuration, :data:`FULL`).

    Attributes:
        C, N: supernet width and cells per stage (NB201: 16, 5).
        image_size: 32 (CIFAR-10) or 16 (2×2 average-pooled CIFAR-10, reduced runs).
        train_limit: training images (class-balanced subset; None = all of the split).
        batch_size: training batch.
        train_steps: supernet optimizer steps.
        lr, momentum, weight_decay: SGD (:func:`robntk.train.optim.sgd`) with a cosine schedule
            from ``lr`` to 0 (:func:`robntk.train.optim.cosine_lr`).
        eps: L∞ radius (pixel units). train_pgd_steps: PGD steps when training/fine-tuning.
        train_step_size: PGD step size for training (pixel units; None: 2.5·eps/steps).
        num_archs: candidates evaluated (RobNets: 1,000).
        finetune_steps, finetune_lr: per-candidate PGD fine-tune from the inherited weights
            (constant lr, fresh momentum).
        eval_images: class-balanced test images per candidate; eval_batch: evaluation batch.
        eval_pgd_steps: PGD steps of the evaluation attack (benchmark: 20; step 2.5·eps/steps).
        ckpt_every: supernet checkpoint interval (steps).
        seed: everything random (data order, paths, attacks, candidate sample) derives from it.

    Raises:
        ValueError: non-positive sizes, eps outside [0, 1], image_size not 16/32, a training
            subset smaller than a batch, more candidates than connected representatives.
    """

    C: int = field(default=16, metadata=flag("supernet width (NB201: 16)"))
    N: int = field(default=5, metadata=flag("cells per stage (NB201: 5)"))
    image_size: int = field(
        default=32, metadata=flag("image side: 32, or 16 (2x2 average-pooled CIFAR-10)", choices=(16, 32))
    )
    train_limit: int | None = field(
        default=None, metadata=flag("class-balanced training subset ('none': the whole split)", parse=optional(int))
    )
    batch_size: int = field(default=64, metadata=flag("training and fine-tuning batch"))
    train_steps: int = field(default=30000, metadata=flag("supernet optimizer steps"))
    lr: float = field(default=0.05, metadata=flag("supernet lr (cosine decay to 0)"))
    momentum: float = field(default=0.9, metadata=flag("SGD momentum"))
    weight_decay: float = field(default=5e-4, metadata=flag("coupled L2 weight decay"))
    eps: float = field(
        default=8 / 255, metadata=flag("L-inf radius in [0, 1] pixel units, e.g. 8/255", parse=parse_eps)
    )
    train_pgd_steps: int = field(default=7, metadata=flag("PGD steps of training and fine-tuning"))
    train_step_size: float | None = field(
        default=2 / 255,
        metadata=flag("PGD step of training in pixel units ('none': 2.5*eps/steps)", parse=optional(parse_eps)),
    )
    num_archs: int = field(default=1000, metadata=flag("candidates evaluated (RobNets: 1,000)"))
    finetune_steps: int = field(default=50, metadata=flag("PGD fine-tune steps per candidate"))
    finetune_lr: float = field(default=0.01, metadata=flag("fine-tune lr (constant)"))
    eval_images: int = field(default=1000, metadata=flag("class-balanced test images per candidate"))
    eval_batch: int = field(default=250, metadata=flag("evaluation batch"))
    eval_pgd_steps: int = field(default=20, metadata=flag("PGD steps of the evaluation attack"))
    ckpt_every: int = field(default=500, metadata=flag("supernet checkpoint interval (steps)"))
    seed: int = field(default=0, metadata=flag("seed of everything random"))

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check the values (see the class docstring)."""
        _check_ints(
            self,
            (
                "C",
                "N",
                "batch_size",
                "train_steps",
                "train_pgd_steps",
                "num_archs",
                "eval_images",
                "eval_batch",
                "eval_pgd_steps",
                "ckpt_every",
            ),
        )
        _check_ints(self, ("finetune_steps",), low=0)
        check_seed(self.seed, "seed (--seed)")
        _check_ints(self, ("train_limit",), optional_=("train_limit",))
        if self.image_size not in (16, 32):
            raise ValueError(f"image_size must be 16 or 32, got {self.image_size!r}")
        _check_eps(self, ("eps", "train_step_size"), allow_none=("train_step_size",))
        if self.train_step_size is not None and not self.train_step_size > 0:
            raise ValueError(f"train_step_size must be > 0 or none, got {self.train_step_size!r}")
        if self.train_limit is not None and self.train_limit < self.batch_size:
            raise ValueError(f"train_limit ({self.train_limit}) must be >= batch_size ({self.batch_size})")
        if self.num_archs > NUM_CONNECTED:
            raise ValueError(f"num_archs must be <= {NUM_CONNECTED}, got {self.num_archs}")
        _check_positive(self, ("lr", "finetune_lr"))
        if isinstance(self.momentum, bool) or not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")


#: The reduced configuration that runs on 2 CPU cores in well under an hour (stated as reduced):
#: C=8, N=1, 16×16 images, 10k training images, 1,200 steps of PGD-3 training, 1,000 candidates
#: with 1 fine-tune step, evaluated with PGD-3 on 128 test images.
REDUCED = OneShotConfig(
    C=8,
    N=1,
    image_size=16,
    train_limit=10000,
    batch_size=64,
    train_steps=1200,
    lr=0.1,
    train_pgd_steps=3,
    train_step_size=None,
    num_archs=1000,
    finetune_steps=1,
    finetune_lr=0.01,
    eval_images=128,
    eval_batch=128,
    eval_pgd_steps=3,
    ckpt_every=100,
)
#: The full configuration (needs a GPU; command in experiments/robnets/README.md).
FULL = OneShotConfig()


# --------------------------------------------------------------------------- finding 3: FSP
@dataclass(frozen=True)
class FSPConfig(_Config):
    """FSP-matrix loss per cell depth at initialisation and after a short PGD fine-tune
    (defaults: the reduced CPU configuration of ``experiments/robnets/fsp``).

    Attributes:
        num_archs: connected NB201 representatives sampled uniformly with ``seed``.
        C, N: supernet width and cells per stage. image_size: 16 (2×2-pooled) or 32.
        pool_images: class-balanced CIFAR-10 training images drawn with ``seed``; the FSP batch
            is their first ``batch_size``, fine-tune batches are drawn from all of them.
        batch_size: FSP and fine-tune batch (≤ pool_images).
        finetune_steps: PGD-AT steps from the shared initialisation (0: init only).
        attack_steps: PGD steps of x' in the FSP loss (step 2.5·eps/steps, random start).
        train_pgd_steps: PGD steps of the fine-tune's adversarial training.
        lr, momentum: fine-tune SGD (constant lr, no weight decay).
        eps: L∞ radius in pixel units (FSP attack and fine-tune).
        seed: supernet init, data, batches, attacks and the arch sample.
        n_boot: bootstrap resamples of the τ CIs.

    Raises:
        ValueError: a size < 1 (``finetune_steps`` < 0), more archs than connected
            representatives, a batch larger than the image pool, eps outside [0, 1].
    """

    num_archs: int = field(default=60, metadata=flag(f"architectures (1..{NUM_CONNECTED})"))
    C: int = field(default=8, metadata=flag("supernet width"))
    N: int = field(default=2, metadata=flag("cells per stage"))
    image_size: int = field(default=16, metadata=flag("image side: 16 (2x2-pooled CIFAR-10) or 32", choices=(16, 32)))
    pool_images: int = field(default=2000, metadata=flag("class-balanced training images drawn"))
    batch_size: int = field(default=64, metadata=flag("FSP and fine-tune batch"))
    finetune_steps: int = field(default=10, metadata=flag("PGD-AT fine-tune steps (0: init only)"))
    attack_steps: int = field(default=5, metadata=flag("PGD steps of x' in the FSP loss"))
    train_pgd_steps: int = field(default=3, metadata=flag("PGD steps of the fine-tune"))
    lr: float = field(default=0.05, metadata=flag("fine-tune lr (constant)"))
    momentum: float = field(default=0.9, metadata=flag("fine-tune SGD momentum"))
    eps: float = field(
        default=8 / 255, metadata=flag("L-inf radius in [0, 1] pixel units, e.g. 8/255", parse=parse_eps)
    )
    seed: int = field(default=0, metadata=flag("seed of init, data, batches, attacks and the sample"))
    n_boot: int = field(default=1000, metadata=flag("bootstrap resamples of the tau CIs"))

    def __post_init__(self):
        _check_ints(
            self, ("num_archs", "C", "N", "pool_images", "batch_size", "attack_steps", "train_pgd_steps", "n_boot")
        )
        _check_ints(self, ("finetune_steps",), low=0)
        check_seed(self.seed, "seed (--seed)")
        if self.num_archs > NUM_CONNECTED:
            raise ValueError(
                f"num_archs (--num-archs) must be in 1..{NUM_CONNECTED} (connected representatives), "
                f"got {self.num_archs}"
            )
        if self.image_size not in (16, 32):
            raise ValueError(f"image_size (--image-size) must be 16 or 32, got {self.image_size!r}")
        if self.batch_size > self.pool_images:
            raise ValueError(
                f"batch_size (--batch-size) must be <= pool_images ({self.pool_images}), got {self.batch_size}"
            )
        _check_positive(self, ("lr",))
        if isinstance(self.momentum, bool) or not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum (--momentum) must be in [0, 1), got {self.momentum!r}")
        _check_eps(self, ("eps",))

    def row_config(self) -> dict[str, Any]:
        """The fields that determine one arch's row (everything but ``num_archs`` and ``n_boot``)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("num_archs", "n_boot")}


# --------------------------------------------------------------------------- findings 1 and 2
@dataclass(frozen=True)
class DensityConfig(_Config):
    """Finding 1 (density vs accuracy on NAS-RobBench-201).

    Attributes:
        n_boot: bootstrap resamples of the τ CIs. seed: bootstrap seed.

    Raises:
        ValueError: n_boot < 1 or seed < 0.
    """

    n_boot: int = field(default=1000, metadata=flag("bootstrap resamples of the tau CIs"))
    seed: int = field(default=0, metadata=flag("bootstrap seed"))

    def __post_init__(self):
        _check_ints(self, ("n_boot",))
        check_seed(self.seed, "seed (--seed)")


@dataclass(frozen=True)
class DirectEdgesConfig(_Config):
    """Finding 2 (a conv on the direct edge vs elsewhere, equal parameter count).

    Attributes:
        direct: edge ids (0..5, NB201 order) treated as direct; (3,) = 0→3; (0, 2, 5) = the chain
            0→1→2→3.
        n_boot: bootstrap resamples of the mean-Δ CIs. seed: bootstrap seed.
        dataset: benchmark dataset of the Δs.

    Raises:
        ValueError: edges outside 0..5, an empty set or all six edges, n_boot < 1, unknown dataset.
    """

    direct: tuple[int, ...] = field(
        default=(3,),
        metadata=flag("edge ids (0..5) treated as direct, e.g. 3 (edge 0->3) or 0 2 5 (the chain 0->1->2->3)"),
    )
    n_boot: int = field(default=2000, metadata=flag("bootstrap resamples of the mean-delta CIs"))
    seed: int = field(default=0, metadata=flag("bootstrap seed"))
    dataset: str = field(
        default="cifar10", metadata=flag("benchmark dataset", choices=("cifar10", "cifar100", "ImageNet16-120"))
    )

    def __post_init__(self):
        d = tuple(sorted(set(int(e) for e in self.direct))) if isinstance(self.direct, (tuple, list)) else None
        if not d or any(e not in range(6) for e in d) or len(d) == 6:
            raise ValueError(f"direct (--direct) must be a proper, non-empty subset of edges 0..5, got {self.direct!r}")
        object.__setattr__(self, "direct", d)
        _check_ints(self, ("n_boot",))
        check_seed(self.seed, "seed (--seed)")
        if self.dataset not in ("cifar10", "cifar100", "ImageNet16-120"):
            raise ValueError(f"unknown dataset {self.dataset!r}; allowed: cifar10, cifar100, ImageNet16-120")


# --------------------------------------------------------------------------- RobNet training / evaluation
@dataclass(frozen=True)
class RobNetTrainConfig(_Config):
    """PGD adversarial training of a released RobNet (reference gmh14/RobNets ``main.py``:
    PGD-7, step 2/255, ε 8/255, crafted in train mode; SGD momentum 0.9, wd 1e-4; 150 epochs).
    Here with a cosine lr schedule (no warm-up).

    Attributes:
        model: one of :data:`MODELS`. C, layers: overrides of the model's width/depth (small
            copies; None: the released model's).
        epochs: training epochs (> 0; fractions allowed). max_steps: stop after this many
            optimizer steps (None: epochs × steps per epoch).
        batch_size, lr, momentum, weight_decay: SGD (:func:`robntk.train.optim.sgd`), cosine
            decay from ``lr`` to 0 over the run.
        train_limit: class-balanced training subset (None: the whole split).
        eps, pgd_steps, pgd_step_size: the training attack (pixel units).
        ckpt_every: checkpoint interval in optimizer steps (and at the end).
        seed: init, data order, augmentation and attack starts.

    Raises:
        ValueError: unknown model, sizes < 1, epochs ≤ 0, eps/step outside [0, 1], a training
            subset smaller than a batch.
    """

    model: str = field(default="robnet_large_v1", metadata=flag("released RobNet", choices=MODELS))
    C: int | None = field(default=None, metadata=flag("override the model's C (small copies)", parse=optional(int)))
    layers: int | None = field(default=None, metadata=flag("override the model's number of cells", parse=optional(int)))
    epochs: float = field(default=150.0, metadata=flag("training epochs (reference: 150)"))
    max_steps: int | None = field(
        default=None, metadata=flag("stop after this many steps (smoke runs)", parse=optional(int))
    )
    batch_size: int = field(default=128, metadata=flag("images per step"))
    lr: float = field(default=0.1, metadata=flag("initial lr (cosine decay to 0)"))
    momentum: float = field(default=0.9, metadata=flag("SGD momentum"))
    weight_decay: float = field(default=1e-4, metadata=flag("coupled L2 weight decay (reference: 1e-4)"))
    train_limit: int | None = field(default=None, metadata=flag("class-balanced training subset", parse=optional(int)))
    eps: float = field(
        default=8 / 255, metadata=flag("training-attack radius in [0, 1] pixel units, e.g. 8/255", parse=parse_eps)
    )
    pgd_steps: int = field(default=7, metadata=flag("training PGD steps (reference: 7)"))
    pgd_step_size: float = field(
        default=2 / 255, metadata=flag("training PGD step in pixel units (reference: 2/255)", parse=parse_eps)
    )
    ckpt_every: int = field(default=1000, metadata=flag("checkpoint interval (steps)"))
    seed: int = field(default=10, metadata=flag("seed of init, data order and attacks"))

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"unknown RobNet {self.model!r}; allowed: {', '.join(MODELS)}")
        _check_ints(
            self, ("C", "layers", "max_steps", "train_limit"), optional_=("C", "layers", "max_steps", "train_limit")
        )
        _check_ints(self, ("batch_size", "pgd_steps", "ckpt_every"))
        check_seed(self.seed, "seed (--seed)")
        _check_positive(self, ("epochs", "lr"))
        if isinstance(self.momentum, bool) or not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum (--momentum) must be in [0, 1), got {self.momentum!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay (--weight-decay) must be >= 0, got {self.weight_decay!r}")
        _check_eps(self, ("eps", "pgd_step_size"))
        if not self.pgd_step_size > 0:
            raise ValueError(f"pgd_step_size (--pgd-step-size) must be > 0, got {self.pgd_step_size!r}")
        if self.train_limit is not None and self.train_limit < self.batch_size:
            raise ValueError(f"train_limit ({self.train_limit}) must be >= batch_size ({self.batch_size})")

    def overrides(self) -> dict[str, int]:
        """The :class:`robntk.robnets.space.RobNetConfig` overrides (C, layers) that are set."""
        return {k: v for k, v in (("C", self.C), ("layers", self.layers)) if v is not None}


@dataclass(frozen=True)
class RobNetEvalConfig(_Config):
    """White-box evaluation of a trained RobNet as RobNets reports it (Table 2).

    Attributes:
        limit: class-balanced CIFAR-10 test images. batch_size: evaluation batch.
        attacks: comma-separated subset of :data:`EVAL_ATTACKS`.
        eps: L∞ radius in pixel units. step_size: PGD-20/100 and MI-FGSM step (pixel units).

    Raises:
        ValueError: sizes < 1, unknown attacks (named, with the allowed ones), eps/step outside
            [0, 1].
    """

    limit: int = field(default=1000, metadata=flag("class-balanced test images"))
    batch_size: int = field(default=100, metadata=flag("evaluation batch"))
    attacks: str = field(
        default=",".join(EVAL_ATTACKS), metadata=flag(f"comma-separated attacks: {', '.join(EVAL_ATTACKS)}")
    )
    eps: float = field(
        default=8 / 255, metadata=flag("L-inf radius in [0, 1] pixel units, e.g. 8/255", parse=parse_eps)
    )
    step_size: float = field(default=2 / 255, metadata=flag("PGD and MI-FGSM step in pixel units", parse=parse_eps))

    def __post_init__(self):
        _check_ints(self, ("limit", "batch_size"))
        bad = [a for a in self.attack_list if a not in EVAL_ATTACKS]
        if bad or not self.attack_list:
            raise ValueError(f"unknown attacks {bad}; allowed: {', '.join(EVAL_ATTACKS)}")
        _check_eps(self, ("eps", "step_size"))
        if not self.step_size > 0:
            raise ValueError(f"step_size (--step-size) must be > 0, got {self.step_size!r}")

    @property
    def attack_list(self) -> tuple[str, ...]:
        """The attacks in order (duplicates dropped)."""
        return tuple(dict.fromkeys(a.strip() for a in str(self.attacks).split(",") if a.strip()))
