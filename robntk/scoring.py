"""NTK scores of NB201 architectures: the kernel family's spectra, one row per architecture.

Recipe (``../shared/docs/ntk-protocol.md``; every choice is a :class:`ScoreConfig` field and is
written next to the scores in a JSON sidecar):

1. TinyNetwork(C, N) for the arch, normalisation inside, initialised from ``PRNGKey(seed)``
   with the PyTorch-default scheme.
2. A fixed, class-balanced batch X of B training images in [0, 1] (same for every arch).
3. For each ε: X̃ = PGD-``pgd_steps`` (L∞, random start, step 2.5·ε/steps, cross-entropy on the
   true labels) at initialisation, and X̃̃ = PGD again from X̃ in the ε-ball around X̃.
4. Jacobians of the read-out (``output_mode``) at X, X̃_ε, X̃̃_ε, stacked, and one Gram matrix
   of the stack; every kernel of :mod:`robntk.kernels` is a block or a β-mix of blocks.
5. Spectra in float64 (:mod:`robntk.spectra`).

BN mode. ``bn_mode='eval'`` (default) uses running statistics, the identity at initialisation,
so rows are independent and the Jacobian costs B per-example backward passes.
``bn_mode='train'`` normalises with batch statistics (a PyTorch model in ``train()`` mode, as
TE-NAS computes its NTK); the rows are then coupled and the Jacobian needs B backward passes of
the whole batch, ~B times the cost (measured: 225 s vs 3–6 s per Jacobian for arch 2581, B=32,
on a 2-core CPU). The default is a cost choice, not a claim that it correlates better; both are
reported in the experiments.

Output columns (E = ε in 255ths, e.g. ``eps8``; B = β, e.g. ``beta0.5``):
``nb201_index, arch_str, disconnected, lambda_min_clean, cond_clean, lambda_max_clean,
trace_clean, logdet_clean, lambda_min_robust_eps{E}, lambda_min_twice_eps{E},
lambda_min_all_eps{E}_beta{B}, lambda_min_robust_all_eps{E}_beta{B}``, ``cond_*`` for each of
these kernels, ``degenerate`` (any kernel below the resolution floor, see
:mod:`robntk.spectra`), ``compile_s``, ``run_s``, ``spectra_s``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import __version__, kernels, ntk, paths, spectra
from .network import NUM_CLASSES, TinyNetwork, check_config, init_variables, make_apply
from .searchspace import SearchSpace, is_connected, sample_indices

BN_MODES = ("train", "eval")
DTYPES = ("float32", "float64")


def parse_eps(value: str | float) -> float:
    """Parse an ε given as ``'8/255'``, ``'0.0314'`` or a float, in [0, 1] pixel units.

    Raises:
        ValueError: unparsable, negative or > 1 (with a hint for values like ``8``).
    """
    try:
        eps = float(Fraction(value)) if isinstance(value, str) else float(value)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"cannot parse eps {value!r}; use pixel units in [0, 1], e.g. 8/255 or 0.0314") from None
    if not 0.0 <= eps <= 1.0 or math.isnan(eps):
        hint = f" (did you mean {value}/255?)" if 1.0 < eps <= 255 else ""
        raise ValueError(f"eps must be in [0, 1] pixel units, got {value!r}{hint}")
    return eps


def eps_tag(eps: float) -> str:
    """``8/255`` → ``'eps8'``, ``0.5/255`` → ``'eps0.5'`` (ε in 255ths, trailing zeros dropped)."""
    v = round(eps * 255, 6)
    return f"eps{int(v)}" if v == int(v) else f"eps{v:g}"


def beta_tag(beta: float) -> str:
    """``0.5`` → ``'beta0.5'``."""
    return f"beta{beta:g}"


@dataclass(frozen=True)
class ScoreConfig:
    """Everything that determines a score (written to the JSON sidecar of every output).

    Attributes:
        dataset: batch source and normalisation: ``'cifar10'`` | ``'cifar100'`` | ``'ImageNet16-120'``.
        batch_size: B, images in the fixed batch.
        seed: PRNG seed of the init (``PRNGKey(seed)``), the batch choice and the attacks.
        eps: attack radii in [0, 1] pixel units (L∞).
        betas: β values of the mixed kernels K_all(β), K̃_all(β), in [0, 1].
        pgd_steps: PGD iterations at initialisation; step size ``2.5·ε/steps``.
        output_mode: ``'sum'`` | ``'label'`` | ``'trace'`` | ``'full'`` (:mod:`robntk.ntk`).
        bn_mode: ``'eval'`` | ``'train'`` for the kernel's network function.
        attack_bn_mode: BN mode the attack differentiates (None = ``bn_mode``).
        C, N: TinyNetwork width and cells per stage (16, 5 in NB201).
        init_scheme: ``'pytorch'`` | ``'flax'``.
        dtype: ``'float32'`` | ``'float64'`` (float64 needs ``jax_enable_x64``; CPU).
        chunk_size: examples/cotangents per Jacobian chunk (memory bound); None = all.
        data_split: split the batch is drawn from.
    """

    dataset: str = "cifar10"
    batch_size: int = 32
    seed: int = 0
    eps: tuple[float, ...] = (3 / 255, 8 / 255)
    betas: tuple[float, ...] = (0.5,)
    pgd_steps: int = 10
    output_mode: str = "sum"
    bn_mode: str = "eval"
    attack_bn_mode: str | None = None
    C: int = 16
    N: int = 5
    init_scheme: str = "pytorch"
    dtype: str = "float32"
    chunk_size: int | None = None
    data_split: str = "train"

    def __post_init__(self):
        object.__setattr__(self, "eps", tuple(parse_eps(e) for e in self.eps))
        object.__setattr__(self, "betas", tuple(kernels.check_beta(b) for b in self.betas))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming any bad field and what is allowed."""
        check_config(self.C, self.N, NUM_CLASSES.get(self.dataset, 1), self.dataset, self.init_scheme)
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an integer >= 2, got {self.batch_size!r}")
        if not isinstance(self.pgd_steps, int) or self.pgd_steps < 1:
            raise ValueError(f"pgd_steps must be an integer >= 1, got {self.pgd_steps!r}")
        ntk.check_output_mode(self.output_mode, labels=0)
        for name in ("bn_mode", "attack_bn_mode"):
            v = getattr(self, name)
            if v is not None and v not in BN_MODES:
                raise ValueError(f"{name} must be one of {BN_MODES}, got {v!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.chunk_size is not None and (not isinstance(self.chunk_size, int) or self.chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive integer or None, got {self.chunk_size!r}")
        if len(set(eps_tag(e) for e in self.eps)) != len(self.eps):
            raise ValueError(f"duplicate eps values: {self.eps}")

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.dataset]

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["eps"], d["betas"] = list(self.eps), list(self.betas)
        d["eps_255"] = [round(e * 255, 6) for e in self.eps]
        return d

    def digest(self) -> str:
        """Short hash of the configuration (identifies compatible result files)."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def kernel_names(self) -> list[str]:
        """Names of the symmetric kernels whose spectra are reported, in column order."""
        names = ["clean"]
        for e in self.eps:
            t = eps_tag(e)
            names += [f"robust_{t}", f"twice_{t}"]
            for b in self.betas:
                names += [f"all_{t}_{beta_tag(b)}", f"robust_all_{t}_{beta_tag(b)}"]
        return names


# --------------------------------------------------------------------------- kernels (jittable)
def kernel_matrices(f: ntk.Fn, params: Any, x: jax.Array, y: jax.Array, cfg: ScoreConfig, key: jax.Array,
                    attack_f: ntk.Fn | None = None, unroll: int | bool = 1) -> dict[str, jax.Array]:
    """All kernels of one architecture, from a pure ``f(params, X) -> (B, O)`` (jittable).

    Jacobians at X, X̃_ε1..εE, X̃̃_ε1..εE are computed in one call on the stacked inputs and
    contracted once into a Gram matrix G of size (1+2E)·B; with blocks 0 (X), a (X̃_ε),
    aa (X̃̃_ε): K = G[0,0], K̃_ε = G[a,a], K̄_ε = G[0,a], K̃_2ε = G[aa,aa], K̄_2ε = G[a,aa]; the mixed kernels follow paper Eq. 4–5 (:func:`robntk.kernels.mixed_kernel`).

    Args:
        f: kernel function; attack_f: function the attacks differentiate (default ``f``).
        params: parameter pytree; x: (B, H, W, 3) in [0, 1]; y: int labels (B,).
        cfg: :class:`ScoreConfig`; key: PRNG key of the attacks (split per ε).
        unroll: PGD loop unrolling (:func:`robntk.attacks.pgd`; compilation only).

    Returns:
        dict name → kernel ((B, B), or (B, B, O, O) for ``'full'``), names from
        :meth:`ScoreConfig.kernel_names`.
    """
    attack_f = f if attack_f is None else attack_f
    B, E = x.shape[0], len(cfg.eps)
    x_all = jnp.concatenate([x, *perturbed_batches(attack_f, params, x, y, cfg, key, unroll)], axis=0)
    jk = dict(output_mode=cfg.output_mode, chunk_size=cfg.chunk_size)
    if cfg.bn_mode == "eval":  # rows independent: one per-example Jacobian of all (1+2E)·B inputs
        stacked = ntk.jacobian(f, params, x_all, labels=jnp.tile(y, 1 + 2 * E), independent_rows=True, **jk)
    else:  # each batch is normalised with its own statistics: one coupled Jacobian per batch
        xb = x_all.reshape((1 + 2 * E, B) + x.shape[1:])
        jac = jax.lax.map(lambda b: ntk.jacobian(f, params, b, labels=y, **jk), xb)
        stacked = jax.tree_util.tree_map(lambda j: j.reshape((-1,) + j.shape[2:]), jac)
    G = ntk.gram(stacked, stacked, cfg.output_mode)
    return kernels_from_gram(G, B, cfg, [(1 + k, 1 + E + k) for k in range(E)])


def kernels_from_gram(G: jax.Array, B: int, cfg: ScoreConfig, blocks: Sequence[tuple[int, int]]) -> dict[str, jax.Array]:
    """Named kernels from the Gram matrix of stacked Jacobians (block 0 = clean batch).

    Args:
        G: ((1+2E)·B, (1+2E)·B) Gram matrix (or the 'full' 4-D analogue on its first two axes).
        B: batch size. cfg: the configuration (ε and β lists).
        blocks: for each ε of ``cfg``, the block numbers (a, aa) of X̃_ε and X̃̃_ε in the stack.

    Returns:
        dict name → kernel, names from :meth:`ScoreConfig.kernel_names`.
    """
    blk = lambda a, b: G[a * B:(a + 1) * B, b * B:(b + 1) * B]
    out = {"clean": blk(0, 0)}
    for e, (a, aa) in zip(cfg.eps, blocks):
        t = eps_tag(e)
        out[f"robust_{t}"] = blk(a, a)
        out[f"twice_{t}"] = blk(aa, aa)
        for b in cfg.betas:
            out[f"all_{t}_{beta_tag(b)}"] = kernels.mixed_kernel(blk(0, 0), blk(0, a), blk(a, a), b)
            out[f"robust_all_{t}_{beta_tag(b)}"] = kernels.mixed_kernel(blk(a, a), blk(a, aa), blk(aa, aa), b)
    return out


def perturbed_batches(attack_f: ntk.Fn, params: Any, x: jax.Array, y: jax.Array, cfg: ScoreConfig,
                      key: jax.Array, unroll: int | bool = 1) -> list[jax.Array]:
    """[X̃_ε1, …, X̃_εE, X̃̃_ε1, …, X̃̃_εE] for the ε of ``cfg`` (one compiled PGD loop for all ε).

    The key of ε number k is ``fold_in(key, k)``, split into the keys of the two attacks
    (:func:`robntk.kernels.perturb`). ``unroll``: PGD loop unrolling (compilation only).
    """
    eps = jnp.asarray(cfg.eps, x.dtype)
    keys = jnp.stack([jax.random.fold_in(key, k) for k in range(len(cfg.eps))])
    xa, xaa = jax.lax.map(
        lambda a: kernels.perturb(attack_f, params, x, y, a[0], key=a[1], steps=cfg.pgd_steps, unroll=unroll),
        (eps, keys))
    return [*xa, *xaa]


def spectra_row(mats: dict[str, Any], cfg: ScoreConfig) -> dict[str, Any]:
    """Host-side float64 spectra of :func:`kernel_matrices`' output → result-row columns."""
    row: dict[str, Any] = {}
    degenerate = False
    dt = np.float64 if cfg.dtype == "float64" else np.float32
    for name in cfg.kernel_names():
        s = spectra.spectrum(np.asarray(mats[name]), dt)
        row[f"lambda_min_{name}"] = s.lambda_min
        row[f"cond_{name}"] = s.cond
        if name == "clean":
            row.update(lambda_max_clean=s.lambda_max, trace_clean=s.trace, logdet_clean=s.logdet)
        degenerate |= s.degenerate
    row["degenerate"] = degenerate
    return row


