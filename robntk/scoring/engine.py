"""Benchmark-scale scoring: every architecture through ONE compiled function, into one store.

The cell is data: :class:`robntk.nb201.network.TinyNetwork` takes the 6 op ids as a traced int array,
so the kernel family (:func:`robntk.ntk.kernels.kernel_families`, with the per-layer-gradient NTK of
:mod:`robntk.ntk.layerwise` by default) is compiled once per configuration and then run for every
arch, whether one arch is scored or all 6,466. This is the only scoring driver: the same arch
and seed give the same row whichever selection it is scored in. Pieces:

* :class:`Engine` — the compiled kernel function of a :class:`~robntk.scoring.config.ScoreConfig`:
  ``A`` archs per call, either through :func:`jax.lax.map` (``batching='map'``: the per-edge
  ``lax.switch`` stays a conditional, only the chosen ops' FLOPs run — the CPU default; one
  arch per call runs with no loop at all, because XLA:CPU runs gradient convolutions several
  times slower inside a ``while`` loop, see :func:`robntk.ntk.empirical.unrolled_map`) or
  :func:`jax.vmap` (``'vmap'``: the switch becomes a select, all ops are computed for every
  arch, archs run in parallel — the accelerator default). With several local devices the arch
  axis is sharded over a 1-D mesh with :func:`jax.shard_map`. ``A`` is chosen from a memory
  budget (XLA's compiled memory analysis of a one-arch program); an XLA ``RESOURCE_EXHAUSTED``
  error halves ``A`` with a warning and retries, down to one arch per device.
* :mod:`robntk.jobs.store` — an append-only, crash-safe directory of JSON-lines chunks keyed by
  ``nb201_index``; a resumed run skips the archs already stored; ``--shard K/N`` partitions the
  arch list; :func:`robntk.jobs.store.merge_stores` / ``robntk merge`` combine shards.
* :func:`robntk.scoring.runner.run_engine` — score a list of NB201 indices into a store, with a
  tqdm progress bar (rate and ETA), then export what the store holds as CSV/parquet + JSON
  sidecar (:mod:`robntk.scoring.runner`).

Initialisation. "Seed s" is ``TinyNetwork.init(PRNGKey(s))`` (:mod:`robntk.nb201.network`; an arch's
weights are the sub-tree :meth:`~robntk.nb201.network.TinyNetwork.extract`); the attack key is
``PRNGKey(a + 1)`` with a = ``cfg.attack_key_seed`` (the attack seed, default s).

SLURM job arrays: ``experiments/slurm/`` (``--shard K/N`` per task, then ``robntk merge``).
A pre-empted or killed task is simply resubmitted: it resumes from its store.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from robntk.core import compile_cache
from robntk.nb201.cell import check_op_ids, op_ids
from robntk.nb201.network import NetworkFn, TinyNetwork
from robntk.nb201.searchspace import is_connected
from robntk.ntk import kernels
from robntk.ntk.empirical import IMPLEMENTATIONS  # the one table of NTK implementations
from robntk.scoring import config as scoring
from robntk.scoring.config import ScoreConfig

BATCHINGS = ("auto", "map", "vmap")


# --------------------------------------------------------------------------- options
@dataclass(frozen=True)
class EngineOptions:
    """How the engine runs (does not change the scores, except float rounding between
    implementations).

    Attributes:
        implementation: NTK provider of :func:`robntk.ntk.kernels.stacked_gram`: ``'auto'`` /
            ``'layerwise'`` (per-layer gradients, both BN modes), ``'jacobian'``, ``'ntvp'``.
        batching: ``'map'`` | ``'vmap'`` | ``'auto'`` (map on CPU, vmap on accelerators).
        archs_per_call: archs per device per call; None = from the memory budget (1 on CPU).
        memory_budget: bytes per device for one call; None = 70% of the accelerator's memory or
            40% of host RAM on CPU.
        max_archs_per_call: cap of the automatic choice.
        flush_seconds: write a chunk to the store at least this often (0 = after every call).
        pgd_unroll: unroll the PGD steps in the compiled function (:func:`robntk.attacks.iterative.pgd`):
            the same iterations, faster attacks on XLA:CPU for a longer one-off compile (cached
            per machine, :mod:`robntk.core.compile_cache`). The rolled program (False) rounds
            differently, and PGD's ``sign`` of near-zero gradient entries turns that into
            different perturbed batches: the clean kernel agrees to float32 rounding, the robust
            kernels only as between machines; the committed stores were scored unrolled.
    """

    implementation: str = field(default="auto", metadata={"help": "NTK provider", "choices": IMPLEMENTATIONS})
    batching: str = field(
        default="auto", metadata={"help": "archs per call via lax.map or vmap (auto: map on CPU)", "choices": BATCHINGS}
    )
    archs_per_call: int | None = field(default=None, metadata={"help": "archs per device per call (default: auto)"})
    memory_budget: float | None = field(default=None, metadata={"help": "bytes per device for one call"})
    max_archs_per_call: int = field(default=64, metadata={"help": "cap of the automatic archs per call"})
    flush_seconds: float = field(default=30.0, metadata={"help": "store flush interval (s)"})
    pgd_unroll: bool = field(
        default=True, metadata={"help": "unroll the PGD steps (faster attacks on CPU for a longer, cached compile)"}
    )

    def __post_init__(self):
        if self.implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {self.implementation!r}")
        if self.batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {BATCHINGS}, got {self.batching!r}")
        if self.archs_per_call is not None and (not isinstance(self.archs_per_call, int) or self.archs_per_call < 1):
            raise ValueError(f"archs_per_call must be a positive int or None, got {self.archs_per_call!r}")
        if not isinstance(self.max_archs_per_call, int) or self.max_archs_per_call < 1:
            raise ValueError(f"max_archs_per_call must be a positive int, got {self.max_archs_per_call!r}")
        if self.memory_budget is not None and not self.memory_budget > 0:
            raise ValueError(f"memory_budget must be > 0 bytes, got {self.memory_budget!r}")
        if not self.flush_seconds >= 0:
            raise ValueError(f"flush_seconds must be >= 0, got {self.flush_seconds!r}")


def _program_bytes(compiled) -> float:
    """Temp + output bytes XLA's memory analysis reports for a compiled program (0 where the
    backend has no analysis)."""
    try:
        m = compiled.memory_analysis()
        return float(m.temp_size_in_bytes + m.output_size_in_bytes)
    except Exception:  # noqa: BLE001 — backends without memory analysis
        return 0.0


def is_resource_exhausted(exc: BaseException) -> bool:
    """True for XLA out-of-memory errors (``RESOURCE_EXHAUSTED``)."""
    return isinstance(exc, (jax.errors.JaxRuntimeError, RuntimeError, MemoryError)) and (
        isinstance(exc, MemoryError) or "RESOURCE_EXHAUSTED" in str(exc) or "Out of memory" in str(exc)
    )


# --------------------------------------------------------------------------- engine
class Engine:
    """One compiled kernel function for every arch of a configuration.

    Args:
        cfg: the score configuration.
        options: :class:`EngineOptions`.
        devices: local devices to use (default all ``jax.local_devices()``).

    Attributes:
        net: the :class:`~robntk.nb201.network.TinyNetwork`. variables: its init for ``cfg.seed``.
        implementation, batching: resolved choices. archs_per_call: current archs per device.
        trace_count: how often the kernel function was traced (1 per distinct call shape).
        compile_s: seconds spent obtaining compiled programs so far (tracing, lowering and
            compiling, or loading them from the cache); compile_cpu_s: the process's CPU
            seconds in the same spans (all threads; steadier than wall time on a shared machine).
        jax_cache_hits: programs traced and lowered but loaded from JAX's persistent cache.

    The persistent compilation cache is turned on here for the process (once; see
    :mod:`robntk.core.compile_cache`: ``ROBNTK_COMPILE_CACHE=DIR|off``, default the user cache
    directory), so a configuration is compiled once per machine.

    Raises:
        ValueError: bad options, float64 without x64.
    """

    def __init__(self, cfg: ScoreConfig, options: EngineOptions = EngineOptions(), devices=None):
        compile_cache.enable()  # once per process; a choice made before (CLI flag, enable(...)) is kept
        self.cfg = cfg
        self.options = options
        self.devices = list(devices) if devices is not None else jax.local_devices()
        self.dtype = cfg.jax_dtype()
        self.net = TinyNetwork.for_dataset(cfg.dataset, cfg.C, cfg.N, cfg.init_scheme)
        self.variables = self.net.init(jax.random.PRNGKey(cfg.seed), self.dtype)
        self.key = jax.random.PRNGKey(cfg.attack_key_seed + 1)
        # the engine's function is always a NetworkFn, so 'auto' resolves to 'layerwise'
        self.implementation = "layerwise" if options.implementation == "auto" else options.implementation
        platform = self.devices[0].platform
        self.batching = options.batching if options.batching != "auto" else ("map" if platform == "cpu" else "vmap")
        self.archs_per_call = options.archs_per_call
        self.chunk_size = cfg.chunk_size  # None: all cotangents at once, unless the budget needs a chunk
        self.chunk_note: str | None = None
        self.trace_count = 0
        self.compile_s = 0.0
        self.compile_cpu_s = 0.0
        self.jax_cache_hits = 0
        self._compiled: dict[tuple, Any] = {}
        self._placed = None
        self._mesh = None
        if len(self.devices) > 1:
            from jax.sharding import Mesh

            self._mesh = Mesh(np.array(self.devices), ("archs",))

    # ------------------------------------------------------------------ the traced function
    def _one(self, params, stats, x, y, key, ids):
        """Named kernels of one arch (traced): dict name → (B, B) or (B, B, O, O)."""
        cfg = self.cfg
        f = NetworkFn(self.net, ids, stats, cfg.bn_mode == "train")
        fams = kernels.kernel_families(
            f,
            params,
            x,
            y,
            cfg.eps,
            key=key,
            steps=cfg.pgd_steps,
            output_mode=cfg.output_mode,
            implementation=self.implementation,
            chunk_size=self.chunk_size,
            attack_f=f.with_bn_mode(cfg.attack_mode),
            unroll=True if self.options.pgd_unroll else 1,
        )
        return kernels.named_kernels(fams, cfg.eps, cfg.betas)

    def _batched(self, params, stats, x, y, key, ids):
        """Kernels of a block of archs ids (A, 6): dict name → (A, ...)."""
        self.trace_count += 1  # Python side effect: runs once per trace, never at run time
        one = lambda i: self._one(params, stats, x, y, key, i)
        if self.batching == "vmap":
            return jax.vmap(one)(ids)
        if (
            ids.shape[0] == 1
        ):  # no loop at all: XLA:CPU runs gradients slower inside a while loop (benchmarks/RESULTS.md §5)
            return jax.tree_util.tree_map(lambda a: a[None], one(ids[0]))
        return jax.lax.map(one, ids)

    def _function(self, n_total: int):
        """Compiled function for ``n_total`` archs per call (all devices together); the first
        compile also fixes the Jacobian chunk (:meth:`_fit_chunk`)."""
        key = (n_total,)
        if key not in self._compiled:
            compiled = self._compile(n_total)
            if self.cfg.chunk_size is None and self.chunk_note is None:
                compiled = self._fit_chunk(n_total, compiled)
            self._compiled[key] = compiled
        return self._compiled[key]

    def _compile(self, n_total: int):
        """Trace, lower and compile the kernel program for ``n_total`` archs per call."""
        if self._mesh is None:
            fn = jax.jit(self._batched)
        else:
            from jax.sharding import PartitionSpec as P

            rep = P()
            fn = jax.jit(
                jax.shard_map(
                    self._batched,
                    mesh=self._mesh,
                    in_specs=(rep, rep, rep, rep, rep, P("archs")),
                    out_specs=P("archs"),
                    check_vma=False,
                )
            )
        args = self._args(np.zeros((n_total, 6), np.int32))
        t0, c0 = time.perf_counter(), time.process_time()
        with jax.default_matmul_precision("highest"):
            hits = compile_cache.counts()["hits"]
            compiled = fn.lower(*args).compile()
            self.jax_cache_hits += compile_cache.counts()["hits"] - hits
        self.compile_s += time.perf_counter() - t0
        self.compile_cpu_s += time.process_time() - c0
        return compiled

    def cotangents_per_batch(self) -> int | None:
        """Cotangents of one batch's Jacobian that ``chunk_size`` splits (B·O' with train-mode BN,
        O with eval-mode BN and the ``trace`` read-out), or None where chunking changes nothing
        (eval-mode BN with ``sum``/``label``/``full``: one backward pass per batch)."""
        cfg = self.cfg
        per_row = 1 if cfg.output_mode in ("sum", "label") else self.net.num_classes
        if cfg.bn_mode == "train":
            return cfg.batch_size * per_row
        return self.net.num_classes if cfg.output_mode == "trace" else None

    def _fit_chunk(self, n_total: int, compiled):
        """Memory without flags: when ``cfg.chunk_size`` is None and XLA's memory analysis of the
        compiled program (temp + output bytes) exceeds :meth:`memory_budget`, recompile with the
        largest power-of-two chunk that the linear estimate ``need·chunk/cotangents`` fits in the
        budget, halving until XLA's analysis agrees (or the chunk is 1). The choice is kept in
        :attr:`chunk_size`, said in a :class:`RuntimeWarning` and recorded in
        :meth:`compile_report` (the chunk changes the memory, not the arithmetic of a row). A
        chunked program that XLA does not estimate smaller than the unchunked one is not kept
        (on XLA:CPU the unrolled chunks add buffers, which outweighs the saving for small networks)."""
        total, budget = self.cotangents_per_batch(), self.memory_budget()
        need = _program_bytes(compiled)
        self.chunk_note = f"all cotangents at once ({need / 2**30:.2f} GiB, budget {budget / 2**30:.2f} GiB)"
        if total is None or total <= 1 or need <= budget:
            return compiled
        tried = {None: (need, compiled)}
        c = 1 << max(0, int(math.floor(math.log2(max(1.0, total * budget / need)))))
        c = min(c, total // 2) or 1
        while True:
            self.chunk_size = c
            program = self._compile(n_total)
            tried[c] = (_program_bytes(program), program)
            if tried[c][0] <= budget or c == 1:
                break
            c //= 2
        best = min(tried, key=lambda k: tried[k][0])  # a chunk whose program is not smaller is not kept
        self.chunk_size = best
        sizes = ", ".join(f"{k or 'none'}: {v[0] / 2**30:.2f}" for k, v in tried.items())
        self.chunk_note = (
            f"chunk_size={best} of {total} cotangents (XLA's estimate in GiB by chunk: {sizes}; "
            f"budget {budget / 2**30:.2f} GiB)"
        )
        warnings.warn(
            f"memory: {self.chunk_note} (--chunk-size fixes it, --memory-budget sets the budget)",
            RuntimeWarning,
            stacklevel=3,
        )
        return tried[best][1]

    def compile_report(self) -> dict[str, Any]:
        """How this engine got its programs (JSON-ready): ``compile_s``, ``compile_cpu_s``, ``traces``,
        ``chunk_size`` and ``chunk_note`` (the Jacobian chunk and why, :meth:`_fit_chunk`),
        ``jax_cache_hits`` (programs loaded from JAX's persistent cache), and the process's
        :func:`robntk.core.compile_cache.status` (directory, on/off, all hits and writes)."""
        return {
            "compile_s": round(self.compile_s, 3),
            "compile_cpu_s": round(self.compile_cpu_s, 3),
            "traces": self.trace_count,
            "chunk_size": self.chunk_size,
            "chunk_note": self.chunk_note,
            "jax_cache_hits": self.jax_cache_hits,
            **compile_cache.status(),
        }

    def _args(self, ids: np.ndarray):
        """Call arguments placed on the device(s): constants (params, stats, batch, key) once per
        batch, replicated over the mesh; the ids sharded along ``'archs'``."""
        if self._placed is None:
            consts = (self.variables["params"], self.variables.get("batch_stats"), self._x, self._y, self.key)
            if self._mesh is not None:
                from jax.sharding import NamedSharding
                from jax.sharding import PartitionSpec as P

                self._placed = jax.device_put(consts, NamedSharding(self._mesh, P()))
            else:
                self._placed = jax.device_put(consts, self.devices[0])
        if self._mesh is not None:
            from jax.sharding import NamedSharding
            from jax.sharding import PartitionSpec as P

            placed_ids = jax.device_put(jnp.asarray(ids), NamedSharding(self._mesh, P("archs")))
        else:
            placed_ids = jax.device_put(jnp.asarray(ids), self.devices[0])
        return (*self._placed, placed_ids)

    def set_batch(self, x, y) -> None:
        """Set the fixed input batch: x (B, H, W, 3) float in [0, 1], y int (B,).

        Raises:
            ValueError: shapes inconsistent with the config (batch size, labels).
        """
        scoring.check_batch(x, y, self.cfg.num_classes)
        x = jnp.asarray(x, self.dtype)
        y = jnp.asarray(y, jnp.int32)
        if x.shape[0] != self.cfg.batch_size:
            raise ValueError(f"batch has {x.shape[0]} images but cfg.batch_size is {self.cfg.batch_size}")
        old = getattr(self, "_x", None)
        if old is not None and (old.shape, old.dtype) != (x.shape, x.dtype):
            self._compiled.clear()  # compiled programs are specialised to the batch shape
        self._x, self._y = x, y
        self._placed = None

    # ------------------------------------------------------------------ memory budget
    def memory_budget(self) -> float:
        """Bytes per device one call may use (options, else 70% of accelerator memory, else 40%
        of host RAM divided among devices)."""
        if self.options.memory_budget is not None:
            return float(self.options.memory_budget)
        stats = self.devices[0].memory_stats() or {}
        if "bytes_limit" in stats:
            return 0.7 * stats["bytes_limit"]
        try:
            ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            ram = 8 << 30
        return 0.4 * ram / len(self.devices)

    def choose_archs_per_call(self) -> int:
        """Archs per device per call: the option if set; 1 with ``'map'`` batching (memory does
        not grow with A, and small calls checkpoint often); for ``'vmap'``, the per-device budget
        divided by the temp + output memory XLA reports for the (per-device) program with one
        arch per device, capped by ``max_archs_per_call`` (the fixed overhead in that figure makes
        the estimate conservative; an out-of-memory error still halves A)."""
        if self.archs_per_call is not None:
            return self.archs_per_call
        if self.batching == "map":
            self.archs_per_call = 1
            return 1
        D = len(self.devices)
        per = _program_bytes(self._function(D))
        a = self.options.max_archs_per_call if per <= 0 else int(self.memory_budget() // per)
        self.archs_per_call = int(max(1, min(self.options.max_archs_per_call, a)))
        return self.archs_per_call

    # ------------------------------------------------------------------ calls
    def kernels(self, ids) -> dict[str, np.ndarray]:
        """Kernel matrices of a block of archs, as host numpy arrays with a leading arch axis.

        Args:
            ids: int (A, 6) op ids (any A; padded to a multiple of the device count).

        Returns:
            dict name → (A, B, B) or (A, B, B, O, O).

        Raises:
            ValueError: invalid ids or no batch set. jax.errors.JaxRuntimeError: as raised by XLA
            (out-of-memory is handled by :meth:`score_block`).
        """
        if not hasattr(self, "_x"):
            raise ValueError("no input batch: call set_batch(x, y) first")
        ids = check_op_ids(np.atleast_2d(ids))
        A, D = ids.shape[0], len(self.devices)
        n = -(-A // D) * D
        if n != A:
            ids = np.concatenate([ids, np.repeat(ids[-1:], n - A, axis=0)])
        fn = self._function(n)
        with jax.default_matmul_precision("highest"):
            out = fn(*self._args(ids))
        return {k: np.asarray(v)[:A] for k, v in out.items()}

    def score_block(self, indices: Sequence[int], arch_strs: Sequence[str]) -> list[dict[str, Any]]:
        """Rows (see :mod:`robntk.scoring.config`) for a block of archs, degrading to smaller calls on
        out-of-memory (warning) instead of failing.

        Raises:
            RuntimeError: out of memory even with one arch per device (message suggests
                ``--chunk-size``).
        """
        rows: list[dict[str, Any]] = []
        D = len(self.devices)
        pos = 0
        while pos < len(indices):
            a = self.choose_archs_per_call() * D
            blk_i, blk_s = indices[pos : pos + a], arch_strs[pos : pos + a]
            c0 = self.compile_s
            t0 = time.perf_counter()
            try:
                mats = self.kernels(np.stack([op_ids(s) for s in blk_s]))
            except Exception as exc:  # noqa: BLE001 — only RESOURCE_EXHAUSTED is handled
                if not is_resource_exhausted(exc):
                    raise
                if self.archs_per_call <= 1:
                    raise RuntimeError(
                        f"out of memory with one arch per device ({exc.__class__.__name__}: {str(exc)[:200]}); "
                        "lower --chunk-size (Jacobian chunk) or --batch-size"
                    ) from exc
                new = max(1, self.archs_per_call // 2)
                warnings.warn(
                    f"out of memory with {self.archs_per_call} archs per device per call; retrying with {new}",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.archs_per_call = new
                continue
            compile_s = self.compile_s - c0
            run_s = (time.perf_counter() - t0 - compile_s) / len(blk_i)
            for j, (i, s) in enumerate(zip(blk_i, blk_s)):
                t1 = time.perf_counter()
                row = {"nb201_index": int(i), "arch_str": s, "disconnected": not is_connected(s)}
                row.update(scoring.spectra_row({k: v[j] for k, v in mats.items()}, self.cfg))
                row.update(compile_s=compile_s if j == 0 else 0.0, run_s=run_s, spectra_s=time.perf_counter() - t1)
                rows.append(row)
            pos += len(blk_i)
        return rows
