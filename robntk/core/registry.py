"""One registry of facts and names that several modules need: datasets, ε units, column names.

Everything here is a constant or a tiny pure function with no robntk imports, so every layer of
the pipeline (search space → network → attacks → kernels → spectra → engine → commands) can use
it without creating an import cycle.

Datasets (NAS-RobBench-201 / NB201, reference TT2408/nasrobbench201
``utils_data.py``): classes, image side, RandomCrop padding, per-channel normalisation (pixel
units / 255; applied inside the network, so images are in [0, 1]).

ε convention: every ε robntk takes or writes is in **[0, 1] pixel units** (8/255 = 0.0314 is the
benchmark's L∞ radius). :func:`parse_eps` accepts ``'8/255'``, ``'0.0314'`` or a float and
rejects a bare ``8`` with a "did you mean 8/255?" hint; column and metric names carry ε in
255ths (:func:`eps_tag`: ``eps8``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class DatasetInfo:
    """Facts of one dataset as NAS-RobBench-201 uses it.

    Attributes:
        name: canonical name (``'cifar10'``, ``'cifar100'``, ``'ImageNet16-120'``).
        num_classes: number of classes.
        image_size: image side in pixels (square, 3 channels).
        crop_pad: RandomCrop padding of the training augmentation.
        mean, std: per-channel normalisation in pixel units / 255 (RGB).
    """

    name: str
    num_classes: int
    image_size: int
    crop_pad: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("cifar10", 10, 32, 4, (125.3, 123.0, 113.9), (63.0, 62.1, 66.7)),
    "cifar100": DatasetInfo("cifar100", 100, 32, 4, (129.3, 124.1, 112.4), (68.2, 65.4, 70.4)),
    "ImageNet16-120": DatasetInfo("ImageNet16-120", 120, 16, 2, (122.68, 116.66, 104.01), (63.22, 61.26, 65.09)),
}
#: dataset → number of classes (convenience view of :data:`DATASETS`).
NUM_CLASSES: dict[str, int] = {k: v.num_classes for k, v in DATASETS.items()}
#: BatchNorm modes: ``'train'`` (batch statistics, rows coupled) or ``'eval'`` (running statistics).
BN_MODES: tuple[str, ...] = ("train", "eval")
#: Float dtypes of the computation.
DTYPES: tuple[str, ...] = ("float32", "float64")


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``.

    Raises:
        ValueError: unknown dataset (lists the allowed names).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return DATASETS[name]


def check_bn_mode(bn_mode: str, what: str = "bn_mode") -> str:
    """Validate a BN mode.

    Raises:
        ValueError: not one of :data:`BN_MODES`.
    """
    if bn_mode not in BN_MODES:
        raise ValueError(f"{what} must be one of {', '.join(BN_MODES)}, got {bn_mode!r}")
    return bn_mode


# --------------------------------------------------------------------------- seeds
#: Largest seed any robntk command takes: 2**32 − 1. Without ``jax_enable_x64``,
#: ``jax.random.PRNGKey(s)`` keeps only the low 32 bits of ``s``, so ``PRNGKey(2**40)`` is
#: ``PRNGKey(0)``: a larger seed would silently give the weights of a smaller one.
MAX_SEED = 2**32 - 1


def check_seed(value, name: str = "seed") -> int:
    """``value`` as an int if it is an integer in [0, :data:`MAX_SEED`].

    Args:
        value: the seed. name: the flag or field named in the error (e.g. ``'--seed'``).

    Raises:
        ValueError: not an integer, negative, or > 2**32 − 1 (names ``name`` and the range).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer in [0, 2**32 - 1 = {MAX_SEED}], got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r} (allowed: 0 to 2**32 - 1 = {MAX_SEED})")
    if value > MAX_SEED:
        raise ValueError(
            f"{name} must be an integer <= 2**32 - 1 = {MAX_SEED} (seeds are 32-bit: jax.random.PRNGKey "
            f"keeps the low 32 bits, so a larger seed would alias a smaller one), got {value!r}"
        )
    return int(value)


