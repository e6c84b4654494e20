"""Benchmark-scale engine: one compile for all archs, parity with the fixed-cell generic path,
crash-safe store (SIGKILL + resume), shards + merge, multi-device sharding, OOM degradation.

A tiny configuration (C=2, N=1, B=4, 8×8 images, one ε, one PGD step, float64) keeps each
compile to seconds; subprocesses share a persistent compilation cache.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from robntk import cli
from robntk.jobs.driver import parse_shard, shard_indices
from robntk.jobs.store import ResultStore, StoreConflictError, StoreError, StoreMismatchError, merge_stores, rows_equal
from robntk.nb201.network import TinyNetwork
from robntk.nb201.searchspace import all_archs_lexicographic, format_arch_str
from robntk.ntk import kernels
from robntk.scoring import config as scoring
from robntk.scoring.config import ScoreConfig
from robntk.scoring.engine import Engine, EngineOptions
from robntk.scoring.runner import run_engine, store_key

REPO = Path(__file__).resolve().parents[1]
# no test writes into the user's compilation cache (robntk.core.compile_cache); subprocesses get a tmp one
os.environ.setdefault("ROBNTK_COMPILE_CACHE", "off")
#: the fast fixture is eval-mode BN (independent rows); the default protocol (train mode) has its own tests
TINY = dict(batch_size=4, C=2, N=1, pgd_steps=1, eps=(8 / 255,), betas=(0.5,), dtype="float64", bn_mode="eval")
#: lexicographic positions used as "indices" (no data files needed); 0 = all-none (disconnected)
INDICES = [0, 1234, 2500, 7777, 9000, 11111, 15624, 3906, 4321, 600]
LEX = all_archs_lexicographic()
ARCH_STRS = {i: format_arch_str(LEX[i]) for i in range(len(LEX))}


def tiny_batch(hw: int = 8):
    rng = np.random.default_rng(0)
    return rng.uniform(size=(4, hw, hw, 3)), rng.integers(0, 10, 4).astype(np.int32)


@pytest.fixture(scope="module")
def cfg():
    return ScoreConfig(**TINY)


@pytest.fixture(scope="module")
def engine(x64, cfg):
    eng = Engine(cfg, EngineOptions(implementation="layerwise"))
    eng.set_batch(*tiny_batch())
    return eng


def _row_for_dedicated(cfg, arch_str, x, y):
    """Another path to the same row: the fixed cell (plain Python branches) with "init seed s"
    = the sub-tree of ``TinyNetwork.init(PRNGKey(s))``, the generic Jacobian contraction."""
    net = TinyNetwork.for_dataset(cfg.dataset, cfg.C, cfg.N, cfg.init_scheme)
    sub = net.init(jax.random.PRNGKey(cfg.seed), jnp.float64, arch=arch_str)
    f, p = net.make_apply(sub, arch_str, cfg.bn_mode)
    key = jax.random.PRNGKey(cfg.seed + 1)
    fams = jax.jit(
        lambda p, xx, yy, k: kernels.kernel_families(
            f,
            p,
            xx,
            yy,
            cfg.eps,
            key=k,
            steps=cfg.pgd_steps,
            output_mode=cfg.output_mode,
            implementation="jacobian",
            attack_f=f.with_bn_mode(cfg.attack_mode),
        )
    )(p, jnp.asarray(x), jnp.asarray(y), key)
    return scoring.spectra_row(kernels.named_kernels(fams, cfg.eps, cfg.betas), cfg)


def _assert_rows_close(got, want, rtol):
    for k, v in want.items():
        if isinstance(v, bool):
            assert got[k] == v, k
        elif np.isfinite(v):
            assert abs(got[k] - v) <= rtol * abs(v), (k, got[k], v)
        else:
            assert got[k] == v, k


# --------------------------------------------------------------------------- parity + compile count
def test_engine_rows_equal_dedicated_path(engine, cfg):
    x, y = tiny_batch()
    idx = [2500, 0]  # a connected cell with 3x3/1x1/pool/skip, and the all-none cell
    rows = engine.score_block(idx, [ARCH_STRS[i] for i in idx])
    assert [r["nb201_index"] for r in rows] == idx
    assert rows[1]["disconnected"] and rows[1]["degenerate"] and rows[1]["lambda_min_clean"] == 0.0
    for r, i in zip(rows, idx):
        _assert_rows_close(r, _row_for_dedicated(cfg, ARCH_STRS[i], x, y), 1e-6)


def test_one_compile_for_all_archs(engine, cfg, tmp_path):
    x, y = tiny_batch()
    before = engine.trace_count
    rep = run_engine(
        INDICES,
        cfg,
        tmp_path / "st",
        x=x,
        y=y,
        batch_digest="tiny",
        arch_strs=ARCH_STRS,
        engine=engine,
        options=EngineOptions(flush_seconds=0),
        progress=False,
    )
    assert rep.n_scored == len(INDICES) and rep.n_skipped == 0
    assert engine.trace_count == 1 and before <= 1  # one trace (the fixture's, or this run's) served every arch
    assert len(engine._compiled) == 1
    assert all(c._cache_size() if hasattr(c, "_cache_size") else True for c in engine._compiled.values())
    st = ResultStore.open(tmp_path / "st")
    rep2 = st.read()
    assert sorted(rep2.rows) == sorted(INDICES) and rep2.n_duplicates == 0
    # resume: nothing left to do, nothing duplicated
    rep3 = run_engine(
        INDICES, cfg, tmp_path / "st", x=x, y=y, batch_digest="tiny", arch_strs=ARCH_STRS, engine=engine, progress=False
    )
    assert rep3.n_scored == 0 and rep3.n_skipped == len(INDICES)
    assert engine.trace_count == 1
    out = st.export(tmp_path / "scores.csv")
    import pandas as pd

    df = pd.read_csv(out)
    assert len(df) == len(INDICES) and "lambda_min_robust_eps8" in df.columns
    side = json.loads((tmp_path / "scores.csv.json").read_text())
    assert side["config_digest"] == cfg.digest() and side["param_definition"].startswith("supernet")


def test_train_mode_bn_engine_equals_fixed_cell_path(x64):
    """The default protocol: batch-statistics BN for the kernel and the attack."""
    cfg = ScoreConfig(**{k: v for k, v in TINY.items() if k != "bn_mode"})
    assert cfg.bn_mode == "train" and cfg.attack_mode == "train"
    x, y = tiny_batch()
    eng = Engine(cfg)
    assert eng.implementation == "layerwise"
    eng.set_batch(x, y)
    i = 7777
    row = eng.score_block([i], [ARCH_STRS[i]])[0]
    _assert_rows_close(row, _row_for_dedicated(cfg, ARCH_STRS[i], x, y), 1e-6)


def test_fresh_compile_reruns_bit_identically(engine, cfg):
    """A second engine (a new compile) on the same config and batch gives the same bits."""
    i = 7777
    eng = Engine(cfg, EngineOptions(implementation="layerwise"))
    eng.set_batch(*tiny_batch())
    a, b = (e.score_block([i], [ARCH_STRS[i]])[0] for e in (engine, eng))
    num = lambda r: {k: v for k, v in r.items() if isinstance(v, float) and not k.endswith("_s")}
    assert num(a) == num(b) and len(num(a)) > 10


def test_rolled_and_unrolled_pgd_run_the_same_iterations(x64, cfg):
    """The rolled PGD loop and the default ``pgd_unroll=True`` (the program of the committed
    stores) run the same iterations: the same kernels up to float rounding (float64, 3 PGD steps)."""
    assert EngineOptions().pgd_unroll is True
    import dataclasses

    c3 = dataclasses.replace(cfg, pgd_steps=3)
    ids = np.array([[3, 2, 4, 1, 3, 0], [1, 3, 3, 2, 4, 3]], np.int32)
    out = {}
    for unroll in (False, True):
        e = Engine(c3, EngineOptions(implementation="layerwise", pgd_unroll=unroll))
        e.set_batch(*tiny_batch())
        out[unroll] = e.kernels(ids)
    for n in out[False]:
        assert float(np.max(np.abs(out[False][n] - out[True][n]))) <= 1e-10 * float(np.max(np.abs(out[True][n]))), n
    assert float(np.max(np.abs(out[False]["robust_eps8"] - out[False]["clean"]))) > 0  # the attack moved the batch


def test_vmap_batching_equals_map(engine, cfg):
    """Several archs per call through vmap (switch → select: every op computed) = lax.map."""
    ev = Engine(cfg, EngineOptions(implementation="layerwise", batching="vmap", archs_per_call=3))
    ev.set_batch(*tiny_batch())
    ids = np.array([LEX[i] for i in (0, 2500, 7777)])
    ids = np.vectorize(lambda o: ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3").index(o))(ids)
    ids = ids.astype(np.int32)
    kv, km = ev.kernels(ids), engine.kernels(ids)
    assert set(kv) == set(cfg.kernel_names()) and kv["clean"].shape == (3, 4, 4)
    for n in kv:
        assert float(np.max(np.abs(kv[n] - km[n]))) <= 1e-12 * float(np.max(np.abs(km[n])))
    assert ev.trace_count == 1 and ev.batching == "vmap"


def test_archs_per_call_from_memory_budget(cfg, monkeypatch):
    from types import SimpleNamespace

    eng = Engine.__new__(Engine)
    eng.cfg, eng.devices, eng.batching, eng.archs_per_call = cfg, jax.local_devices()[:1], "vmap", None
    eng.options = EngineOptions(batching="vmap", memory_budget=1000, max_archs_per_call=64)
    stats = SimpleNamespace(temp_size_in_bytes=90, output_size_in_bytes=10)
    monkeypatch.setattr(eng, "_function", lambda n: SimpleNamespace(memory_analysis=lambda: stats))
    assert eng.choose_archs_per_call() == 10
    eng.archs_per_call, eng.options = None, EngineOptions(batching="vmap", memory_budget=1e9, max_archs_per_call=16)
    assert eng.choose_archs_per_call() == 16
    eng.archs_per_call, eng.options = None, EngineOptions(batching="vmap", memory_budget=50)
    assert eng.choose_archs_per_call() == 1
    eng.archs_per_call, eng.batching = None, "map"
    assert eng.choose_archs_per_call() == 1
    for bad in (
        dict(implementation="x"),
        dict(batching="pmap"),
        dict(archs_per_call=0),
        dict(memory_budget=-1),
        dict(flush_seconds=-1),
    ):
        with pytest.raises(ValueError):
            EngineOptions(**bad)


# --------------------------------------------------------------------------- OOM degradation
def test_out_of_memory_degrades_to_smaller_calls(cfg, monkeypatch):
    eng = Engine.__new__(Engine)  # no compile: kernels() is replaced below
    eng.cfg, eng.devices, eng.archs_per_call, eng.compile_s = cfg, jax.local_devices()[:1], 4, 0.0
    eng.options = EngineOptions(archs_per_call=4)
    calls = []

    def fake_kernels(ids):
        calls.append(len(ids))
        if len(ids) > 1:
            raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9 GiB")
        K = np.eye(cfg.batch_size)[None] * (1.0 + ids[0][0])
        return {n: K for n in cfg.kernel_names()}

    monkeypatch.setattr(eng, "kernels", fake_kernels)
    idx = [1, 2, 3, 4, 5]
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        rows = eng.score_block(idx, [ARCH_STRS[i] for i in idx])
    assert [r["nb201_index"] for r in rows] == idx
    assert calls[:2] == [4, 2] and set(calls[2:]) == {1}
    assert eng.archs_per_call == 1
    assert sum("out of memory" in str(m.message) for m in w) == 2

    def always_oom(ids):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: nope")

    monkeypatch.setattr(eng, "kernels", always_oom)
    with pytest.raises(RuntimeError, match="one arch per device"):
        eng.score_block([1], [ARCH_STRS[1]])

    def other_error(ids):
        raise jax.errors.JaxRuntimeError("INTERNAL: something else")

    monkeypatch.setattr(eng, "kernels", other_error)
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        eng.score_block([1], [ARCH_STRS[1]])


# --------------------------------------------------------------------------- store
def _row(i, v=1.0, t=0.1):
    return {
        "nb201_index": i,
        "arch_str": ARCH_STRS[i],
        "lambda_min_clean": v,
        "cond_clean": float("inf"),
        "degenerate": False,
        "run_s": t,
    }


def test_store_roundtrip_dedup_temp_files_and_errors(tmp_path):
    st = ResultStore.open(tmp_path / "a", "key1", {"config": {"x": 1}, "selection": [1, 2, 3]})
    st.append([_row(1, 0.1 + 0.2), _row(2)])
    st.append([_row(2, t=9.0)])  # identical values (timing differs): a duplicate, not a conflict
    (tmp_path / "a" / "rows" / ".part-x.jsonl.abc.tmp").write_text('{"nb201_index": 3, "lambda_m')  # killed writer
    rep = st.read()
    assert sorted(rep.rows) == [1, 2] and rep.n_duplicates == 1 and rep.n_tmp_ignored == 1
    assert rep.rows[1]["lambda_min_clean"] == 0.1 + 0.2 and rep.rows[1]["cond_clean"] == float("inf")
    st.compact()
    assert len(st.chunk_files()) == 1 and not st.temp_files() and sorted(st.done()) == [1, 2]
    # reopen with the same key; a different key is refused
    assert ResultStore.open(tmp_path / "a", "key1").done() == {1, 2}
    with pytest.raises(StoreMismatchError, match="different configuration"):
        ResultStore.open(tmp_path / "a", "key2")
    # conflicting values
    st.append([_row(2, 2.0)])
    with pytest.raises(StoreConflictError, match="nb201_index 2"):
        st.read()
    # foreign directory / corrupt chunk / corrupt header
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("hello")
    with pytest.raises(StoreError, match="not a robntk result store"):
        ResultStore.open(tmp_path / "foreign", "key1", {})
    st2 = ResultStore.open(tmp_path / "b", "key1", {})
    (tmp_path / "b" / "rows" / "part-broken.jsonl").write_text('{"nb201_index": 1}\n{oops\n')
    with pytest.raises(StoreError, match="corrupt chunk .*line 2"):
        st2.read()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "header.json").write_text('{"format": "something-else"}')
    with pytest.raises(StoreError, match="not a robntk result-store header"):
        ResultStore.open(tmp_path / "c", "key1")
    with pytest.raises(StoreError, match="integer"):
        st2.append([{"arch_str": "x"}])
    assert rows_equal(_row(1, 1.0), _row(1, 1.0 + 1e-12), rtol=1e-9) is None
    assert rows_equal(_row(1, 1.0), _row(1, 1.1), rtol=1e-9) is not None


def test_shards_partition_and_merge(tmp_path):
    sel = list(range(40, 0, -3))
    parts = [shard_indices(sel, (k, 3)) for k in range(3)]
    assert sorted(sum(parts, [])) == sorted(sel)
    assert all(not set(a) & set(b) for a in parts for b in parts if a is not b)
    assert shard_indices(sel, (1, 3)) == parts[1]  # deterministic
    assert parse_shard("2/8") == (2, 8) and parse_shard(None) is None
    for bad in ("8/8", "-1/3", "a/b", "3"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
    hdr = {"config": {"c": 1}, "selection": sel}
    for k, part in enumerate(parts):
        st = ResultStore.open(tmp_path / f"s{k}", "K", dict(hdr, shard=f"{k}/3"))
        st.append([_row(i, float(i)) for i in part])
    # an overlapping re-run of shard 0 (identical values) must not double-count
    ResultStore.open(tmp_path / "s0b", "K", hdr).append([_row(i, float(i)) for i in parts[0][:3]])
    rep = merge_stores([tmp_path / f"s{k}" for k in range(3)] + [tmp_path / "s0b"], tmp_path / "all")
    assert rep.n_rows == len(sel) and rep.n_duplicates == 3 and rep.missing == []
    merged = ResultStore.open(tmp_path / "all", "K")
    assert sorted(merged.done()) == sorted(sel) and merged.read().n_rows == len(sel)
    # merging again into the same destination is idempotent
    rep = merge_stores([tmp_path / "s1"], tmp_path / "all")
    assert rep.n_rows == len(sel) and merged.read().n_rows == len(sel)
    # missing rows are reported
    rep = merge_stores([tmp_path / "s1"], tmp_path / "only1")
    assert len(rep.missing) == len(sel) - len(parts[1])
    # conflicting shard
    ResultStore.open(tmp_path / "bad", "K", hdr).append([_row(parts[2][0], -5.0)])
    with pytest.raises(StoreConflictError, match=f"nb201_index {parts[2][0]}"):
        merge_stores([tmp_path / "s2", tmp_path / "bad"], tmp_path / "x")
    # different configuration hash
    ResultStore.open(tmp_path / "other", "K2", {"config": {"c": 2}}).append([_row(1)])
    with pytest.raises(StoreMismatchError, match="different configurations"):
        merge_stores([tmp_path / "s0", tmp_path / "other"], tmp_path / "y")
    # foreign store
    (tmp_path / "foreign").mkdir()
    with pytest.raises(StoreError, match="not a robntk result store"):
        merge_stores([tmp_path / "s0", tmp_path / "foreign"], tmp_path / "z")


def test_merge_cli(tmp_path, capsys):
    hdr = {"config": {"c": 1}, "selection": [1, 2, 3]}
    ResultStore.open(tmp_path / "s0", "K", hdr).append([_row(1), _row(2)])
    ResultStore.open(tmp_path / "s1", "K", hdr).append([_row(2), _row(3)])
    out = tmp_path / "all.csv"
    assert (
        cli.main(
            ["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--into", str(tmp_path / "m"), "--out", str(out)]
        )
        == 0
    )
    assert "3 rows, 1 duplicate" in capsys.readouterr().out
    assert out.is_file() and (tmp_path / "all.csv.json").is_file()
    assert cli.main(["merge", str(tmp_path / "s0"), "--into", str(tmp_path / "m2")]) == 1  # 3 missing
    ResultStore.open(tmp_path / "s2", "OTHER", {}).append([_row(1)])
    assert cli.main(["merge", str(tmp_path / "s0"), str(tmp_path / "s2"), "--into", str(tmp_path / "m3")]) == 2
    assert "different configurations" in capsys.readouterr().err


def test_store_key_depends_on_config_and_batch(cfg):
    assert store_key(cfg, "a") == store_key(ScoreConfig(**TINY), "a")
    assert store_key(cfg, "a") != store_key(cfg, "b")
    assert store_key(cfg, "a") != store_key(ScoreConfig(**dict(TINY, seed=1)), "a")


# --------------------------------------------------------------------------- subprocesses
SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    import jax
    from robntk.jobs import store as S
    from robntk.scoring.engine import Engine, EngineOptions
    from robntk.scoring.runner import run_engine
    from robntk.scoring.config import ScoreConfig
    sys.path.insert(0, os.environ["TESTS_DIR"])
    from test_engine import TINY, INDICES, ARCH_STRS, tiny_batch

    cfg = ScoreConfig(**TINY)
    x, y = tiny_batch()
    mode = sys.argv[1]
    if mode == "score":
        delay = float(os.environ.get("SLOW_APPEND", "0"))
        if delay:
            orig = S.ResultStore.append
            def slow(self, rows):
                out = orig(self, rows)
                time.sleep(delay)
                return out
            S.ResultStore.append = slow
        rep = run_engine(INDICES, cfg, sys.argv[2], x=x, y=y, batch_digest="tiny", arch_strs=ARCH_STRS,
                         options=EngineOptions(implementation="layerwise", flush_seconds=0), progress=False)
        print(json.dumps({"scored": rep.n_scored, "skipped": rep.n_skipped}))
    elif mode == "devices":
        import dataclasses
        devs = jax.devices()
        # 5 archs (incl. the disconnected all-none cell): padded to 8 on 4 devices
        ids = np.array([[3, 2, 4, 1, 3, 0], [1, 3, 3, 2, 4, 3], [0, 0, 0, 0, 0, 0], [4, 1, 3, 3, 2, 1],
                        [3, 3, 3, 3, 3, 3]], np.int32)
        out = {"n_devices": len(devs)}
        rel = lambda a, b: max(float(np.max(np.abs(a[n] - b[n])) / max(np.max(np.abs(a[n])), 1e-300)) for n in a)
        for dtype in ("float64", "float32"):
            c = dataclasses.replace(cfg, dtype=dtype)
            e1 = Engine(c, EngineOptions(implementation="layerwise"), devices=devs[:1])
            eD = Engine(c, EngineOptions(implementation="layerwise"))
            for e in (e1, eD):
                e.set_batch(x, y)
            k1, kD = e1.kernels(ids), eD.kernels(ids)
            out[dtype] = {"diff": rel(k1, kD), "bits": all(np.array_equal(k1[n], kD[n]) for n in k1),
                          "traces": eD.trace_count}
            if dtype == "float64":
                ref, e64 = k1, eD
        # vmap batching: archs per device chosen from XLA's memory analysis and the budget
        big = Engine(cfg, EngineOptions(implementation="layerwise", batching="vmap", max_archs_per_call=2,
                                        memory_budget=1e12))
        small = Engine(cfg, EngineOptions(implementation="layerwise", batching="vmap", memory_budget=1.0))
        for e in (big, small):
            e.set_batch(x, y)
        out["vmap"] = {"apc_big": big.choose_archs_per_call(), "apc_small": small.choose_archs_per_call()}
        out["vmap"]["diff"] = rel(ref, big.kernels(ids))
        rep = run_engine(INDICES[:5], cfg, sys.argv[2], x=x, y=y, batch_digest="tiny", arch_strs=ARCH_STRS,
                         engine=e64, progress=False)
        out.update(scored=rep.n_scored, sharding=str(e64._args(ids[:4])[-1].sharding))
        print(json.dumps(out))
""")


