"""Score configuration and score rows: what determines an NTK score, and how a row is made.

Recipe (the robust NTK of Wu et al., ICLR 2024, §4, at initialisation; the paper publishes no
protocol, so every choice is a :class:`ScoreConfig` field,
written next to the scores in the store header and the table sidecar):

1. The NB201 :class:`~robntk.nb201.network.TinyNetwork` (C, N), normalisation inside, initialised
   with "init seed s" (:meth:`~robntk.nb201.network.TinyNetwork.init`, PyTorch-default scheme): the
   same weights for an arch whichever command or selection scores it.
2. A fixed, class-balanced batch X of B training images in [0, 1] (same for every arch).
3. For each ε: X̃ = PGD-``pgd_steps`` (L∞, random start, step 2.5·ε/steps, cross-entropy on the
   true labels) at initialisation, and X̃̃ = PGD again from X̃ in the ε-ball around X̃; attack
   key ``PRNGKey(attack_seed + 1)`` (``attack_seed`` defaults to ``seed``).
4. One Gram matrix of the Jacobians of the read-out (``output_mode``) at the stacked batches
   (:func:`robntk.ntk.kernels.stacked_gram`); every kernel of :mod:`robntk.ntk.kernels` is a block or
   a β-mix of blocks.
5. Spectra in float64 (:mod:`robntk.ntk.spectra`) → one row (:func:`spectra_row`).

The engine (:mod:`robntk.scoring.engine`) runs this for any number of archs with one compile.

Output columns (E = ε in 255ths, e.g. ``eps8``; B = β, e.g. ``beta0.5``):
``nb201_index, arch_str, disconnected, lambda_min_clean, cond_clean, lambda_max_clean,
trace_clean, logdet_clean, lambda_min_robust_eps{E}, lambda_min_twice_eps{E},
lambda_min_all_eps{E}_beta{B}, lambda_min_robust_all_eps{E}_beta{B}``, ``cond_*`` for each of
these kernels, ``degenerate`` (any kernel below the resolution floor, see
:mod:`robntk.ntk.spectra`), ``compile_s``, ``run_s``, ``spectra_s``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robntk._version import __version__
from robntk.core import compile_cache
from robntk.core.config import flag as _flag
from robntk.core.registry import BN_MODES, DTYPES, NUM_CLASSES, eps_255, eps_tag, parse_eps, score_column
from robntk.nb201.network import INIT_SCHEMES, check_config
from robntk.ntk import empirical as ntk
from robntk.ntk import kernels, spectra


@dataclass(frozen=True)
class ScoreConfig:
    """Everything that determines a score (written next to every score).

    The defaults are one protocol for every command (``score``, ``reproduce``, the Python API):
    B=16, ε=8/255, β=0.5, PGD-5 — the base level of the protocol study
    (``experiments/protocol/README.md``): ε=3/255, PGD-1/10 and the label/trace read-outs stayed
    within ±0.03 τ of it on 100 archs, B=32 gained only +0.03 τ for the clean kernel at 4× the
    train-mode cost, and it is the protocol with the largest scored sample (1,000 archs).

    Attributes:
        dataset: batch source and normalisation: ``'cifar10'`` | ``'cifar100'`` | ``'ImageNet16-120'``.
        batch_size: B, images in the fixed batch.
        seed: "init seed s" of the network, and the seed of the batch choice and (unless
            ``attack_seed`` is set) of the attacks.
        attack_seed: seed of the PGD random starts, attack key ``PRNGKey(attack_seed + 1)``;
            None (default) = ``seed`` (an attack seed equal to ``seed`` is stored as None). Set, it
            changes only the attacks (same weights, same batch).
            Left out of :meth:`as_dict` when None, so configurations without it keep their digest.
        eps: attack radii in [0, 1] pixel units (L∞); strings like ``'8/255'`` are parsed.
        betas: β values of the mixed kernels K_all(β), K̃_all(β), in [0, 1].
        pgd_steps: PGD iterations at initialisation; step size ``2.5·ε/steps``.
        output_mode: ``'sum'`` | ``'label'`` | ``'trace'`` | ``'full'`` (:mod:`robntk.ntk.empirical`).
        bn_mode: ``'train'`` (default: batch statistics, rows coupled) | ``'eval'`` (running
            statistics, the identity at init): BN of the function whose NTK is taken. The default
            follows the reference practice of at-init scores — TE-NAS ``get_ntk_n`` with
            ``train_mode=True``, NASLib / zero-cost-nas models in ``train()`` mode — a choice
            made from the references, not from benchmark correlations.
        attack_bn_mode: BN mode the attack differentiates (None = ``bn_mode``).
        C, N: TinyNetwork width and cells per stage (16, 5 in NB201).
        init_scheme: ``'pytorch'`` | ``'kaiming'`` | ``'flax'`` (:mod:`robntk.nb201.network`).
        dtype: ``'float32'`` | ``'float64'`` (float64 needs ``jax_enable_x64``).
        chunk_size: cotangents per vmapped Jacobian chunk (memory bound); None = all.
        data_split: split the batch is drawn from.

    Raises:
        ValueError: any bad field (names it and what is allowed).
    """

    dataset: str = field(default="cifar10", metadata=_flag("batch source / normalisation", choices=tuple(NUM_CLASSES)))
    batch_size: int = field(default=16, metadata=_flag("images in the fixed batch (B)"))
    seed: int = field(default=0, metadata=_flag("init seed of the network; also batch and attack seed"))
    attack_seed: int | None = field(
        default=None, metadata=_flag("attack seed (default: --seed): same weights and batch, other PGD random starts")
    )
    eps: tuple[float, ...] = field(
        default=(8 / 255,), metadata=_flag("attack radii in [0, 1] pixel units, e.g. 8/255", parse=parse_eps)
    )
    betas: tuple[float, ...] = field(
        default=(0.5,), metadata=_flag("β of the mixed kernels", flag="--beta", parse=float)
    )
    pgd_steps: int = field(default=5, metadata=_flag("PGD iterations at initialisation"))
    output_mode: str = field(default="sum", metadata=_flag("NTK read-out", choices=ntk.OUTPUT_MODES))
    bn_mode: str = field(
        default="train",
        metadata=_flag(
            "BatchNorm of the kernel's network function (train: batch statistics, as TE-NAS/NASLib)", choices=BN_MODES
        ),
    )
    attack_bn_mode: str | None = field(
        default=None, metadata=_flag("BatchNorm the attack differentiates (default: --bn-mode)", choices=BN_MODES)
    )
    C: int = field(default=16, metadata=_flag("TinyNetwork width (NB201: 16)"))
    N: int = field(default=5, metadata=_flag("cells per stage (NB201: 5)"))
    init_scheme: str = field(default="pytorch", metadata=_flag("weight init", choices=INIT_SCHEMES))
    dtype: str = field(
        default="float32",
        metadata=_flag(
            "float64 turns on jax_enable_x64 (~2x slower on CPU; same weights: drawn in float32, cast)", choices=DTYPES
        ),
    )
    chunk_size: int | None = field(default=None, metadata=_flag("Jacobian chunk (memory bound)"))
    data_split: str = field(default="train", metadata=_flag("split the batch is drawn from", choices=("train", "test")))

    def __post_init__(self):
        object.__setattr__(self, "eps", tuple(parse_eps(e) for e in _as_tuple(self.eps, "eps")))
        object.__setattr__(self, "betas", tuple(kernels.check_beta(b) for b in _as_tuple(self.betas, "betas")))
        if self.attack_seed is not None and self.attack_seed == self.seed:
            object.__setattr__(self, "attack_seed", None)  # the default: one config, one digest
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming any bad field and what is allowed."""
        if self.dataset not in NUM_CLASSES:
            raise ValueError(f"unknown dataset {self.dataset!r}; allowed: {', '.join(NUM_CLASSES)}")
        check_config(self.C, self.N, NUM_CLASSES[self.dataset], self.dataset, self.init_scheme)
        if self.attack_seed is not None and (
            not isinstance(self.attack_seed, int) or isinstance(self.attack_seed, bool) or self.attack_seed < 0
        ):
            raise ValueError(f"attack_seed must be None or an integer >= 0, got {self.attack_seed!r}")
        for name, lo in (("batch_size", 2), ("pgd_steps", 1), ("seed", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        from robntk.core.registry import check_seed  # seeds > 2**32 - 1 alias smaller ones in PRNGKey

        check_seed(self.seed, "seed")
        if self.attack_seed is not None:
            check_seed(self.attack_seed, "attack_seed")
        ntk.check_output_mode(self.output_mode, labels=0)
        for name in ("bn_mode", "attack_bn_mode"):
            v = getattr(self, name)
            if (v is not None or name == "bn_mode") and v not in BN_MODES:
                raise ValueError(f"{name} must be one of {', '.join(BN_MODES)}, got {v!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.chunk_size is not None and (not isinstance(self.chunk_size, int) or self.chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive integer or None, got {self.chunk_size!r}")
        if not self.eps:
            raise ValueError("eps must hold at least one radius")
        if len(set(eps_tag(e) for e in self.eps)) != len(self.eps):
            raise ValueError(f"duplicate eps values: {self.eps}")
        if self.data_split not in ("train", "test"):
            raise ValueError(f"data_split must be 'train' or 'test', got {self.data_split!r}")

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.dataset]

    @property
    def attack_mode(self) -> str:
        """The BN mode the attack differentiates (``attack_bn_mode`` or ``bn_mode``)."""
        return self.attack_bn_mode or self.bn_mode

    @property
    def attack_key_seed(self) -> int:
        """The seed of the attack key: ``PRNGKey(attack_key_seed + 1)``."""
        return self.seed if self.attack_seed is None else self.attack_seed

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.attack_seed is None:
            del d["attack_seed"]
        d["eps"], d["betas"] = list(self.eps), list(self.betas)
        d["eps_255"] = [eps_255(e) for e in self.eps]
        return d

    def digest(self) -> str:
        """Short hash of the configuration (identifies compatible result stores)."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def kernel_names(self) -> list[str]:
        """Names of the symmetric kernels whose spectra are reported, in column order."""
        return kernels.kernel_names(self.eps, self.betas)

    def jax_dtype(self):
        """The JAX float dtype of the computation.

        Raises:
            ValueError: ``dtype='float64'`` without ``jax_enable_x64``.
        """
        if self.dtype == "float64" and not jax.config.jax_enable_x64:
            raise ValueError("dtype='float64' needs jax_enable_x64 (set JAX_ENABLE_X64=1 or use --dtype float64)")
        return jnp.float64 if self.dtype == "float64" else jnp.float32


def _as_tuple(v, name: str) -> tuple:
    if isinstance(v, (str, int, float)):
        return (v,)
    try:
        return tuple(v)
    except TypeError:
        raise ValueError(f"{name} must be a number or a sequence of numbers, got {v!r}") from None


def spectra_row(mats: dict[str, Any], cfg: ScoreConfig) -> dict[str, Any]:
    """Host-side float64 spectra of the named kernels (:func:`robntk.ntk.kernels.named_kernels`)
    → result-row columns ``lambda_min_*``, ``cond_*``, the clean kernel's ``lambda_max``,
    ``trace``, ``logdet``, and ``degenerate``."""
    row: dict[str, Any] = {}
    degenerate = False
    dt = np.float64 if cfg.dtype == "float64" else np.float32
    for name in cfg.kernel_names():
        s = spectra.spectrum(np.asarray(mats[name]), dt)
        row[score_column("lambda_min", name)] = s.lambda_min
        row[score_column("cond", name)] = s.cond
        if name == "clean":
            row.update(lambda_max_clean=s.lambda_max, trace_clean=s.trace, logdet_clean=s.logdet)
        degenerate |= s.degenerate
    row["degenerate"] = degenerate
    return row


def batch_digest(x, y) -> str:
    """SHA-256 (16 hex digits) of a batch's bytes: identifies the input batch of a store."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(x)).tobytes() + np.asarray(y).tobytes()).hexdigest()[:16]


def check_batch(x, y, num_classes: int) -> None:
    """Validate a scoring batch: x (B, H, W, 3) finite in [0, 1], y int (B,) in [0, num_classes).

    Raises:
        ValueError: naming the bad shape or value.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 4 or x.shape[-1] != 3 or y.shape != (x.shape[0],):
        raise ValueError(f"batch must be x (B, H, W, 3) and y (B,), got {x.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got values in [{y.min()}, {y.max()}]")
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
        raise ValueError(f"images must be finite pixel values in [0, 1], got range [{x.min()}, {x.max()}]")


def load_batch(cfg: ScoreConfig, data_dir=None) -> tuple[jax.Array, jax.Array, str]:
    """The fixed batch of ``cfg``: x (B, H, W, 3) in [0, 1] of ``cfg``'s dtype, y int32 (B,),
    and its digest (:func:`batch_digest` of the float bytes).

    Raises:
        FileNotFoundError: the dataset is missing (names the file).
    """
    from robntk.data.datasets import fixed_batch

    x, y = fixed_batch(cfg.dataset, cfg.batch_size, seed=cfg.seed, data_dir=data_dir, split=cfg.data_split)
    check_batch(x, y, cfg.num_classes)
    return jnp.asarray(x, cfg.jax_dtype()), jnp.asarray(y, jnp.int32), batch_digest(x, y)


#: Why the default BN mode is what it is (written into every sidecar).
BN_MODE_NOTE = (
    "bn_mode='train' (batch statistics) is the default because at-init scores in this field are "
    "computed that way (TE-NAS get_ntk_n(train_mode=True); NASLib and zero-cost-nas models in "
    "train()); chosen from the references, not from benchmark correlations. 'eval' uses the "
    "running statistics, the identity at init (an unnormalised network)."
)


def _jaxlib_version() -> str | None:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return None


def provenance(cfg: ScoreConfig, batch_sha: str, extra: dict | None = None) -> dict[str, Any]:
    """Configuration + environment written next to every score file (with :data:`BN_MODE_NOTE`):
    versions, backend and devices, the settings that decide the compiled program (x64,
    default matmul precision, ``XLA_FLAGS``) and the compilation cache
    (:func:`robntk.core.compile_cache.status`: directory, whether it is on, hits and writes)."""
    return {
        "config": cfg.as_dict(),
        "bn_mode_note": BN_MODE_NOTE,
        "config_digest": cfg.digest(),
        "batch_sha256_16": batch_sha,
        "robntk_version": __version__,
        "jax_version": jax.__version__,
        "jaxlib_version": _jaxlib_version(),
        "backend": jax.default_backend(),
        # what else decides the compiled program (hence the float32 rounding of the scores)
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "devices": [str(d) for d in jax.devices()],
        # where compiled programs are cached, and this process's cache hits/writes so far
        "compile_cache": compile_cache.status(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        **(extra or {}),
    }
