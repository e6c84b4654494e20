"""``--executor slurm|local --shards N`` (:mod:`robntk.jobs.submit`) through submitit's local
executor: the merged table equals a one-process run bit for bit, and a shard killed with SIGKILL
mid-run or failing once is resubmitted and resumes from its store without duplicates.

The fault injectors wrap the per-shard work; this module is pickled by value
(``cloudpickle.register_pickle_by_value``) so the task processes, which cannot import it, run them.
Cost on 2 CPU cores: the toy tests start Python processes only (~1–3 s each); the ``proxies``
test 5 JAX processes (~25 s); the ``score`` test (``slow``) 3 (~35 s with the session's own
compile cache, which the tasks load from).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

submitit = pytest.importorskip("submitit")
cloudpickle = pytest.importorskip("cloudpickle")

from robntk.jobs.driver import shard_indices  # noqa: E402
from robntk.jobs.store import ResultStore, merge_stores, read_header, rows_equal  # noqa: E402
from robntk.jobs.submit import (  # noqa: E402
    ShardsFailedError,
    SubmitOptions,
    make_executor,
    run_sharded,
    shard_store,
    shards_dir,
    stored_keys,
)

cloudpickle.register_pickle_by_value(sys.modules[__name__])

ARCHS = ("1", "10", "100", "2581")  # 10: a disconnected cell (NaN proxies, zero kernels)
LOCAL = dict(executor="local", slurm_time=10)


# --------------------------------------------------------------------------- fault injectors (run in the tasks)
def _kill_after_first_chunk() -> None:
    """From now on in this process: SIGKILL right after the first non-empty chunk is written to a
    result store (a real ``kill -9`` mid-run: that chunk is complete, nothing later is)."""
    orig = ResultStore.append

    def append(self, rows):
        out = orig(self, rows)
        if rows:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    ResultStore.append = append


@dataclass(frozen=True)
class Faulty:
    """Wraps a shard work: on its first attempt (no ``marker`` file yet) shard ``kill`` is killed
    after its first chunk and shard ``fail`` raises before any work."""

    work: object
    marker: str
    kill: int | None = None
    fail: int | None = None

    def __call__(self, k: int, n: int, store: str):
        first = not Path(self.marker, f"{k}").exists()
        Path(self.marker).mkdir(parents=True, exist_ok=True)
        Path(self.marker, f"{k}").touch()
        if first and k == self.fail:
            raise RuntimeError(f"injected failure of shard {k}")
        if first and k == self.kill:
            _kill_after_first_chunk()
        return self.work(k, n, store)


@dataclass(frozen=True)
class ToyWork:
    """A JAX-free shard work: one chunk per key (row ``{nb201_index: i, v: i*i}``), skipping the
    keys its store holds; shard ``always_fail`` raises every time."""

    keys: tuple[int, ...]
    always_fail: int | None = None

    def __call__(self, k: int, n: int, store: str) -> int:
        if k == self.always_fail:
            raise ValueError(f"shard {k} always fails")
        st = ResultStore.open(store, "toy-key", {"config": {"toy": True}, "selection": sorted(self.keys)})
        have = st.done()
        new = [i for i in shard_indices(self.keys, (k, n)) if i not in have]
        for i in new:
            st.append([{"nb201_index": i, "v": i * i}])
        return len(new)


def _chunks_and_rows(store: Path) -> tuple[int, int, int]:
    """(chunk files, rows read with duplicates, unique rows) of a store."""
    st = ResultStore(store, read_header(store))
    rep = st.read()
    return len(st.chunk_files()), rep.n_rows, len(rep.rows)


# --------------------------------------------------------------------------- options
def test_options_validate_and_map_to_sbatch(tmp_path, monkeypatch):
    """Flags are checked up front; the SLURM parameters reach the sbatch script (submitit's
    SlurmExecutor with a stand-in ``srun`` on PATH; nothing is submitted)."""
    with pytest.raises(ValueError, match="--shards N needs --executor"):
        SubmitOptions(shards=4)
    with pytest.raises(ValueError, match="--executor slurm needs --shards N"):
        SubmitOptions(executor="slurm")
    with pytest.raises(ValueError, match="--executor must be one of slurm, local"):
        SubmitOptions(executor="pbs", shards=2)
    for kw, msg in [
        ({"shards": 0}, "--shards must be an integer >= 1"),
        ({"shards": 2, "max_retries": -1}, "--max-retries must be an integer >= 0"),
        ({"shards": 2, "slurm_mem_gb": 0.0}, "--slurm-mem-gb must be a positive"),
        ({"shards": 2, "slurm_array_parallelism": 0}, "--slurm-array-parallelism must be"),
    ]:
        with pytest.raises(ValueError, match=msg):
            SubmitOptions(executor="slurm", **kw)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    opts = SubmitOptions(
        executor="slurm",
        shards=16,
        slurm_partition="gpu",
        slurm_account="proj",
        slurm_time=90,
        slurm_cpus=4,
        slurm_mem_gb=16,
        slurm_gpus=1,
        slurm_array_parallelism=8,
        slurm_setup=("module load cuda",),
    )
    ex = make_executor(opts, tmp_path / "logs", name="robntk-score")
    text = ex._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in [
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj",
        "#SBATCH --time=90",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16GB",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --job-name=robntk-score",
        "module load cuda",
    ]:
        assert line in text, (line, text)
    assert ex._executor.parameters["array_parallelism"] == 8


def test_cli_refuses_bad_combinations(tmp_path, capsys, monkeypatch):
    from robntk.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["score", "--arch", "1", "--out", "o.csv", "--shards", "2"]) == 2
    assert "--shards N needs --executor slurm or --executor local" in capsys.readouterr().err
    assert (
        main(["score", "--arch", "1", "--out", "o.csv", "--executor", "local", "--shards", "2", "--shard", "0/2"]) == 2
    )
    assert "--shard 0/2 and --executor exclude each other" in capsys.readouterr().err
    assert main(["proxies", "--arch", "1", "--out", "p.csv", "--executor", "local"]) == 2
    assert "--executor local needs --shards N" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == []


# --------------------------------------------------------------------------- the loop (no JAX)
def test_killed_and_failed_shards_resume_without_duplicates(tmp_path):
    keys = tuple(range(20, 33))
    store = tmp_path / "toy.store"
    work = Faulty(ToyWork(keys), str(tmp_path / "marker"), kill=1, fail=2)
    msgs: list[str] = []
    rep = run_sharded(keys, work, store, SubmitOptions(shards=3, max_retries=1, **LOCAL), log=msgs.append)
    assert rep.attempts == {0: 1, 1: 2, 2: 2} and rep.failed == [] and rep.outcomes == {0: "ok", 1: "ok", 2: "ok"}
    assert any("shard 1/3: 3 of 4 keys missing after attempt 1" in m and "no result" in m for m in msgs)
    assert any("shard 2/3: 4 of 4 keys missing" in m and "injected failure of shard 2" in m for m in msgs)
    # the killed shard kept its first chunk and computed only the rest: one chunk per key, no duplicate
    assert _chunks_and_rows(shard_store(shards_dir(store), 1, 3)) == (4, 4, 4)
    rows = ResultStore(store, read_header(store)).read().rows
    assert rows == {i: {"nb201_index": i, "v": i * i} for i in keys}
    assert rep.merged[0].missing == [] and rep.merged[0].n_duplicates == 0
    # a rerun submits nothing and merges again (idempotent)
    msgs.clear()
    rep2 = run_sharded(keys, work, store, SubmitOptions(shards=3, **LOCAL), log=msgs.append)
    assert rep2.attempts == {0: 0, 1: 0, 2: 0} and "already complete" in msgs[0]
    assert ResultStore(store, read_header(store)).read().rows == rows


def test_a_shard_out_of_retries_raises_after_merging_the_rest(tmp_path):
    keys = tuple(range(7))
    store = tmp_path / "toy.store"
    with pytest.raises(
        ShardsFailedError,
        match=r"shard\(s\) 1 of 2 still incomplete after 2 task\(s\) each — "
        r"shard 1: failed: ValueError: shard 1 always fails",
    ):
        run_sharded(
            keys,
            ToyWork(keys, always_fail=1),
            store,
            SubmitOptions(shards=2, max_retries=1, **LOCAL),
            log=lambda m: None,
        )
    assert sorted(ResultStore(store, read_header(store)).read().rows) == [0, 2, 4, 6]
    assert stored_keys(shard_store(shards_dir(store), 1, 2)) == set()


@dataclass(frozen=True)
class Sleepy:
    """A shard work that sleeps (to be interrupted)."""

    seconds: float

    def __call__(self, k: int, n: int, store: str) -> None:
        import time

        time.sleep(self.seconds)


def test_sigterm_while_waiting_cancels_the_tasks(tmp_path):
    """The driver killed with SIGTERM (e.g. its own SLURM job's limit) cancels its tasks and raises
    KeyboardInterrupt, so a rerun never has two tasks writing one shard store."""
    import threading

    msgs: list[str] = []
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        run_sharded(range(4), Sleepy(120), tmp_path / "s.store", SubmitOptions(shards=2, **LOCAL), log=msgs.append)
    timer.join()
    assert msgs[0].startswith("submitted shard(s) 0/2, 1/2 as job(s)")
    assert msgs[-1].startswith("interrupted: cancelled job(s) ") and "rerunning the same command resumes" in msgs[-1]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is restored


# --------------------------------------------------------------------------- the commands (JAX, real data)
@pytest.fixture(scope="session")
def _cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("compile-cache")


@pytest.fixture
def own_compile_cache(_cache_dir, monkeypatch) -> Path:
    """A compile cache of this session only (:mod:`robntk.core.compile_cache`), for the
    one-process run and the tasks (they inherit the environment): the comparison does not depend
    on what the user's cache holds."""
    monkeypatch.setenv("ROBNTK_COMPILE_CACHE", str(_cache_dir))
    return _cache_dir


def _one_process(argv: list[str], cwd: Path) -> None:
    """``robntk ARGV`` in a fresh process (as the tasks are: no JAX state from other tests)."""
    code = "import sys; from robntk.cli import main; sys.exit(main(sys.argv[1:]))"
    subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, check=True, capture_output=True, text=True)


