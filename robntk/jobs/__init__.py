"""Long jobs over many architectures: the one resumable driver (:func:`run_job`), its
append-only, crash-safe result store (:class:`ResultStore`), and the submission of a job's shards
as one SLURM (or local) job array through submitit (:func:`run_sharded`; submitit is the optional
``slurm`` extra, imported only when a job is submitted)."""

from robntk.jobs.driver import JobReport, config_key, parse_shard, run_job, shard_indices
from robntk.jobs.store import ResultStore, StoreConflictError, StoreError, StoreMismatchError, merge_stores
from robntk.jobs.submit import ShardsFailedError, SubmitOptions, run_sharded

__all__ = [
    "JobReport",
    "ResultStore",
    "ShardsFailedError",
    "StoreConflictError",
    "StoreError",
    "StoreMismatchError",
    "SubmitOptions",
    "config_key",
    "merge_stores",
    "parse_shard",
    "run_job",
    "run_sharded",
    "shard_indices",
]
