"""The RobNets search space: DARTS-style cells with 2-bit edge codes, and the released codes.

A RobNets cell (Guo et al., CVPR 2020, §3; reference gmh14/RobNets ``models/basic_model.py``)
has two input nodes (the outputs of the previous two cells, preprocessed to C channels) and
``steps`` = 4 intermediate nodes; intermediate node ``i`` (numbered 2..5) sums one edge from
every earlier node, so there are 2 + 3 + 4 + 5 = 14 edges, listed in the order
``(0,2), (1,2), (0,3), (1,3), (2,3), (0,4), ..., (4,5)`` (:func:`cell_edges`). The cell output is
the channel concatenation of the last ``multiplier`` = 4 intermediate nodes. Each edge holds a
2-bit code (reference ``operation_canditates``):

=====  ==================================================================================
code   op
=====  ==================================================================================
``00`` zero
``01`` 3×3 separable conv (ReLU-dw3×3-pw1×1-BN-ReLU-dw3×3-pw1×1-BN, BN not affine)
``10`` identity (in a reduction cell, on a stride-2 edge: FactorizedReduce)
``11`` separable conv + identity (``ResSepConv``)
=====  ==================================================================================

The first bit says whether the identity (skip) is on, the second whether the separable conv
is on: ``α_(i,j)^k ∈ {0, 1}`` for k ∈ {identity, sep-conv} in the paper's notation.

Released codes (reference ``architecture_code.py``): RobNet-large v1 and v2 share one cell code
for all cells (configs with ``share=True``); RobNet-free has 20 codes, one per cell
(``share=False``). The model configs are those of the reference ``experiments/*/config.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

#: Allowed 2-bit edge codes and their ops (identity bit first, sep-conv bit second).
EDGE_CODES: dict[str, tuple[str, ...]] = {
    "00": (),
    "01": ("sep_conv_3x3",),
    "10": ("skip_connect",),
    "11": ("sep_conv_3x3", "skip_connect"),
}

# Reference gmh14/RobNets architecture_code.py (14 codes per cell, edge order of cell_edges()).
ROBNET_LARGE: tuple[str, ...] = ("11", "11", "11", "11", "11", "01", "11", "01", "10", "11", "01", "01", "01", "11")
_FREE = """
11 10 11 11 10 11 01 01 10 11 11 00 11 01
11 00 01 10 01 00 10 10 00 01 11 10 11 00
11 11 11 01 01 11 01 00 10 00 10 10 00 11
10 11 10 01 01 10 10 01 10 11 00 00 01 10
11 11 01 00 10 10 10 01 10 01 00 10 01 11
11 10 11 11 11 01 10 11 00 10 01 11 01 11
11 11 11 10 10 01 11 10 01 10 10 10 01 10
01 11 11 11 01 11 11 11 01 11 01 11 10 00
11 11 11 11 11 01 01 11 10 01 00 10 01 11
10 11 01 00 11 11 10 11 01 11 11 11 11 00
11 10 11 00 00 00 11 00 01 10 00 01 10 11
01 11 01 11 11 10 10 11 10 11 01 11 10 00
11 11 10 10 01 00 10 11 11 01 10 10 00 01
01 11 11 11 01 01 11 01 01 11 11 01 10 10
01 11 11 11 11 01 00 01 10 10 11 10 10 11
11 11 00 11 11 01 00 01 10 00 11 01 11 11
11 11 01 11 11 10 11 10 10 10 10 10 11 11
10 11 01 11 11 01 11 00 11 11 00 10 00 01
11 10 11 11 11 11 11 10 11 00 11 01 11 11
11 11 01 01 11 11 01 00 00 10 00 01 01 11
"""
ROBNET_FREE: tuple[tuple[str, ...], ...] = tuple(tuple(line.split()) for line in _FREE.strip().splitlines())

#: Released genotype lists by model name (reference ``architecture_code.py``).
GENOTYPES: dict[str, tuple[tuple[str, ...], ...]] = {
    "robnet_large_v1": (ROBNET_LARGE,),
    "robnet_large_v2": (ROBNET_LARGE,),
    "robnet_free": ROBNET_FREE,
}

#: Model sizes printed in the paper (Table 3 / poster), in parameters.
PAPER_PARAMS: dict[str, float] = {"robnet_large_v1": 6.89e6, "robnet_free": 5.49e6, "robnet_large_v2": 33.42e6}


@dataclass(frozen=True)
class RobNetConfig:
    """Network skeleton hyper-parameters (names of the reference ``Network.__init__``).

    Attributes:
        C: initial cell width (channels per intermediate node in the first stage).
        num_classes: classifier outputs.
        layers: number of cells; cells ``layers//3`` and ``2*layers//3`` are reduction cells.
        steps: intermediate nodes per cell (RobNets: 4 → 14 edges).
        multiplier: how many of the last intermediate nodes are concatenated as the output.
        stem_multiplier: stem width = ``stem_multiplier * C``.
        share: one cell code for all cells (``True``) or one per cell.
        ad_pool_size: output size of the final adaptive average pool (reference ``AdPoolSize``).

    Raises:
        ValueError: non-positive sizes, odd C (FactorizedReduce halves channels), multiplier >
            steps, layers < 3.
    """

    C: int = 36
    num_classes: int = 10
    layers: int = 20
    steps: int = 4
    multiplier: int = 4
    stem_multiplier: int = 3
    share: bool = True
    ad_pool_size: int = 1

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check the values (see the class docstring)."""
        for name in ("C", "num_classes", "layers", "steps", "multiplier", "stem_multiplier", "ad_pool_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.C % 2:
            raise ValueError(f"C must be even (FactorizedReduce splits channels in two), got {self.C}")
        if self.multiplier > self.steps:
            raise ValueError(f"multiplier ({self.multiplier}) must be <= steps ({self.steps})")
        if self.layers < 3:
            raise ValueError(f"layers must be >= 3 (two reduction cells), got {self.layers}")

    @property
    def num_edges(self) -> int:
        """Edges per cell: Σ_{i<steps} (2 + i) (14 for 4 steps)."""
        return sum(2 + i for i in range(self.steps))

    def reduction_cells(self) -> tuple[int, int]:
        """Indices of the two reduction cells (reference: ``layers // 3`` and ``2 * layers // 3``)."""
        return (self.layers // 3, 2 * self.layers // 3)

    def to_dict(self) -> dict:
        """Plain dict of the fields."""
        return asdict(self)


#: Reference configs (``experiments/RobNet_*_cifar10/config.py``; CIFAR-10 head).
CONFIGS: dict[str, RobNetConfig] = {
    "robnet_large_v1": RobNetConfig(C=36, layers=20, share=True),
    "robnet_free": RobNetConfig(C=36, layers=20, share=False),
    "robnet_large_v2": RobNetConfig(C=64, layers=33, share=True),
}


def cell_edges(steps: int = 4) -> list[tuple[int, int]]:
    """(src, dst) of every edge in code order: for node i = 2..steps+1, sources 0..i−1."""
    return [(j, i + 2) for i in range(steps) for j in range(2 + i)]


def check_code(code: Sequence[str], steps: int = 4) -> tuple[str, ...]:
    """Validate one cell code: ``num_edges`` strings from :data:`EDGE_CODES`.

    Raises:
        ValueError: wrong length or an unknown 2-bit code (named).
    """
    code = tuple(code)
    n = len(cell_edges(steps))
    if len(code) != n:
        raise ValueError(f"a cell code needs {n} edge codes (steps={steps}), got {len(code)}")
    for i, c in enumerate(code):
        if c not in EDGE_CODES:
            raise ValueError(f"edge {i}: unknown code {c!r}; allowed: {', '.join(EDGE_CODES)}")
    return code


def cell_codes(genotypes: Sequence[Sequence[str]], cfg: RobNetConfig) -> list[tuple[str, ...]]:
    """The code of every cell: ``genotypes[0]`` for all when ``cfg.share``, else one per cell.

    Raises:
        ValueError: bad codes; ``share=False`` with fewer codes than ``cfg.layers``.
    """
    gl = [check_code(g, cfg.steps) for g in genotypes]
    if not gl:
        raise ValueError("genotypes must hold at least one cell code")
    if cfg.share:
        return [gl[0]] * cfg.layers
    if len(gl) < cfg.layers:
        raise ValueError(f"share=False needs one code per cell: {cfg.layers} cells, {len(gl)} codes")
    return gl[: cfg.layers]


def density(code: Sequence[str], steps: int = 4) -> float:
    """Architecture density of a cell: D = Σ α_(i,j)^k / (2·|E|) (paper §4.2, Finding 1).

    The number of switched-on (edge, op) slots (1-bits of the code) over all 2·|E| slots, so
    RobNet-large's cell has density 22/28. For several cells, average the per-cell densities.
    """
    code = check_code(code, steps)
    return sum(c.count("1") for c in code) / (2 * len(code))


def sep_conv_params(C: int) -> int:
    """3×3 separable conv of the reference (2 × (depthwise 9C + pointwise C²), BNs not affine)."""
    return 2 * (9 * C + C * C)


def factorized_reduce_params(c_in: int, c_out: int) -> int:
    """FactorizedReduce: two 1×1 stride-2 convs c_in → c_out/2 (BN not affine)."""
    return 2 * c_in * (c_out // 2)


def num_params(genotypes: Sequence[Sequence[str]], cfg: RobNetConfig) -> int:
    """Trainable parameter count of the reference network, in closed form.

    Counts what PyTorch's ``model.parameters()`` holds in the reference: all conv weights (no
    biases), the stem BN's affine scale/bias (2·stem width), the classifier (weights + bias). The
    cell BNs have ``affine=False`` and contribute nothing; running statistics are buffers.

    Args:
        genotypes: cell codes (see :func:`cell_codes`).
        cfg: skeleton.

    Returns:
        Number of parameters (int).

    Raises:
        ValueError: bad codes/config (see :func:`cell_codes`).
    """
    codes = cell_codes(genotypes, cfg)
    c_stem = cfg.stem_multiplier * cfg.C
    total = 27 * c_stem + 2 * c_stem  # stem conv 3×3×3 + BN affine
    cpp, cp, c = c_stem, c_stem, cfg.C
    reductions = cfg.reduction_cells()
    red_prev = False
    for i, code in enumerate(codes):
        red = i in reductions
        if red:
            c *= 2
        total += factorized_reduce_params(cpp, c) if red_prev else cpp * c  # preprocess0
        total += cp * c  # preprocess1 (ReLUConvBN 1×1)
        for (src, _), e in zip(cell_edges(cfg.steps), code):
            stride2 = red and src < 2
            if e[1] == "1":
                total += sep_conv_params(c)
            if e[0] == "1" and stride2:
                total += factorized_reduce_params(c, c)
        red_prev = red
        cpp, cp = cp, cfg.multiplier * c
    total += cp * cfg.ad_pool_size**2 * cfg.num_classes + cfg.num_classes
    return int(total)


def paper_head_classes(name: str, max_classes: int = 1000) -> list[int]:
    """Classifier sizes K for which :func:`num_params` of ``name`` with a K-way head rounds to
    the paper's printed size (2 decimals in millions). Used to explain the paper's numbers
    (see ``experiments/robnets/README.md``).

    Raises:
        ValueError: unknown model name.
    """
    if name not in CONFIGS:
        raise ValueError(f"unknown RobNet {name!r}; allowed: {', '.join(CONFIGS)}")
    cfg = CONFIGS[name]
    out = []
    for k in range(1, max_classes + 1):
        c = RobNetConfig(**{**cfg.to_dict(), "num_classes": k})
        if math.isclose(round(num_params(GENOTYPES[name], c) / 1e6, 2), PAPER_PARAMS[name] / 1e6):
            out.append(k)
    return out


def parameter_counts(max_classes: int = 200) -> dict[str, dict]:
    """Parameter counts of the released RobNets (``robntk robnets params``): per model its
    reference config, the closed-form count with the CIFAR-10 head (:func:`num_params`, equal to
    the reference PyTorch skeleton's), with a 100-way head, the paper's printed size
    (:data:`PAPER_PARAMS`) and the head sizes K ≤ ``max_classes`` that reproduce it
    (:func:`paper_head_classes`).

    Returns:
        ``{name: {'config', 'params_cifar10_head', 'params_100_class_head', 'paper',
        'heads_matching_paper'}}`` (JSON-ready).
    """
    out = {}
    for name, cfg in CONFIGS.items():
        out[name] = {
            "config": cfg.to_dict(),
            "params_cifar10_head": num_params(GENOTYPES[name], cfg),
            "params_100_class_head": num_params(GENOTYPES[name], RobNetConfig(**{**cfg.to_dict(), "num_classes": 100})),
            "paper": PAPER_PARAMS[name],
            "heads_matching_paper": paper_head_classes(name, max_classes),
        }
    return out
