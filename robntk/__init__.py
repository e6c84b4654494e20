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

__version__ = "0.1.0"

from .attacks import fgsm, pgd  # noqa: E402
from .benchmark import RobBench  # noqa: E402
from .correlation import bootstrap_ci, correlation_table, kendall_tau, spearman_rho  # noqa: E402
from .datasets import fixed_batch, load_dataset  # noqa: E402
from .engine import Engine, EngineOptions, run_engine  # noqa: E402
from .kernels import KernelFamily, kernel_families, kernel_family, mixed_kernel, stacked_gram  # noqa: E402
from .network import NetworkFn, TinyNetwork, op_ids  # noqa: E402
from .ntk import empirical_ntk  # noqa: E402
from .scoring import ScoreConfig  # noqa: E402
from .searchspace import SearchSpace  # noqa: E402
from .spectra import Spectrum, spectrum  # noqa: E402

__all__ = [
    "Engine", "EngineOptions", "KernelFamily", "NetworkFn", "RobBench", "ScoreConfig", "SearchSpace", "Spectrum",
    "TinyNetwork", "bootstrap_ci", "correlation_table", "empirical_ntk", "fgsm", "fixed_batch", "kendall_tau",
    "kernel_families", "kernel_family", "load_dataset", "mixed_kernel", "op_ids", "pgd", "run_engine",
    "spearman_rho", "spectrum", "stacked_gram",
]
