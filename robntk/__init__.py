"""robntk: training-free NTK scores and zero-cost proxies for robust NAS on NAS-Bench-201 /
NAS-RobBench-201, in JAX.

Data flows one way::

    searchspace → network → attacks → ntk / layer_ntk → kernels → spectra → scoring → engine
    → commands (robntk score | correlate | reproduce | merge | report | search | ...)

with training (optim, rundir, training), evaluation (evaluation, autoattack), search (search,
combine), the benchmark analyses (report) and the theory module beside it. The curated public
API is re-exported here::

    from robntk import TinyNetwork, kernel_family, spectrum, SearchSpace, RobBench
"""

from robntk._version import __version__

from robntk.attacks.iterative import fgsm, pgd  # noqa: E402
from robntk.data.benchmark import RobBench  # noqa: E402
from robntk.analysis.correlation import bootstrap_ci, correlation_table, kendall_tau, spearman_rho  # noqa: E402
from robntk.data.datasets import fixed_batch, load_dataset  # noqa: E402
from robntk.scoring.engine import Engine, EngineOptions, run_engine  # noqa: E402
from robntk.ntk.kernels import KernelFamily, kernel_families, kernel_family, mixed_kernel, stacked_gram  # noqa: E402
from robntk.nb201.network import NetworkFn, TinyNetwork, op_ids  # noqa: E402
from robntk.ntk.empirical import empirical_ntk  # noqa: E402
from robntk.scoring.config import ScoreConfig  # noqa: E402
from robntk.nb201.searchspace import SearchSpace  # noqa: E402
from robntk.ntk.spectra import Spectrum, spectrum  # noqa: E402

__all__ = [
    "Engine", "EngineOptions", "KernelFamily", "NetworkFn", "RobBench", "ScoreConfig", "SearchSpace", "Spectrum",
    "TinyNetwork", "bootstrap_ci", "correlation_table", "empirical_ntk", "fgsm", "fixed_batch", "kendall_tau",
    "kernel_families", "kernel_family", "load_dataset", "mixed_kernel", "op_ids", "pgd", "run_engine",
    "spearman_rho", "spectrum", "stacked_gram",
]
