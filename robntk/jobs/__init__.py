"""Long jobs over many architectures: the one resumable driver (:func:`run_job`) and its
append-only, crash-safe result store (:class:`ResultStore`)."""

from robntk.jobs.driver import JobReport, config_key, parse_shard, run_job, shard_indices
from robntk.jobs.store import ResultStore, StoreConflictError, StoreError, StoreMismatchError, merge_stores

__all__ = [
    "JobReport", "ResultStore", "StoreConflictError", "StoreError", "StoreMismatchError", "config_key",
    "merge_stores", "parse_shard", "run_job", "shard_indices",
]