# --------------------------------------------------------------------------- per-arch path
def _dtype(cfg: ScoreConfig):
    if cfg.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("dtype='float64' needs jax_enable_x64 (set JAX_ENABLE_X64=1)")
    return jnp.float64 if cfg.dtype == "float64" else jnp.float32


def build_functions(arch, cfg: ScoreConfig, x_shape) -> tuple[Callable, Callable, Any]:
    """(f, attack_f, params) for the dedicated TinyNetwork of ``arch`` initialised from
    ``PRNGKey(cfg.seed)``."""
    model = TinyNetwork(arch, C=cfg.C, N=cfg.N, num_classes=cfg.num_classes, dataset=cfg.dataset,
                        init_scheme=cfg.init_scheme)
    dt = _dtype(cfg)
    variables = init_variables(model, jax.random.PRNGKey(cfg.seed), x_shape, dt)
    variables = jax.tree_util.tree_map(lambda v: v.astype(dt), variables)
    f, params = make_apply(model, variables, cfg.bn_mode)
    attack_f, _ = make_apply(model, variables, cfg.attack_bn_mode or cfg.bn_mode)
    return f, attack_f, params


def score_arch(index: int, arch_str: str, x: jax.Array, y: jax.Array, cfg: ScoreConfig) -> dict[str, Any]:
    """Score one architecture with its own compiled function (one compile per arch).

    Args:
        index: NB201 index (written to the row). arch_str: its arch string.
        x: (B, H, W, 3) float in [0, 1]; y: int labels (B,).

    Returns:
        Result row (see module docstring) with timings ``compile_s``, ``run_s``, ``spectra_s``.
    """
    f, attack_f, params = build_functions(arch_str, cfg, x.shape)
    key = jax.random.PRNGKey(cfg.seed + 1)
    fn = jax.jit(lambda p, xx, yy, k: kernel_matrices(f, p, xx, yy, cfg, k, attack_f))
    with jax.default_matmul_precision("highest"):
        t0 = time.perf_counter()
        compiled = fn.lower(params, x, y, key).compile()
        t1 = time.perf_counter()
        mats = jax.block_until_ready(compiled(params, x, y, key))
        t2 = time.perf_counter()
    row = {"nb201_index": int(index), "arch_str": arch_str, "disconnected": not is_connected(arch_str)}
    row.update(spectra_row(mats, cfg))
    row.update(compile_s=t1 - t0, run_s=t2 - t1, spectra_s=time.perf_counter() - t2)
    return row


