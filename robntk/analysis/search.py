"""Architecture search on the NAS-RobBench-201 table (tabular NAS: a query is a table lookup).

Methods (:data:`METHODS`), all maximising one benchmark metric (the *search criterion*, e.g.
CIFAR-10 clean ``val_acc`` or PGD-8 ``val_pgd_8.0_acc``; :data:`CRITERIA`):

* ``random``: random search; architectures drawn uniformly from the 6,466 isomorphism classes
  without replacement.
* ``rea``: regularised (aging) evolution, Real et al., AAAI 2019, Algorithm 1, with NB201's REA
  baseline settings (population 10, sample size 3; the defaults of
  github.com/D-X-Y/AutoDL-Projects ``exps/NATS-algos/regularized_ea.py``). The initial population
  is drawn like ``random``. Mutation as there: a node (1, 2, 3) uniformly, one of its incoming
  edges uniformly, a new op uniformly among the 4 others. Tournament: ``sample_size`` members
  drawn uniformly with replacement, the best is the parent; the oldest member dies.
* ``ls``: local search (White, Nolen, Savani, "Exploring the loss landscape in NAS", UAI 2021,
  the NB201 version of github.com/naszilla/naszilla): ``ls_num_init`` random architectures
  (default 10), then from the best: query its neighbourhood (NB201 neighbourhood = the 24 cells
  that differ in one edge op, :meth:`Landscape.neighbours`), in random order; with
  ``ls_full_nbhd`` (default) the whole neighbourhood, then move to the best neighbour if it is
  better; otherwise move at the first improvement. At a local optimum restart from
  ``ls_num_init`` new random architectures.
* ``tf``: training-free search: rank a candidate pool by a training-free score (a Series keyed
  by representative ``nb201_index``, higher = better, e.g. a column of a scores table or a
  :mod:`robntk.analysis.combine` combination) and query the top ones in order. The pool is every class
  with a finite score (``tf_pool=None``) or, per seed, a uniform random subset of ``tf_pool``
  of them (NASWOT-style: Mellor et al., ICML 2021, N sampled candidates); ties in the
  score are broken by a seeded random key.
* ``predictor``: predictor-guided search (few-shot, :mod:`robntk.analysis.predictors`) with a
  zero-shot warm start, in the spirit of BANANAS / NAS with predictors (White, Neiswanger,
  Savani, AAAI 2021; here a random forest instead of an ensemble of MLPs): query the
  ``pred_init`` best classes by a training-free score (the ``tf`` order), then repeatedly fit an
  extra-trees regressor (:func:`robntk.analysis.predictors.make_model`, ``max_features=1.0``,
  ``min_samples_leaf=1``, ``pred_trees`` trees, seeded; target: percentile rank of the queried
  criterion values) on every class queried so far and query the unqueried classes it predicts
  best, ``max(pred_batch, ⌊pred_growth × queried⌋)`` per refit (refits get rarer as labels
  grow, keeping runs cheap; ties broken by a seeded random key). Features: a table indexed by
  representative (:func:`robntk.analysis.cell_features.feature_table`: proxies + one-hot + GRAF);
  only classes in it are candidates. The fixed hyper-parameters are not tuned per refit.

Query counting rule: a query is counted per isomorphism class. The first query of any member of
a class costs one query and records the class representative; querying the same cell or any
cell isomorphic to an already queried one again is free (its value is cached), because
NAS-RobBench-201 holds one value per class. The budget is the number of distinct classes queried.

Result of a run (:class:`SearchResult`): for every seed the sequence of queried representatives
(``queried``, int64 (n_seeds, budget), -1 after the end if a method stopped early). The
architecture a method returns after t queries is the best queried one by the search criterion
(earliest on ties); :func:`robntk.analysis.search_curves.incumbents` computes it for every t, and
:func:`robntk.analysis.search_curves.curves` reports its value under any metric (e.g. search by
clean accuracy, report PGD-8 accuracy).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from robntk.core.config import flag
from robntk.core.registry import BENCH_DATASETS, check_seed
from robntk.data.benchmark import RobBench
from robntk.nb201.searchspace import EDGES, NUM_ARCHS, NUM_EDGES, NUM_UNIQUE, OP_ID, OPS, parse_arch_str

METHODS: tuple[str, ...] = ("random", "rea", "ls", "tf", "predictor")
#: Methods run by default by ``robntk search`` (``predictor`` needs a feature table: ask for it).
DEFAULT_METHODS: tuple[str, ...] = ("random", "rea", "ls", "tf")
#: Search-criterion aliases → benchmark metric names.
CRITERIA: dict[str, str] = {"clean": "val_acc", "robust": "val_pgd_8.0_acc"}
#: Benchmark optimum, CIFAR-10 PGD-8 (NB201 index, accuracy), from NAS-RobBench-201.
OPTIMUM_CIFAR10_PGD8: tuple[int, float] = (2581, 0.4811)


class _BudgetExhausted(Exception):
    pass


# --------------------------------------------------------------------------- the table as a landscape
class Landscape:
    """Benchmark values over all 15,625 cells, the isomorphism map and the NB201 neighbourhood.

    Attributes:
        ops: int8 (15,625, 6) op ids (:data:`robntk.nb201.searchspace.OP_ID`) per NB201 index.
        rep: int64 (15,625,) representative of every cell.
        representatives: int64 (6,466,) sorted representatives.
        dataset: the dataset of the metric values.

    Args:
        bench: the benchmark (its search space provides the arch strings).
        dataset: dataset whose metrics are searched/reported (e.g. ``'cifar10'``).

    Raises:
        ValueError: unknown dataset.
    """

    def __init__(self, bench: RobBench, dataset: str = "cifar10"):
        bench.column(dataset, bench.metrics[0])  # validates the dataset
        self.bench = bench
        self.dataset = dataset
        space = bench.space
        self.ops = np.array([[OP_ID[o] for o in parse_arch_str(s)] for s in space.arch_strs], dtype=np.int8)
        self.rep = np.asarray(bench.isomorph, dtype=np.int64)
        self.representatives = np.flatnonzero(self.rep == np.arange(NUM_ARCHS))
        code = self.ops.astype(np.int64) @ (5 ** np.arange(NUM_EDGES)[::-1])
        self._by_code = np.full(5**NUM_EDGES, -1, dtype=np.int64)
        self._by_code[code] = np.arange(NUM_ARCHS)
        self._values: dict[str, np.ndarray] = {}
        # edges into node 1, 2, 3 (AutoDL mutation: a node, then one of its incoming edges)
        self._node_edges = [[e for e, (_, d) in enumerate(EDGES) if d == node] for node in (1, 2, 3)]

    def metric(self, name: str) -> np.ndarray:
        """float64 (15,625,) values of a metric (criterion alias or benchmark metric name) per cell.

        Raises:
            ValueError: unknown metric (lists the allowed names).
        """
        m = CRITERIA.get(name, name)
        if m not in self._values:
            self._values[m] = self.bench.values(np.arange(NUM_ARCHS), self.dataset, m)
        return self._values[m]

    def index_of_ops(self, ops: np.ndarray) -> int:
        """NB201 index of 6 op ids."""
        return int(self._by_code[int(np.dot(ops.astype(np.int64), 5 ** np.arange(NUM_EDGES)[::-1]))])

    def neighbours(self, cell: int) -> np.ndarray:
        """The 24 NB201 indices that differ from ``cell`` in exactly one edge op (edge-major, op order)."""
        base = self.ops[cell]
        out = []
        for e in range(NUM_EDGES):
            for o in range(len(OPS)):
                if o != base[e]:
                    x = base.copy()
                    x[e] = o
                    out.append(self.index_of_ops(x))
        return np.asarray(out, dtype=np.int64)

    def mutate(self, cell: int, rng: np.random.Generator) -> int:
        """One random mutation (AutoDL-Projects' ``mutate_arch_func``): node uniform in 1..3, one
        of its incoming edges uniform, a new op uniform among the other 4."""
        edges = self._node_edges[int(rng.integers(3))]
        e = edges[int(rng.integers(len(edges)))]
        x = self.ops[cell].copy()
        new = int(rng.integers(len(OPS) - 1))
        x[e] = new if new < x[e] else new + 1
        return self.index_of_ops(x)


class Oracle:
    """Counts benchmark queries under the isomorphism rule (module docstring) and caches values.

    Args:
        values: float64 (15,625,) criterion value per cell.
        rep: int64 (15,625,) representative per cell.
        budget: maximum number of distinct classes to query.
    """

    def __init__(self, values: np.ndarray, rep: np.ndarray, budget: int):
        self.values, self.rep, self.budget = values, rep, budget
        self.history: list[int] = []
        self._seen: set[int] = set()

    def seen(self, cell: int) -> bool:
        """Whether the class of ``cell`` was queried already (a repeat is free)."""
        return int(self.rep[cell]) in self._seen

    def query(self, cell: int) -> float:
        """Criterion value of ``cell``; counts one query if its class is new.

        Raises:
            _BudgetExhausted: the class is new and the budget is spent (ends the run).
        """
        r = int(self.rep[cell])
        if r not in self._seen:
            if len(self.history) >= self.budget:
                raise _BudgetExhausted
            self._seen.add(r)
            self.history.append(r)
        return float(self.values[cell])


# --------------------------------------------------------------------------- methods
def _random_unseen(land: Landscape, oracle: Oracle, rng: np.random.Generator) -> int:
    """A uniformly random representative not queried yet (rejection, then exhaustive fallback)."""
    reps = land.representatives
    for _ in range(64):
        c = int(reps[rng.integers(reps.size)])
        if not oracle.seen(c):
            return c
    left = np.setdiff1d(reps, np.fromiter(oracle._seen, np.int64), assume_unique=True)
    if left.size == 0:
        raise _BudgetExhausted
    return int(left[rng.integers(left.size)])


def random_search(land: Landscape, oracle: Oracle, rng: np.random.Generator, cfg: SearchConfig) -> None:
    """Random search: query uniformly random unqueried classes until the budget is spent."""
    order = rng.permutation(land.representatives)
    for c in order:
        oracle.query(int(c))


def regularized_evolution(land: Landscape, oracle: Oracle, rng: np.random.Generator, cfg: SearchConfig) -> None:
    """Regularised (aging) evolution (Real et al. 2019, Algorithm 1; AutoDL-Projects' NB201 REA).

    The population holds cells (not classes: isomorphic cells mutate differently); a child whose
    class was queried before costs nothing and still joins the population. Stops after
    ``cfg.max_steps_factor × budget`` cycles even if the budget is not spent.
    """
    pop: list[tuple[int, float]] = []
    while len(pop) < cfg.population:
        c = _random_unseen(land, oracle, rng)
        pop.append((c, oracle.query(c)))
    for _ in range(cfg.max_steps_factor * oracle.budget):
        picks = rng.integers(len(pop), size=cfg.sample_size)
        parent = max((pop[i] for i in picks), key=lambda t: t[1])[0]  # first of equal maxima
        child = land.mutate(parent, rng)
        pop.append((child, oracle.query(child)))
        pop.pop(0)


def local_search(land: Landscape, oracle: Oracle, rng: np.random.Generator, cfg: SearchConfig) -> None:
    """Local search with restarts (White et al. 2021; naszilla's NB201 local search)."""
    while True:
        init = []
        for _ in range(cfg.ls_num_init):
            c = _random_unseen(land, oracle, rng)
            init.append((c, oracle.query(c)))
        cur, val = max(init, key=lambda t: t[1])
        while True:
            nbhd = rng.permutation(land.neighbours(cur))
            best, best_val = cur, val
            for n in nbhd:
                v = oracle.query(int(n))
                if v > best_val:
                    best, best_val = int(n), v
                    if not cfg.ls_full_nbhd:
                        break
            if best == cur:
                break  # local optimum: restart
            cur, val = best, best_val


def training_free_search(
    land: Landscape, oracle: Oracle, rng: np.random.Generator, cfg: SearchConfig, score: pd.Series
) -> None:
    """Query the pool's architectures in decreasing training-free score (ties: seeded random key)."""
    s = score.to_numpy(np.float64)
    keys = score.index.to_numpy(np.int64)
    ok = np.isfinite(s)
    keys, s = keys[ok], s[ok]
    if cfg.tf_pool is not None and cfg.tf_pool < keys.size:
        pick = np.sort(rng.choice(keys.size, size=cfg.tf_pool, replace=False))
        keys, s = keys[pick], s[pick]
    order = np.lexsort((rng.random(keys.size), -s))
    for c in keys[order]:
        oracle.query(int(c))


def predictor_search(
    land: Landscape,
    oracle: Oracle,
    rng: np.random.Generator,
    cfg: SearchConfig,
    score: pd.Series,
    features: pd.DataFrame,
) -> None:
    """Predictor-guided search with a zero-shot warm start (module docstring, ``predictor``)."""
    from robntk.analysis.predictors import make_model

    keys = features.index.to_numpy(np.int64)
    x = features.to_numpy(np.float64)
    s = score.reindex(keys).to_numpy(np.float64)
    s = np.where(np.isfinite(s), s, -np.inf)
    warm = np.lexsort((rng.random(keys.size), -s))[: cfg.pred_init]
    asked = np.zeros(keys.size, dtype=bool)
    pos: list[int] = []
    vals: list[float] = []

    def ask(i: int) -> None:
        v = oracle.query(int(keys[i]))
        asked[i] = True
        pos.append(int(i))
        vals.append(v if math.isfinite(v) else -np.inf)

    for i in warm:
        ask(int(i))
    while not asked.all():
        left = np.flatnonzero(~asked)
        y = pd.Series(vals).rank(method="average", pct=True).to_numpy()
        params = {"max_features": 1.0, "min_samples_leaf": 1}
        model = make_model("extra_trees", params, cfg.pred_trees, int(rng.integers(2**31 - 1)))
        pred = model.fit(x[pos], y).predict(x[left])
        batch = max(cfg.pred_batch, int(cfg.pred_growth * len(pos)))
        for j in np.lexsort((rng.random(left.size), -pred))[:batch]:
            ask(int(left[j]))


_METHOD_FN: dict[str, Callable] = {
    "random": random_search,
    "rea": regularized_evolution,
    "ls": local_search,
    "tf": training_free_search,
    "predictor": predictor_search,
}


# --------------------------------------------------------------------------- runs
#: Most runs per method and criterion (``--seeds``): the queried classes are one int64
#: (n_seeds, budget) array per run.
MAX_SEEDS = 10_000


@dataclass(frozen=True)
class SearchConfig:
    """Settings of a search run (defaults stated in the module docstring).

    Attributes:
        budget: queries (distinct isomorphism classes) per run, ≥ 1.
        n_seeds: independent runs; seed ``seed + s`` for run s.
        seed: first seed.
        dataset: benchmark dataset searched (criterion and reported metrics).
        population, sample_size: REA population and tournament size (NB201: 10, 3).
        max_steps_factor: REA stops after this many × budget cycles (repeats are free).
        ls_num_init: random architectures before each local-search (re)start.
        ls_full_nbhd: local search queries the whole neighbourhood before moving (else first improvement).
        tf_pool: training-free search pool size per seed (None: every scored class).
        pred_init: predictor search: warm-start queries taken in training-free score order.
        pred_batch, pred_growth: predictor search: queries per refit are
            ``max(pred_batch, ⌊pred_growth × queried⌋)``.
        pred_trees: predictor search: trees of the extra-trees model.

    Raises:
        ValueError (:meth:`validate`): a value outside its range — budget, population,
        ls_num_init and tf_pool ≤ 6,466 distinct architectures, sample_size ≤ population,
        n_seeds ≤ :data:`MAX_SEEDS`, seed in [0, 2**32 − 1].
    """

    budget: int = field(default=1000, metadata=flag("queries per run (distinct architectures)"))
    n_seeds: int = field(default=100, metadata=flag("runs per method and criterion", flag="--seeds", metavar="SEEDS"))
    seed: int = field(default=0, metadata=flag("first seed"))
    dataset: str = field(default="cifar10", metadata=flag("benchmark dataset"))
    population: int = field(default=10, metadata=flag("REA population (NB201: 10)"))
    sample_size: int = field(default=3, metadata=flag("REA tournament size (NB201: 3)"))
    max_steps_factor: int = 50
    ls_num_init: int = field(default=10, metadata=flag("local search: random archs per (re)start"))
    ls_full_nbhd: bool = field(
        default=True,
        metadata=flag(
            "local search moves at the first better neighbour (default: whole neighbourhood)",
            flag="--ls-first-improvement",
            action="store_false",
        ),
    )
    tf_pool: int | None = field(
        default=None, metadata=flag("tf: random pool size per seed (default: all scored archs)")
    )

    pred_init: int = field(default=10, metadata=flag("predictor: warm-start queries in zero-shot score order"))
    pred_batch: int = field(default=10, metadata=flag("predictor: fewest queries between refits"))
    pred_growth: float = field(
        default=0.1, metadata=flag("predictor: queries between refits as a fraction of those made (≥ --pred-batch)")
    )
    pred_trees: int = field(default=50, metadata=flag("predictor: trees of the extra-trees model"))

    def __post_init__(self):
        self.validate()

    def validate(self) -> SearchConfig:
        """Check the values (also run at construction).

        Raises:
            ValueError: naming the bad field and the allowed range.
        """
        if self.dataset not in BENCH_DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; allowed: {', '.join(BENCH_DATASETS)}")
        for name, lo in (
            ("budget", 1),
            ("n_seeds", 1),
            ("population", 1),
            ("sample_size", 1),
            ("max_steps_factor", 1),
            ("ls_num_init", 1),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an int ≥ {lo}, got {v!r}")
        if self.budget > 6466:
            raise ValueError(f"budget must be ≤ 6466 (the number of distinct architectures), got {self.budget}")
        for name in ("population", "ls_num_init"):  # random distinct classes drawn before any step
            if getattr(self, name) > NUM_UNIQUE:
                raise ValueError(
                    f"{name} must be ≤ {NUM_UNIQUE} (the number of distinct architectures), got {getattr(self, name)}"
                )
        if self.sample_size > self.population:
            raise ValueError(
                f"sample_size (the REA tournament, --sample-size) must be ≤ population "
                f"(--population {self.population}), got {self.sample_size}"
            )
        if self.n_seeds > MAX_SEEDS:
            raise ValueError(
                f"n_seeds (--seeds) must be ≤ {MAX_SEEDS} (one int64 budget-long row per run), got {self.n_seeds}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        check_seed(self.seed, "seed")
        for name in ("pred_init", "pred_batch", "pred_trees"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an int ≥ 1, got {v!r}")
        if self.pred_init > NUM_UNIQUE:
            raise ValueError(
                f"pred_init must be ≤ {NUM_UNIQUE} (the number of distinct architectures), got {self.pred_init}"
            )
        g = self.pred_growth
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0.0 <= g <= 10.0:
            raise ValueError(f"pred_growth must be a number in [0, 10], got {g!r}")
        if self.tf_pool is not None and (
            isinstance(self.tf_pool, bool) or not isinstance(self.tf_pool, (int, np.integer)) or self.tf_pool < 1
        ):
            raise ValueError(f"tf_pool must be None or an int ≥ 1, got {self.tf_pool!r}")
        if self.tf_pool is not None and self.tf_pool > NUM_UNIQUE:
            raise ValueError(
                f"tf_pool must be ≤ {NUM_UNIQUE} (the number of distinct architectures; leave it out "
                f"for every scored one), got {self.tf_pool}"
            )
        return self


@dataclass
class SearchResult:
    """Queried classes of every seed of one (method, criterion) run.

    Attributes:
        method, criterion: as run (criterion as given, e.g. 'robust').
        queried: int64 (n_seeds, budget) representatives in query order; -1 after an early stop.
        seeds: int64 (n_seeds,) the seeds.
        config: the :class:`SearchConfig`.
        score_name: name of the training-free score (``tf``; the warm start of ``predictor``).
    """

    method: str
    criterion: str
    queried: np.ndarray
    seeds: np.ndarray
    config: SearchConfig
    score_name: str | None = None

    @property
    def label(self) -> str:
        """``method`` (``tf:<score>`` for training-free search, ``predictor:<warm-start score>``)."""
        if self.method in ("tf", "predictor"):
            return f"{self.method}:{self.score_name}"
        return self.method


def run_search(
    method: str,
    land: Landscape,
    criterion: str = "robust",
    config: SearchConfig = SearchConfig(),
    score: pd.Series | None = None,
    progress: bool = True,
    features: pd.DataFrame | None = None,
) -> SearchResult:
    """Run one method for ``config.n_seeds`` seeds.

    Args:
        method: one of :data:`METHODS`.
        land: the :class:`Landscape`.
        criterion: metric maximised ('clean', 'robust' or a benchmark metric name).
        config: the settings.
        score: training-free score (``tf``, and the warm start of ``predictor``): Series indexed by
            ``nb201_index`` (deduplicated to representatives by the caller, e.g.
            :func:`robntk.analysis.combine.score_table`), higher = better.
        progress: tqdm bar over seeds.
        features: ``predictor`` only: float DataFrame (n_classes, k) indexed by representative
            ``nb201_index``, finite (e.g. :func:`robntk.analysis.cell_features.feature_table`).

    Returns:
        A :class:`SearchResult`. Same config → same bits.

    Raises:
        ValueError: unknown method/criterion, bad config, missing/invalid score for ``tf`` or
            ``predictor``, missing/invalid features for ``predictor``, features given to another method.
    """
    from tqdm.auto import tqdm

    if method not in METHODS:
        raise ValueError(f"unknown search method {method!r}; allowed: {', '.join(METHODS)}")
    config = config.validate()
    values = land.metric(criterion)
    extra = ()
    if method in ("tf", "predictor"):
        if not isinstance(score, pd.Series):
            raise ValueError(f"{method} search needs score= (a pandas Series keyed by nb201_index)")
        _check_rep_index(score.index, land, "score")
        extra = (score,)
    elif score is not None:
        raise ValueError(f"score= is only used by methods 'tf' and 'predictor', not {method!r}")
    if method == "predictor":
        if not isinstance(features, pd.DataFrame) or features.empty:
            raise ValueError("predictor search needs features= (a non-empty DataFrame keyed by nb201_index)")
        _check_rep_index(features.index, land, "features")
        x = features.to_numpy()
        if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x.astype(np.float64)).all():
            raise ValueError("features must be finite numbers (drop rows with missing proxies)")
        extra = (score, features)
    elif features is not None:
        raise ValueError(f"features= is only used by method 'predictor', not {method!r}")
    seeds = config.seed + np.arange(config.n_seeds, dtype=np.int64)
    out = np.full((config.n_seeds, config.budget), -1, dtype=np.int64)
    fn = _METHOD_FN[method]
    for s, seed in enumerate(tqdm(seeds, desc=f"{method}/{criterion}", disable=not progress, leave=False)):
        oracle = Oracle(values, land.rep, config.budget)
        try:
            fn(land, oracle, np.random.default_rng([int(seed), METHODS.index(method)]), config, *extra)
        except _BudgetExhausted:
            pass
        out[s, : len(oracle.history)] = oracle.history
    name = None if score is None else str(score.name)
    return SearchResult(method, criterion, out, seeds, config, name)


def _check_rep_index(index: pd.Index, land: Landscape, what: str) -> None:
    idx = index.to_numpy()
    if not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= NUM_ARCHS:
        raise ValueError(f"{what} index must be NB201 indices 0..{NUM_ARCHS - 1}")
    if (land.rep[idx] != idx).any():
        bad = idx[land.rep[idx] != idx][:3]
        raise ValueError(f"{what} index must hold representatives only (deduplicate first), e.g. {list(bad)}")


def config_dict(cfg: SearchConfig) -> dict:
    """The config as a plain dict (for JSON)."""
    return dataclasses.asdict(cfg)
