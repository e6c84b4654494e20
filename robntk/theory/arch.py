"""Architectures of the theory setting and their width-independent layer constants.

Two families (NAS-RobBench-201 paper §4; Zhu et al., NeurIPS 2022, for the activation/skip
search space; the exact parametrisation below is robntk's choice and is derived in
docs/theory-bounds.md):

* :class:`ResFCN` — residual fully-connected network of depth L on x ∈ S^{d−1}:

      g¹ = W¹ x,                               h¹ = σ₁(g¹)
      gˡ = Wˡ hˡ⁻¹ / √(m q_{l−1}),             hˡ = σ_l(gˡ) + α_l hˡ⁻¹      (l = 2..L)
      f(x) = vᵀ hᴸ / √m

  NTK parametrisation (all weights i.i.d. N(0, 1), every layer trained), activation σ_l
  searched per layer, skip α_l ∈ {0, 1} searched per layer l ≥ 2. The constant q_{l−1} (below)
  is the infinite-width value of ‖hˡ⁻¹‖²/m on the sphere: it makes every pre-activation a
  *unit-variance* Gaussian at infinite width, so the Hermite coefficients μ_r(σ) of the standard
  Gaussian apply to every layer.

* :class:`ResCNN` — the same with 1-D circular convolutions of searchable odd filter size k_l on
  inputs x ∈ (S^{C−1})^P (every position a unit vector), global average pooling before v:

      gˡ_p = Σ_{|δ| ≤ (k_l−1)/2} Wˡ_δ hˡ⁻¹_{p+δ} / √(k_l m q_{l−1})   (√k₁ and no q for l = 1)

Layer constants (:func:`layer_constants`): with μ₀(σ) = E σ(z) and s(σ) = E σ(z)²,

    M₁ = μ₀(σ₁),  q₁ = s(σ₁)
    M_l = α_l M_{l−1} + μ₀(σ_l),
    q_l = α_l² q_{l−1} + 2 α_l μ₀(σ_l) M_{l−1} + s(σ_l)

(M_l = lim mean of hˡ's coordinates, q_l = lim ‖hˡ‖²/m; the cross term comes from
E[hˡ⁻¹_k σ_l(gˡ_k)] = M_{l−1} μ₀(σ_l), gˡ being independent of hˡ⁻¹ in the limit.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robntk.theory.activations import ACTIVATIONS, check_activation
from robntk.theory.hermite import gaussian_moments

SKIP_PATTERNS = ("none", "all", "alternate", "first", "last")


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (list, tuple)) else (x,)


def check_depth(depth) -> int:
    """Validate depth L ≥ 1. Raises ValueError naming the value."""
    if not isinstance(depth, (int, np.integer)) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    return int(depth)


def check_width(width) -> int:
    """Validate width m ≥ 1 (hidden units or channels). Raises ValueError naming the value."""
    if not isinstance(width, (int, np.integer)) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width must be an integer >= 1, got {width!r}")
    return int(width)


def skip_pattern(name: str, depth: int) -> tuple[int, ...]:
    """Skip vector (α_2..α_L) of a named pattern.

    Args:
        name: ``'none'`` (plain MLP), ``'all'`` (every layer l ≥ 2 residual), ``'alternate'``
            (α_l = 1 for even l), ``'first'`` (only α_2), ``'last'`` (only α_L).
        depth: L ≥ 1.

    Returns:
        tuple of L − 1 ints in {0, 1}.

    Raises:
        ValueError: unknown pattern or bad depth.
    """
    depth = check_depth(depth)
    if name not in SKIP_PATTERNS:
        raise ValueError(f"unknown skip pattern {name!r}; allowed: {', '.join(SKIP_PATTERNS)}")
    n = depth - 1
    if name == "none":
        return (0,) * n
    if name == "all":
        return (1,) * n
    if name == "alternate":
        return tuple(int(l % 2 == 0) for l in range(2, depth + 1))
    if name == "first":
        return tuple(int(i == 0) for i in range(n))
    return tuple(int(i == n - 1) for i in range(n))


def _validate_common(activations, skips):
    if len(activations) < 1:
        raise ValueError("depth must be an integer >= 1, got 0 (empty activation list)")
    for a in activations:
        check_activation(a)
    if len(skips) != len(activations) - 1:
        raise ValueError(
            f"skips must have depth-1 = {len(activations) - 1} entries (α_2..α_L), got {len(skips)}: {skips!r}"
        )
    for s in skips:
        if s not in (0, 1):
            raise ValueError(f"skip connections must be 0 or 1, got {s!r} in {skips!r}")


@dataclass(frozen=True)
class ResFCN:
    """Residual fully-connected network spec (width-free; the width is an argument of init).

    Attributes:
        activations: L activation names (layer 1 first), from :data:`ACTIVATIONS`.
        skips: L − 1 skip flags α_2..α_L in {0, 1}; default all 0.
        in_dim: input dimension d (inputs are unit vectors of R^d).

    Raises:
        ValueError: unknown activation, empty activation list (depth < 1), wrong number of
            skips, skip not in {0, 1}, in_dim < 1.
    """

    activations: tuple[str, ...]
    skips: tuple[int, ...] | None = None
    in_dim: int = 16
    kind: str = field(default="fcn", init=False)

    def __post_init__(self):
        acts = _as_tuple(self.activations)
        skips = (0,) * (len(acts) - 1) if self.skips is None else _as_tuple(self.skips)
        _validate_common(acts, skips)
        if not isinstance(self.in_dim, (int, np.integer)) or self.in_dim < 1:
            raise ValueError(f"in_dim must be an integer >= 1, got {self.in_dim!r}")
        object.__setattr__(self, "activations", acts)
        object.__setattr__(self, "skips", tuple(int(s) for s in skips))

    @property
    def depth(self) -> int:
        """L, the number of hidden layers (= trained weight matrices before the read-out)."""
        return len(self.activations)

    @property
    def alphas(self) -> tuple[int, ...]:
        """(α_1, …, α_L) with α_1 = 0 (no skip into the first layer)."""
        return (0,) + self.skips

    @property
    def name(self) -> str:
        """Compact id, e.g. ``fcn:relu|tanh+|gelu+`` (``+`` = skip into that layer)."""
        parts = [a + ("+" if s else "") for a, s in zip(self.activations, self.alphas)]
        return "fcn:" + "|".join(parts)


@dataclass(frozen=True)
class ResCNN:
    """Residual 1-D CNN spec with circular padding and global average pooling.

    Attributes:
        activations: L activation names.
        skips: L − 1 flags α_2..α_L in {0, 1}; default all 0.
        filter_sizes: L odd filter sizes k_l ≥ 1 (searchable), or one int for all layers.
        in_channels: C, channels per position (every position of an input is a unit vector).
        length: P, number of positions.

    Raises:
        ValueError: as :class:`ResFCN`, plus even/non-positive filter sizes, filter larger than
            the length, wrong number of filter sizes, in_channels < 1, length < 1.
    """

    activations: tuple[str, ...]
    skips: tuple[int, ...] | None = None
    filter_sizes: tuple[int, ...] | int = 3
    in_channels: int = 3
    length: int = 8
    kind: str = field(default="cnn", init=False)

    def __post_init__(self):
        acts = _as_tuple(self.activations)
        skips = (0,) * (len(acts) - 1) if self.skips is None else _as_tuple(self.skips)
        _validate_common(acts, skips)
        ks = _as_tuple(self.filter_sizes)
        if len(ks) == 1:
            ks = ks * len(acts)
        if len(ks) != len(acts):
            raise ValueError(f"filter_sizes must have one entry per layer ({len(acts)}), got {ks!r}")
        for name, v in (("in_channels", self.in_channels), ("length", self.length)):
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        for k in ks:
            if not isinstance(k, (int, np.integer)) or k < 1 or k % 2 == 0:
                raise ValueError(f"filter sizes must be odd integers >= 1, got {k!r} in {ks!r}")
            if k > self.length:
                raise ValueError(f"filter size {k} exceeds the input length {self.length}")
        object.__setattr__(self, "activations", acts)
        object.__setattr__(self, "skips", tuple(int(s) for s in skips))
        object.__setattr__(self, "filter_sizes", tuple(int(k) for k in ks))

    @property
    def depth(self) -> int:
        """L, the number of convolutional layers."""
        return len(self.activations)

    @property
    def alphas(self) -> tuple[int, ...]:
        """(α_1, …, α_L) with α_1 = 0."""
        return (0,) + self.skips

    @property
    def name(self) -> str:
        """Compact id, e.g. ``cnn:relu/3|relu/3+``."""
        parts = [f"{a}/{k}" + ("+" if s else "") for a, k, s in zip(self.activations, self.filter_sizes, self.alphas)]
        return "cnn:" + "|".join(parts)


Arch = ResFCN | ResCNN


@dataclass(frozen=True)
class LayerConstants:
    """Width-independent constants of an architecture (infinite-width limit, unit-norm inputs).

    Attributes (each float64 (L,), index l−1 for layer l):
        mu0: μ₀(σ_l) = E σ_l(z).
        second: s(σ_l) = E σ_l(z)².
        mean: M_l, limit of the mean coordinate of hˡ.
        q: q_l, limit of ‖hˡ‖²/m (the normaliser of layer l + 1).
        alpha: α_l (α_1 = 0).
    """

    mu0: np.ndarray
    second: np.ndarray
    mean: np.ndarray
    q: np.ndarray
    alpha: np.ndarray


def layer_constants(arch: Arch) -> LayerConstants:
    """M_l and q_l of the module docstring (float64). Raises ValueError for a bad spec."""
    L = arch.depth
    mu0, sec, M, q = (np.zeros(L) for _ in range(4))
    alpha = np.asarray(arch.alphas, dtype=np.float64)
    for l, act in enumerate(arch.activations):
        mu0[l], sec[l] = gaussian_moments(act)
        if l == 0:
            M[l], q[l] = mu0[l], sec[l]
        else:
            a = alpha[l]
            M[l] = a * M[l - 1] + mu0[l]
            q[l] = a * a * q[l - 1] + 2.0 * a * mu0[l] * M[l - 1] + sec[l]
    return LayerConstants(mu0, sec, M, q, alpha)


def onehot_activations(arch: Arch) -> np.ndarray:
    """(L, len(ACTIVATIONS)) float one-hot rows selecting each layer's activation."""
    out = np.zeros((arch.depth, len(ACTIVATIONS)))
    for l, a in enumerate(arch.activations):
        out[l, ACTIVATIONS.index(a)] = 1.0
    return out