def load_batch(cfg: ScoreConfig, data_dir=None) -> tuple[jax.Array, jax.Array, str]:
    """The fixed batch of ``cfg`` and its SHA-256 (of the uint8-equivalent float bytes)."""
    from .datasets import fixed_batch

    x, y = fixed_batch(cfg.dataset, cfg.batch_size, seed=cfg.seed, data_dir=data_dir, split=cfg.data_split)
    digest = hashlib.sha256(np.ascontiguousarray(x).tobytes() + np.asarray(y).tobytes()).hexdigest()[:16]
    dt = _dtype(cfg)
    return jnp.asarray(x, dt), jnp.asarray(y, jnp.int32), digest


def provenance(cfg: ScoreConfig, batch_digest: str, extra: dict | None = None) -> dict[str, Any]:
    """Configuration + environment written next to every score file."""
    return {
        "config": cfg.as_dict(),
        "config_digest": cfg.digest(),
        "batch_sha256_16": batch_digest,
        "robntk_version": __version__,
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        **(extra or {}),
    }


def write_table(df: pd.DataFrame, out: str | os.PathLike) -> Path:
    """Write ``df`` to ``.csv`` or ``.parquet`` atomically (temporary file + rename).

    Raises:
        ValueError: other suffixes.
    """
    out = Path(out)
    if out.suffix == ".csv":
        return paths.atomic_save(out, lambda p: df.to_csv(p, index=False))
    if out.suffix == ".parquet":
        return paths.atomic_save(out, lambda p: df.to_parquet(p, index=False))
    raise ValueError(f"--out must end in .csv or .parquet, got {str(out)!r}")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV or parquet score table."""
    path = Path(path)
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def sidecar_path(out: str | os.PathLike) -> Path:
    """``scores.csv`` → ``scores.csv.json`` (the configuration sidecar)."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def run_score(indices: Sequence[int], cfg: ScoreConfig, out: str | os.PathLike | None = None,
              data_dir=None, space: SearchSpace | None = None, progress: bool = True,
              extra_provenance: dict | None = None) -> pd.DataFrame:
    """Score architectures one by one (dedicated network, one compile each), resumably.

    After every architecture the whole table is rewritten atomically to ``out`` with its JSON
    sidecar, so a killed run leaves a complete, valid file; rerunning with the same ``out`` and
    configuration skips the archs already present (a different configuration is an error).

    Args:
        indices: NB201 indices. cfg: :class:`ScoreConfig`. out: ``.csv`` / ``.parquet`` or None.
        data_dir: data directory (see :mod:`robntk.paths`). space: search space (loaded if None).

    Returns:
        DataFrame, one row per index, in the order given.

    Raises:
        ValueError: ``out`` exists with a different configuration or bad suffix.
    """
    from tqdm.auto import tqdm

    space = space or SearchSpace.load(data_dir)
    indices = [space.check_index(i) for i in indices]
    x, y, digest = load_batch(cfg, data_dir)
    rows: list[dict] = []
    if out is not None and Path(out).exists():
        side = sidecar_path(out)
        old = json.loads(side.read_text()) if side.exists() else {}
        if old.get("config_digest") != cfg.digest():
            raise ValueError(
                f"{out} exists with a different configuration (digest {old.get('config_digest')} != "
                f"{cfg.digest()}); choose another --out or delete it"
            )
        rows = read_table(out).to_dict("records")
    done = {int(r["nb201_index"]) for r in rows}
    todo = [i for i in dict.fromkeys(indices) if i not in done]
    meta = provenance(cfg, digest, extra_provenance)
    for i in tqdm(todo, desc="score", unit="arch", disable=not progress):
        rows.append(score_arch(i, space.arch_str(i), x, y, cfg))
        if out is not None:
            write_table(pd.DataFrame(rows), out)
            with paths.atomic_write(sidecar_path(out)) as fh:
                json.dump(meta, fh, indent=2)
    by_index = {int(r["nb201_index"]): r for r in rows}
    return pd.DataFrame([by_index[i] for i in dict.fromkeys(indices)])