def parse_eps(value: str | float) -> float:
    """Parse an ε given as ``'8/255'``, ``'0.0314'`` or a float, in [0, 1] pixel units.

    Raises:
        ValueError: unparsable, NaN, negative or > 1 (with a "did you mean 8/255?" hint for
            values in (1, 255]).
    """
    try:
        eps = float(Fraction(value)) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"cannot parse eps {value!r}; use pixel units in [0, 1], e.g. 8/255 or 0.0314") from None
    if math.isnan(eps) or not 0.0 <= eps <= 1.0:
        hint = f" (did you mean {value}/255?)" if 1.0 < eps <= 255 else ""
        raise ValueError(f"eps must be in [0, 1] pixel units, got {value!r}{hint}")
    return eps


def eps_tag(eps: float) -> str:
    """Column tag of ε in 255ths: ``8/255`` → ``'eps8'``, ``0.5/255`` → ``'eps0.5'``."""
    v = round(eps * 255, 6)
    return f"eps{int(v)}" if v == int(v) else f"eps{v:g}"


def eps_255(eps: float) -> float:
    """ε in 255ths, rounded to 6 decimals (``8/255`` → 8.0), for display and metric names."""
    return round(eps * 255, 6)


def beta_tag(beta: float) -> str:
    """Column tag of β: ``0.5`` → ``'beta0.5'``."""
    return f"beta{beta:g}"


def format_eps(eps: float) -> str:
    """``8/255`` → ``'8/255'`` (the CLI's spelling of a pixel-unit ε)."""
    v = eps_255(eps)
    return f"{int(v)}/255" if v == int(v) else f"{v:g}/255"


# --------------------------------------------------------------------------- benchmark metric names
#: NAS-RobBench-201 metrics, names exactly as the official ``NAS-RobBench-201_all.json``.
METRICS: tuple[str, ...] = (
    "val_acc",
    "val_fgsm_3.0_acc",
    "val_pgd_3.0_acc",
    "val_fgsm_8.0_acc",
    "val_pgd_8.0_acc",
    "autoattack",
)
CLEAN_METRIC = "val_acc"
PGD8_METRIC = "val_pgd_8.0_acc"
AA_METRIC = "autoattack"
#: Benchmark datasets, canonical names.
BENCH_DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "ImageNet16-120")


def metric_name(attack: str, eps: float | None = None) -> str:
    """Benchmark metric name of an evaluation: ``'val_acc'`` (clean) or ``'val_{attack}_{E}_acc'``
    with E = ε in 255ths with one decimal (``metric_name('pgd', 8/255) == 'val_pgd_8.0_acc'``),
    as the official file names them (robntk's AutoAttack-style result at ε is
    ``'val_autoattack_8.0_acc'``; the benchmark's own AutoAttack column is ``'autoattack'``)."""
    if attack == "clean":
        return CLEAN_METRIC
    return f"val_{attack}_{eps_255(eps):.1f}_acc"


def bench_column(dataset: str, metric: str) -> str:
    """Column of a (dataset, metric) pair in wide tables: ``'cifar10_val_pgd_8.0_acc'``."""
    return f"{dataset}_{metric}"


# --------------------------------------------------------------------------- score column names
#: Spectral statistics reported for every kernel (``{stat}_{kernel}``); the clean kernel also
#: gets ``lambda_max``, ``trace`` and ``logdet``.
SPECTRUM_STATS: tuple[str, ...] = ("lambda_min", "cond")
CLEAN_EXTRA_STATS: tuple[str, ...] = ("lambda_max", "trace", "logdet")
#: Non-score columns of a score row.
ID_COLUMNS: tuple[str, ...] = ("nb201_index", "arch_str")
FLAG_COLUMNS: tuple[str, ...] = ("disconnected", "degenerate")
TIMING_COLUMNS: tuple[str, ...] = ("compile_s", "run_s", "spectra_s")


def score_column(stat: str, kernel: str) -> str:
    """``score_column('lambda_min', 'robust_all_eps8_beta0.5')`` → ``'lambda_min_robust_all_eps8_beta0.5'``."""
    return f"{stat}_{kernel}"