def _sharded(monkeypatch, module, argv, cwd: Path, wrap=None) -> int:
    """``robntk ARGV`` in this process with the command's ``run_sharded`` polling fast and its work
    wrapped by ``wrap``."""
    from robntk.cli import main

    def patched(keys, work, store, options, **kw):
        return run_sharded(keys, wrap(work) if wrap else work, store, options, **{**kw, "poll_s": 0.2})

    monkeypatch.setattr(module, "run_sharded", patched)
    monkeypatch.chdir(cwd)
    return main(argv)


def _rows(store: Path) -> dict:
    return ResultStore(store, read_header(store)).read().rows


def test_proxies_sharded_equals_one_process_despite_a_kill_and_a_failure(
    data_dir, tmp_path, monkeypatch, capsys, own_compile_cache
):
    """2 shards; shard 1 is SIGKILLed mid-run (after its ``params`` chunk, before ``flops`` and
    ``nwot``), shard 0 fails once; both are resubmitted; the table equals the one-process table
    byte for byte and every proxy store holds the same rows."""
    import robntk.commands.proxies as cmd

    base = [
        "proxies",
        "--data-dir",
        str(data_dir),
        *[a for i in ARCHS for a in ("--arch", i)],
        "--C",
        "2",
        "--N",
        "1",
        "--batch-size",
        "4",
        "--proxies",
        "params",
        "flops",
        "nwot",
        "--no-progress",
    ]
    _one_process(base + ["--out", "one.csv"], tmp_path)
    argv = base + [
        "--out",
        "sharded.csv",
        "--executor",
        "local",
        "--shards",
        "2",
        "--max-retries",
        "1",
        "--slurm-time",
        "10",
    ]
    assert (
        _sharded(monkeypatch, cmd, argv, tmp_path, lambda w: Faulty(w, str(tmp_path / "marker"), kill=1, fail=0)) == 0
    )
    out = capsys.readouterr().out
    assert "shard 0/2: 2 of 2 keys missing after attempt 1" in out and "injected failure of shard 0" in out
    assert "shard 1/2: 2 of 2 keys missing after attempt 1" in out and "no result" in out
    assert (tmp_path / "sharded.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    for name in ("params", "flops", "nwot"):  # exact, timings (*_s) aside
        one, sharded = _rows(tmp_path / "one.csv.store" / name), _rows(tmp_path / "sharded.csv.store" / name)
        assert sorted(one) == sorted(sharded) == sorted(map(int, ARCHS))
        assert all(rows_equal(one[i], sharded[i]) is None for i in one)
    # the killed shard resumed: its params chunk was kept, not recomputed
    killed = shard_store(shards_dir(tmp_path / "sharded.csv.store"), 1, 2)
    assert _chunks_and_rows(killed / "params") == (1, 2, 2)
    assert _chunks_and_rows(killed / "nwot") == (1, 2, 2)
    side = json.loads((tmp_path / "sharded.csv.json").read_text())
    assert side["store"] == "sharded.csv.store" and side["n_archs"] == len(ARCHS)


@pytest.mark.slow
def test_score_sharded_equals_one_process(data_dir, tmp_path, monkeypatch, own_compile_cache):
    """``robntk score --executor local --shards 2``: the merged store's rows equal the
    one-process store's (every column but the timings ``*_s``, exactly), the export has the same
    columns and values, and the merged store was resumed, not rescored."""
    import pandas as pd

    import robntk.commands.score as cmd

    base = [
        "score",
        "--data-dir",
        str(data_dir),
        *[a for i in ARCHS[:3] for a in ("--arch", i)],
        "--C",
        "2",
        "--N",
        "1",
        "--batch-size",
        "4",
        "--pgd-steps",
        "1",
        "--no-progress",
    ]
    _one_process(base + ["--out", "one.csv"], tmp_path)
    assert (
        _sharded(monkeypatch, cmd, base + ["--out", "sharded.csv", "--executor", "local", "--shards", "2"], tmp_path)
        == 0
    )
    one, sharded = _rows(tmp_path / "one.csv.store"), _rows(tmp_path / "sharded.csv.store")
    assert sorted(one) == sorted(sharded) == [1, 10, 100]
    for i in one:
        assert rows_equal(one[i], sharded[i]) is None
    a, b = pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "sharded.csv")
    assert list(a.columns) == list(b.columns)
    cols = [c for c in a.columns if not c.endswith("_s")]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    assert (
        merge_stores([tmp_path / "one.csv.store"], tmp_path / "sharded.csv.store").n_rows == 3
    )  # same key, no conflict