# --------------------------------------------------------------------------- CLI
def add_config_arguments(p: argparse.ArgumentParser, defaults: ScoreConfig = ScoreConfig()) -> None:
    """CLI flags of :class:`ScoreConfig` (shared by ``score`` and ``reproduce``)."""
    p.add_argument("--dataset", default=defaults.dataset, help="batch source / normalisation")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--eps", nargs="+", default=[f"{round(e * 255)}/255" for e in defaults.eps],
                   help="attack radii, pixel units (accepts 8/255)")
    p.add_argument("--beta", nargs="+", type=float, default=list(defaults.betas), help="β of the mixed kernels")
    p.add_argument("--pgd-steps", type=int, default=defaults.pgd_steps)
    p.add_argument("--output-mode", default=defaults.output_mode, choices=ntk.OUTPUT_MODES)
    p.add_argument("--bn-mode", default=defaults.bn_mode, choices=BN_MODES)
    p.add_argument("--seed", type=int, default=defaults.seed, help="init / batch / attack (and sample) seed")
    p.add_argument("--C", type=int, default=defaults.C, help="TinyNetwork width (NB201: 16)")
    p.add_argument("--N", type=int, default=defaults.N, help="cells per stage (NB201: 5)")
    p.add_argument("--chunk-size", type=int, default=None, help="Jacobian chunk (memory bound)")
    p.add_argument("--dtype", default=defaults.dtype, choices=DTYPES,
                   help="float64 turns on jax_enable_x64 (~2x slower on CPU; the initial weights are drawn in "
                        "float64, i.e. another network for the same seed)")