def _env(tmp_path_factory, extra=None):
    env = dict(os.environ)
    env.update(
        JAX_ENABLE_X64="1",
        TESTS_DIR=str(REPO / "tests"),
        PYTHONPATH=str(REPO),
        JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.getbasetemp() / "jax_cache"),
        ROBNTK_COMPILE_CACHE=str(tmp_path_factory.getbasetemp() / "jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    env.update(extra or {})
    return env


def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(engine, cfg, tmp_path, tmp_path_factory):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    st_dir = tmp_path / "store"
    # reference: the same job, uninterrupted, in this process
    x, y = tiny_batch()
    run_engine(
        INDICES,
        cfg,
        tmp_path / "ref",
        x=x,
        y=y,
        batch_digest="tiny",
        arch_strs=ARCH_STRS,
        engine=engine,
        progress=False,
    )
    ref = ResultStore.open(tmp_path / "ref").read().rows

    proc = subprocess.Popen(
        [sys.executable, str(script), "score", str(st_dir)],
        cwd=tmp_path,
        env=_env(tmp_path_factory, {"SLOW_APPEND": "0.5"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    rows_dir = st_dir / "rows"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if rows_dir.is_dir() and len([p for p in rows_dir.iterdir() if p.name.startswith("part-")]) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = ResultStore.open(st_dir).read()
    assert 2 <= len(partial.rows) < len(INDICES)
    # a half-written chunk as a kill during a write leaves it (temporary name): must be ignored
    (rows_dir / ".part-killed.jsonl.x1y2.tmp").write_text('{"nb201_index": 600, "lambda_min_cl')

    res = subprocess.run(
        [sys.executable, str(script), "score", str(st_dir)],
        cwd=tmp_path,
        env=_env(tmp_path_factory),
        capture_output=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    out = json.loads(res.stdout.decode().strip().splitlines()[-1])
    assert out["skipped"] == len(partial.rows) and out["scored"] == len(INDICES) - len(partial.rows)
    final = ResultStore.open(st_dir).read()
    assert final.n_rows == len(INDICES) and final.n_duplicates == 0 and final.n_tmp_ignored == 1
    assert sorted(final.rows) == sorted(ref)
    for i in ref:
        assert rows_equal(final.rows[i], ref[i], rtol=1e-9) is None, (
            i
        )  # XLA:CPU reductions may differ in the last bit between processes


def test_four_local_devices_equal_one(tmp_path, tmp_path_factory):
    """The engine's sharded path (``shard_map`` over 4 forced host devices) gives the rows of one
    device: float64 to 1e-12 relative (XLA:CPU may split a reduction differently per program),
    float32 to 1e-5; with ``vmap`` batching the archs per device come from XLA's memory analysis
    and the budget (a 1-byte budget gives 1, a large one the cap)."""
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    res = subprocess.run(
        [sys.executable, str(script), "devices", str(tmp_path / "st")],
        cwd=tmp_path,
        env=_env(tmp_path_factory, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}),
        capture_output=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    out = json.loads(res.stdout.decode().strip().splitlines()[-1])
    assert out["n_devices"] == 4 and out["scored"] == 5 and "archs" in out["sharding"]
    print(out)
    assert out["float64"]["diff"] <= 1e-12 and out["float32"]["diff"] <= 1e-5, out
    assert out["float64"]["traces"] == 1  # 5 archs: 2 calls of 4 archs (padded), one program
    assert out["vmap"] == {"apc_big": 2, "apc_small": 1, "diff": out["vmap"]["diff"]} and out["vmap"]["diff"] <= 1e-12


def test_cli_flags_are_generated_from_the_config_dataclasses():
    """Every documented field of ScoreConfig / EngineOptions is a flag whose default is the
    dataclass's; only flags the command line sets override it."""
    from robntk.cli import build_parser
    from robntk.commands._common import engine_options, score_config

    a = build_parser().parse_args(
        [
            "score",
            "--all",
            "--out",
            "o.csv",
            "--shard",
            "1/4",
            "--store",
            "s",
            "--implementation",
            "jacobian",
            "--time-budget",
            "60",
            "--pgd-unroll",
            "--eps",
            "2/255",
            "8/255",
            "--beta",
            "0.25",
            "0.75",
            "--bn-mode",
            "train",
            "--attack-bn-mode",
            "eval",
        ]
    )
    assert (a.shard, a.store, a.time_budget) == ("1/4", "s", 60.0)
    o = engine_options(a)
    assert o.implementation == "jacobian" and o.pgd_unroll is True and o.batching == EngineOptions().batching
    c = score_config(a)
    assert c.eps == (2 / 255, 8 / 255) and c.betas == (0.25, 0.75) and c.bn_mode == "train"
    assert c.attack_bn_mode == "eval" and c.batch_size == ScoreConfig().batch_size
    d = build_parser().parse_args(["score", "--arch", "1", "--out", "o.csv"])
    assert score_config(d) == ScoreConfig() and engine_options(d) == EngineOptions()
    r = build_parser().parse_args(["reproduce"])
    assert score_config(r) == ScoreConfig()  # one default protocol: reproduce = score
    assert score_config(build_parser().parse_args(["reproduce", "--batch-size", "8"])).batch_size == 8


def test_slurm_example_commands_parse():
    """The documented SLURM job-array example only uses flags the CLI accepts."""
    import re
    import shlex
    from pathlib import Path

    from robntk.cli import build_parser

    root = Path(__file__).resolve().parents[1] / "experiments" / "slurm"
    env = {"SLURM_ARRAY_TASK_ID": "3", "RUN": "runs/x"}
    seen = []
    for name in ("score_all.sbatch", "merge.sbatch"):
        text = (root / name).read_text().replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("  #")[0].strip()
            if not line.startswith("robntk "):
                continue
            line = re.sub(r"\$\(\(([^)]*)\)\)", lambda m: str(eval(m.group(1))), line)  # $(( arithmetic ))
            line = re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], line)
            argv = [a.replace("*", "0") for a in shlex.split(line)[1:]]
            args = build_parser().parse_args(argv)
            seen.append(args.command)
            if args.command == "score":
                assert args.all and args.shard == "3/16" and args.store == "runs/x/shard_3.store"
                assert args.time_budget == 4 * 3600 - 600
    assert seen == ["score", "merge", "correlate"]


def test_memory_budget_chooses_the_jacobian_chunk(cfg, monkeypatch):
    """Memory without flags: with no ``chunk_size`` and a program XLA estimates above the budget,
    the engine recompiles with the largest power-of-two chunk the estimate allows, halves until it
    fits, says so and records it; a chunk whose program is not smaller is not kept. XLA's
    estimate is replaced by a model (fixed 1 MB + 1 MB per cotangent) so no compile runs; the
    kernels of a chunked program equal the unchunked ones (tests/test_layer_ntk.py, chunk_size)."""
    import dataclasses

    from robntk.scoring import engine as E

    c = dataclasses.replace(
        cfg, bn_mode="train", batch_size=32, dtype="float32"
    )  # 32 cotangents per batch (sum read-out)
    compiles = []

    def fake_compile(self, n_total, per=1e6, fixed=1e6):
        compiles.append(self.chunk_size)
        return fixed + per * (self.chunk_size or self.cotangents_per_batch())

    monkeypatch.setattr(E.Engine, "_compile", fake_compile)
    monkeypatch.setattr(E, "_program_bytes", lambda program: program)
    e = Engine(c, EngineOptions(memory_budget=12.5e6))
    assert e.cotangents_per_batch() == 32
    with pytest.warns(RuntimeWarning, match="chunk_size=8 of 32"):
        assert e._function(1) == 9e6
    # need 33 MB: the linear estimate gives 32 · 12.5/33 → 8 (9 MB ≤ 12.5 MB): one recompile
    assert compiles == [None, 8] and e.chunk_size == 8 and "chunk_size=8" in e.compile_report()["chunk_note"]
    compiles.clear()
    tight = Engine(c, EngineOptions(memory_budget=2.5e6))
    with pytest.warns(RuntimeWarning, match="chunk_size=1 of 32"):
        tight._function(1)
    assert compiles == [None, 2, 1] and tight.chunk_size == 1  # 2 → 3 MB > 2.5 MB, halved to 1
    monkeypatch.setattr(E.Engine, "_compile", lambda self, n: 5e6 if self.chunk_size else 4e6)
    worse = Engine(c, EngineOptions(memory_budget=1e6))
    with pytest.warns(RuntimeWarning, match="chunk_size=None"):
        assert worse._function(1) == 4e6 and worse.chunk_size is None  # chunking did not help: not kept
    roomy = Engine(c, EngineOptions(memory_budget=1e9))
    assert roomy._function(1) == 4e6 and roomy.chunk_size is None and "at once" in roomy.chunk_note
    fixed = Engine(dataclasses.replace(c, chunk_size=4), EngineOptions(memory_budget=1.0))
    assert fixed._function(1) == 5e6 and fixed.chunk_size == 4 and fixed.chunk_note is None  # the flag wins
    ev = Engine(dataclasses.replace(c, bn_mode="eval"), EngineOptions())
    assert ev.cotangents_per_batch() is None  # eval-mode BN, sum read-out: one backward pass, nothing to chunk
