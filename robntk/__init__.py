"""robntk: training-free NTK scores and zero-cost proxies for robust NAS on NAS-Bench-201 /
NAS-RobBench-201, in JAX.

The pipeline, in the order data flows (one subpackage each; nothing imports upward)::

    core → jobs → nb201 → data → attacks → ntk → proxies → scoring → analysis
                                   train, robnets, theory beside;  commands (the CLI) on top

This module is the curated public face: every capability the README shows is importable from
here, e.g. ``from robntk import TinyNetwork, kernel_family, spectrum, RobBench``. Names are
resolved lazily (PEP 562), so ``import robntk`` stays cheap and importing one layer never pulls
in the layers above it.
"""

from __future__ import annotations

import importlib

from robntk._version import __version__

#: public name → the module that defines it (``module:attr`` where the face name differs)
_FACE: dict[str, str] = {
    # search space and network
    "SearchSpace": "robntk.nb201.searchspace",
    "TinyNetwork": "robntk.nb201.network",
    "NetworkFn": "robntk.nb201.network",
    "op_ids": "robntk.nb201.cell",
    # data and benchmark readers
    "fixed_batch": "robntk.data.datasets",
    "load_dataset": "robntk.data.datasets",
    "RobBench": "robntk.data.benchmark",
    "load_nb201_accuracy": "robntk.data.benchmark",
    "load_jung_robustness": "robntk.data.jung",
    "load_suite_zero": "robntk.data.suite_zero",
    # attacks
    "fgsm": "robntk.attacks.iterative",
    "pgd": "robntk.attacks.iterative",
    "apgd": "robntk.attacks.autoattack",
    "square": "robntk.attacks.score_based",
    # kernels and spectra
    "empirical_ntk_fn": "robntk.ntk.ntk_fn",
    "KernelFamily": "robntk.ntk.kernels",
    "kernel_family": "robntk.ntk.kernels",
    "kernel_families": "robntk.ntk.kernels",
    "mixed_kernel": "robntk.ntk.kernels",
    "stacked_gram": "robntk.ntk.kernels",
    "Spectrum": "robntk.ntk.spectra",
    "spectrum": "robntk.ntk.spectra",
    # proxies
    "PROXIES": "robntk.proxies",
    "proxy_table": "robntk.proxies",
    # scoring engine and jobs
    "ScoreConfig": "robntk.scoring.config",
    "Engine": "robntk.scoring.engine",
    "EngineOptions": "robntk.scoring.engine",
    "run_engine": "robntk.scoring.runner",
    "aggregate_draws": "robntk.scoring.draws",
    "run_job": "robntk.jobs.driver",
    "ResultStore": "robntk.jobs.store",
    "merge_stores": "robntk.jobs.store",
    # analysis and search
    "kendall_tau": "robntk.analysis.correlation",
    "spearman_rho": "robntk.analysis.correlation",
    "bootstrap_ci": "robntk.analysis.correlation",
    "correlation_table": "robntk.analysis.correlation",
    "run_search": "robntk.analysis.search",
    "SearchConfig": "robntk.analysis.search",
    "zero_shot": "robntk.analysis.combine",
    "feature_table": "robntk.analysis.cell_features",
    "PredictorConfig": "robntk.analysis.predictors",
    "fit_predictor": "robntk.analysis.predictors",
    # training and evaluation
    "TrainConfig": "robntk.train.config",
    "adversarial_train": "robntk.train.loop:train",  # robntk.train is the subpackage
    "load_trained": "robntk.train.loop",
    "EvalConfig": "robntk.train.eval_config",
    "evaluate_run": "robntk.train.evaluation",
}

__all__ = sorted(_FACE) + ["__version__"]


def __getattr__(name: str):
    """Import a public name on first use (PEP 562). Raises AttributeError for unknown names."""
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module 'robntk' has no attribute {name!r}")
    module, _, attr = module.partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FACE))