def config_from_args(args: argparse.Namespace) -> ScoreConfig:
    """Build (and validate) a :class:`ScoreConfig` from parsed CLI flags (``--dtype float64``
    also turns on ``jax_enable_x64`` for this process).

    Raises:
        ValueError: a flag value :class:`ScoreConfig` rejects (names the value and what is allowed).
    """
    dtype = getattr(args, "dtype", "float32")
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    return ScoreConfig(dataset=args.dataset, batch_size=args.batch_size, seed=args.seed,
                       eps=tuple(args.eps), betas=tuple(args.beta), pgd_steps=args.pgd_steps,
                       output_mode=args.output_mode, bn_mode=args.bn_mode, C=args.C, N=args.N,
                       chunk_size=args.chunk_size, dtype=dtype)


def select_indices(args: argparse.Namespace, space: SearchSpace) -> list[int]:
    """Architectures from ``--arch`` (index or arch string; repeatable), ``--archs-file`` (one
    per line), ``--sample N`` (random representatives, ``--seed``) or ``--all`` (6,466
    representatives).

    Raises:
        ValueError: none or several selectors, bad entries.
    """
    chosen = [bool(args.arch), bool(args.archs_file), args.sample is not None, bool(args.all)]
    if sum(chosen) != 1:
        raise ValueError("choose exactly one of --arch, --archs-file, --sample N, --all")
    if args.all:
        return list(space.representatives)
    if args.sample is not None:
        return sample_indices(space, args.sample, args.seed)
    items = list(args.arch or [])
    if args.archs_file:
        p = Path(args.archs_file)
        if not p.is_file():
            raise FileNotFoundError(f"--archs-file {p} not found")
        items = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return [space.resolve(a) for a in items]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``robntk score``."""
    sel = p.add_argument_group("architectures")
    sel.add_argument("--arch", action="append", help="NB201 index or arch string (repeatable)")
    sel.add_argument("--archs-file", help="file with one index or arch string per line")
    sel.add_argument("--sample", type=int, help="random sample of N representatives (uses --seed)")
    sel.add_argument("--all", action="store_true", help="all 6,466 isomorphism-class representatives")
    add_config_arguments(p)
    p.add_argument("--out", required=True, help="output .csv or .parquet (config in OUT.json)")
    p.add_argument("--engine", choices=("auto", "dedicated", "supernet"), default="auto",
                   help="dedicated: one compile per arch; supernet: one compile for all (auto: --all, --shard "
                        "or >= 8 archs)")
    p.add_argument("--no-progress", action="store_true")
    from .engine import add_engine_arguments

    add_engine_arguments(p)


def run(args: argparse.Namespace) -> int:
    """``robntk score``: write one row per arch to ``--out`` (+ JSON sidecar)."""
    cfg = config_from_args(args)
    space = SearchSpace.load(args.data_dir)
    indices = select_indices(args, space)
    if not str(args.out).endswith((".csv", ".parquet")):
        raise ValueError(f"--out must end in .csv or .parquet, got {args.out!r}")
    from . import engine

    if engine.wants_engine(args, len(indices)):
        return engine.score_with_engine(args, cfg, indices, space)
    df = run_score(indices, cfg, args.out, data_dir=args.data_dir, space=space, progress=not args.no_progress)
    print(f"wrote {len(df)} rows to {args.out} (config {sidecar_path(args.out)})")
    return 0
