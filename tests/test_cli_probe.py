"""Every bad input a clear error: the cases an adversarial probe of the commands found, each
through ``robntk.cli.main`` — exit code 2, a one-line message naming the bad value and what is
allowed, checked before any work, nothing written — or the correct behaviour.

Seeds above 2**32 − 1 (``jax.random.PRNGKey`` keeps the low 32 bits), foreign ``--out`` tables,
report sizes, NaN/∞/wrong-type flags, directory-valued and read-only outputs, outputs that would
overwrite inputs, concurrent creation of one result store, and store mismatches that name the
part of the key that differs (config digest, batch hash, parameter definition).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robntk.cli import build_parser, main
from robntk.core import paths, tables
from robntk.core.registry import MAX_SEED, check_seed
from robntk.jobs.store import HEADER, ResultStore, StoreMismatchError, merge_stores

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
HUGE = str(2**40)  # 1099511627776: PRNGKey(2**40) == PRNGKey(0) without x64
RANGE = "<= 2**32 - 1 = 4294967295"

#: The shortest valid command line of each command (besides the flag under test).
BASE = {
    "score": ["score", "--arch", "1", "--out", "o.csv"],
    "correlate": ["correlate", "--scores", "s.csv"],
    "reproduce": ["reproduce"],
    "merge": ["merge", "a", "--into", "m"],
    "report": ["report", "--out-dir", "r"],
    "search": ["search"],
    "proxies": ["proxies", "--arch", "1", "--out", "p.csv"],
    "combine": ["combine", "--scores", "s.csv", "--out", "t.csv"],
    "train": ["train", "--arch", ARCH, "--out", "r"],
    "evaluate": ["evaluate", "--checkpoint", "r", "--out", "m.json"],
    "bound": ["bound"],
}


def _run(argv, cwd: Path, capsys, data_dir: Path | None = None) -> tuple[int, str]:
    """``main(argv)`` in ``cwd`` with an empty (or the given) data directory; (exit code, stderr)."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        empty = cwd / "data"
        empty.mkdir(exist_ok=True)
        code = main(list(argv) + ["--data-dir", str(data_dir or empty)])
    finally:
        os.chdir(old)
    return code, capsys.readouterr().err


def _files(d: Path) -> list[str]:
    """Files and directories under ``d`` besides the empty data directory ``d/data``."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.relative_to(d).parts[0] != "data")


def _one_line_error(code: int, err: str, command: str) -> None:
    assert code == 2, err
    assert err.startswith(f"robntk {command}: error: ") and len(err.strip().splitlines()) == 1, err


@pytest.fixture()
def readonly_dir(tmp_path_factory) -> Path:
    """A directory no file can be created in: mode 0555, or (for root, who may write there) /sys."""
    d = tmp_path_factory.mktemp("ro")
    os.chmod(d, 0o555)
    try:
        fd, p = tempfile.mkstemp(dir=d)
    except OSError:
        yield d
        os.chmod(d, 0o755)
        return
    os.close(fd)
    os.unlink(p)
    os.chmod(d, 0o755)
    try:
        fd, p = tempfile.mkstemp(dir="/sys")
    except OSError:
        yield Path("/sys")
        return
    os.close(fd)
    os.unlink(p)
    pytest.skip("no read-only directory available")


# --------------------------------------------------------------------------- 1. seeds
def test_prngkey_keeps_32_bits_hence_the_seed_range():
    """Why seeds stop at 2**32 − 1: without x64 a larger seed gives a smaller seed's key."""
    import jax

    if not jax.config.jax_enable_x64:
        assert (np.asarray(jax.random.PRNGKey(2**40)) == np.asarray(jax.random.PRNGKey(0))).all()
    assert MAX_SEED == 4294967295 and check_seed(MAX_SEED) == MAX_SEED and check_seed(np.int64(3)) == 3
    with pytest.raises(ValueError, match=r"--seed must be an integer <= 2\*\*32 - 1 = 4294967295 .*got 1099511627776"):
        check_seed(2**40, "--seed")
    with pytest.raises(ValueError, match=r"--seed must be an integer >= 0, got -1 \(allowed: 0 to 2\*\*32 - 1"):
        check_seed(-1, "--seed")
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32 - 1 = 4294967295\], got 1.5"):
        check_seed(1.5)


def test_score_config_refuses_seeds_that_alias():
    from robntk.scoring.config import ScoreConfig

    assert ScoreConfig(seed=MAX_SEED).seed == MAX_SEED
    with pytest.raises(ValueError, match=r"seed must be an integer <= 2\*\*32 - 1 = 4294967295"):
        ScoreConfig(seed=2**40)
    with pytest.raises(ValueError, match=r"attack_seed must be an integer <= 2\*\*32 - 1"):
        ScoreConfig(attack_seed=2**32)


@pytest.mark.parametrize(
    "command, flag",
    [
        ("score", "--seed"),
        ("score", "--init-seeds"),
        ("score", "--attack-seed"),
        ("score", "--attack-seeds"),
        ("reproduce", "--seed"),
        ("reproduce", "--attack-seed"),
        ("proxies", "--seed"),
        ("train", "--seed"),
        ("evaluate", "--seed"),
        ("search", "--seed"),
        ("combine", "--seed"),
        ("combine", "--split-seed"),
        ("correlate", "--seed"),
        ("bound", "--seeds"),
    ],
)
def test_every_seed_flag_refuses_seeds_above_32_bits(command, flag, tmp_path, capsys):
    code, err = _run(BASE[command] + [flag, HUGE], tmp_path, capsys)
    _one_line_error(code, err, command)
    assert f"{flag} must be an integer {RANGE}" in err and f"got {HUGE}" in err
    assert _files(tmp_path) == []


@pytest.mark.parametrize(
    "command, flag", [("correlate", "--seed"), ("combine", "--seed"), ("combine", "--split-seed"), ("bound", "--seeds")]
)
def test_negative_seeds_name_the_flag(command, flag, tmp_path, capsys):
    """Before: numpy's own "expected non-negative integer" (no flag named)."""
    code, err = _run(BASE[command] + [f"{flag}=-1"], tmp_path, capsys)
    _one_line_error(code, err, command)
    assert f"{flag} must be an integer >= 0, got -1 (allowed: 0 to 2**32 - 1 = 4294967295)" in err


# --------------------------------------------------------------------------- 2. foreign --out tables
def _foreign_table(path: Path, sidecar: dict | None = None) -> bytes:
    pd.DataFrame({"nb201_index": [1, 2, 3, 4], "x": [0.1, 0.2, 0.3, 0.4]}).to_parquet(path)
    if sidecar is not None:
        tables.sidecar_path(path).write_text(json.dumps(sidecar))
    return path.read_bytes()


@pytest.mark.parametrize(
    "argv, out, store",
    [
        (["score", "--arch", "1", "--out", "mix.parquet"], "mix.parquet", "mix.parquet.store"),
        (
            ["score", "--arch", "1", "--init-seeds", "0", "1", "--out", "mix.parquet"],
            "mix.parquet",
            "mix.parquet.store",
        ),
        (["proxies", "--arch", "1", "--out", "mix.parquet"], "mix.parquet", "mix.parquet.store"),
    ],
)
def test_existing_out_without_its_store_is_never_overwritten(argv, out, store, tmp_path, capsys):
    """Before: exit 0 and the 4-row table replaced by a 2-row export."""
    before = _foreign_table(tmp_path / out)
    code, err = _run(argv, tmp_path, capsys)
    _one_line_error(code, err, argv[0])
    assert (
        f"--out {out} already exists and is not an export of the store {store} (it has no sidecar naming the "
        f"store that wrote it); refusing to overwrite its rows: choose another --out, or pass --store pointing "
        f"at the store that made it"
    ) in err
    assert (tmp_path / out).read_bytes() == before and _files(tmp_path) == [out]


def test_reproduce_refuses_a_foreign_scores_table(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    before = _foreign_table(tmp_path / "o" / "scores.csv", {"job": "something else"})
    code, err = _run(["reproduce", "--out-dir", "o"], tmp_path, capsys)
    _one_line_error(code, err, "reproduce")
    assert (
        "--out-dir o/scores.csv already exists and is not an export of the store o/scores.csv.store "
        "(its sidecar names no store)" in err
    )
    assert (tmp_path / "o" / "scores.csv").read_bytes() == before


def test_export_target_is_accepted_only_from_its_own_store(tmp_path, monkeypatch):
    """A store's own export may be replaced (resume); another store's, or an export of a store
    that was removed or recreated, may not."""
    from robntk.commands._common import check_export_target

    monkeypatch.chdir(tmp_path)
    out, store = Path("s.csv"), Path("s.csv.store")
    check_export_target(out, store)  # no table yet
    st = ResultStore.open(store, "k1", {"config": {"seed": 0}})
    st.append([{"nb201_index": 1, "v": 0.5}])
    st.export(out)
    check_export_target(out, store)  # its own export (a rerun resumes and re-exports)
    check_export_target(tmp_path / out, tmp_path / store)  # the same store, reached by another path
    other = ResultStore.open("t.store", "k1", {"config": {"seed": 0}})
    with pytest.raises(
        ValueError,
        match=r"--out s.csv already exists and is not an export of the store t.store "
        r"\(it was written from the store s.csv.store\)",
    ):
        check_export_target(out, other.path)
    for p in sorted(store.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    store.rmdir()
    with pytest.raises(ValueError, match=r"\(the store s.csv.store that wrote it no longer exists\)"):
        check_export_target(out, store)
    ResultStore.open(store, "k2", {"config": {"seed": 1}})  # a new store at the same place
    with pytest.raises(ValueError, match=r"\(it was written from an earlier store at s.csv.store \(store key k1\)\)"):
        check_export_target(out, store)
    Path("bad.csv").write_text("nb201_index\n1\n")
    Path("bad.csv.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"--out bad.csv already exists and its sidecar is unreadable"):
        check_export_target(Path("bad.csv"), store)


def test_tables_of_stores_of_sub_stores_are_matched_by_job_and_store(tmp_path, monkeypatch):
    """``proxies`` (one sub-store per proxy) and the aggregate of ``score`` draws: the sidecar's
    ``job`` and ``store`` identify the table; a relative store path recorded from another working
    directory still matches the store next to the table."""
    from robntk.commands._common import check_export_target

    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    out = Path("runs/p.csv")
    out.write_text("nb201_index\n1\n")
    tables.sidecar_path(out).write_text(json.dumps({"job": "proxies", "store": "runs/p.csv.store"}))
    check_export_target(out, Path("runs/p.csv.store"), job="proxies")
    monkeypatch.chdir(tmp_path / "runs")
    check_export_target(Path("p.csv"), Path("p.csv.store"), job="proxies")
    with pytest.raises(ValueError, match=r"\(it was written by 'proxies', not by 'score \(several draws\)'\)"):
        check_export_target(Path("p.csv"), Path("p.csv.store"), job="score (several draws)")
    with pytest.raises(ValueError, match=r"\(it was written from the store runs/p.csv.store\)"):
        check_export_target(Path("p.csv"), Path("other.store"), job="proxies")


def test_score_refuses_an_export_suffix_the_store_cannot_write(tmp_path, capsys):
    """Before: ``--out o.tsv`` passed, ran the whole engine, then failed in the export."""
    code, err = _run(["score", "--arch", "1", "--out", "o.tsv"], tmp_path, capsys)
    _one_line_error(code, err, "score")
    assert "--out must end in .csv or .parquet (a result-store export), got 'o.tsv'" in err


# --------------------------------------------------------------------------- 3. report sizes
@pytest.mark.parametrize(
    "argv, msg",
    [
        (
            ["--search-k", "1000000"],
            "--search-k must be at most 6466 (the architectures of the benchmark), got 1000000",
        ),
        (["--top", "1000000"], "--top must be at most 6466 (the architectures of the benchmark), got 1000000"),
        (["--op-k", "7000"], "--op-k must be at most 6466"),
        (["--overlap-k", "10", "7000"], "--overlap-k must be at most 6466"),
        (["--dpi", "100000"], "--dpi must be an integer in [10, 1200], got 100000"),
        (["--dpi", "5"], "--dpi must be an integer in [10, 1200], got 5"),
    ],
)
def test_report_sizes_are_checked_before_anything_is_written(argv, msg, tmp_path, capsys, data_dir):
    """Before: --search-k 1000000 → KeyError traceback with 17 files written; --dpi 100000 →
    MemoryError traceback."""
    code, err = _run(["report", "--out-dir", "r", "--no-progress"] + argv, tmp_path, capsys, data_dir)
    _one_line_error(code, err, "report")
    assert msg in err and _files(tmp_path) == []


def test_write_report_checks_search_ks_and_references_before_writing(tmp_path, data_dir):
    from robntk.analysis import report_writer
    from robntk.data.benchmark import RobBench

    bench = RobBench.load(data_dir)
    with pytest.raises(ValueError, match=r"every search k \(1000000\) exceeds the 6466 architectures"):
        report_writer.write_report(bench, tmp_path / "r", search_ks=(10**6,), progress=False)
    with pytest.raises(ValueError, match=r"dpi must be an integer in \[10, 1200\], got 5000"):
        report_writer.write_report(bench, tmp_path / "r", dpi=5000, progress=False)
    bad = tmp_path / "bad_refs"  # a corrupt standard-training file: refused before the first figure
    (bad / "nb201_clean_acc").mkdir(parents=True)
    (bad / "nb201_clean_acc" / "nats_bench.csv").write_text("a,b\n1,2\n")
    with pytest.raises(
        ValueError,
        match=r"corrupt NB201 accuracy file .*nats_bench.csv: missing columns "
        r"\['CIFAR10TestAccuracy200Epochs'",
    ):
        report_writer.write_report(bench, tmp_path / "r", data_dir=bad, progress=False)
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- 4. ranges
@pytest.mark.parametrize(
    "argv, msg",
    [
        (
            ["proxies", "--arch", "1", "--out", "p.csv", "--minutes=-1"],
            "--minutes must be a number >= 0 (0: export what is stored), got -1.0",
        ),
        (
            ["proxies", "--arch", "1", "--out", "p.csv", "--minutes", "nan"],
            "--minutes must be a number >= 0 (0: export what is stored), got nan",
        ),
        (
            ["proxies", "--arch", "1", "--out", "p.csv", "--minutes", "inf"],
            "--minutes must be a finite number >= 0 (leave it out for no limit), got inf",
        ),
        (
            ["proxies", "--arch", "1", "--out", "p.csv", "--proxies", "nwot", "nwot"],
            "--proxies lists nwot more than once",
        ),
        (["search", "--threshold", "nan"], "--threshold values must be accuracies in [0, 1], got nan"),
        (["search", "--threshold", "2"], "--threshold values must be accuracies in [0, 1], got 2.0"),
        (["search", "--threshold=-1"], "--threshold values must be accuracies in [0, 1], got -1.0"),
        (["search", "--methods", "rea", "rea"], "--methods lists rea more than once"),
        (["correlate", "--scores", "s.csv", "--columns", "a", "a"], "--columns lists a more than once"),
        (
            ["combine", "--scores", "s.csv", "--out", "t.csv", "--learned", "linear", "linear"],
            "--learned lists linear more than once",
        ),
        (["merge", "a", "--into", "m", "--out", "x.tsv"], "--out must end in .csv or .parquet (a result-store export)"),
        (
            ["search", "--population", "3", "--sample-size", "10"],
            "sample_size (the REA tournament, --sample-size) must be ≤ population (--population 3), got 10",
        ),
        (["search", "--population", "100000"], "population must be ≤ 6466 (the number of distinct architectures)"),
        (["search", "--ls-num-init", "7000"], "ls_num_init must be ≤ 6466"),
        (["search", "--tf-pool", "7000"], "tf_pool must be ≤ 6466"),
        (["search", "--seeds", "100000000"], "n_seeds (--seeds) must be ≤ 10000"),
        (
            ["correlate", "--scores", "s.csv", "--n-boot", "100000000000"],
            "--n-boot must be at most 100000 (the resamples are one n_boot x n_archs array), got 100000000000",
        ),
        (
            ["combine", "--scores", "s.csv", "--out", "t.csv", "--n-boot", "100000000000"],
            "--n-boot must be at most 100000",
        ),
        (["reproduce", "--n-boot", "100000000000"], "--n-boot must be at most 100000"),
        (["score", "--arch", "1", "--out", "o.csv", "--pgd-steps", "100000000000"], "--pgd-steps must be at most 1000"),
        (
            ["score", "--arch", "1", "--out", "o.csv", "--time-budget", "inf"],
            "--time-budget must be a finite number, got inf",
        ),
        (["train", "--arch", ARCH, "--out", "r", "--lr", "inf"], "--lr must be a finite number, got inf"),
        (
            ["evaluate", "--checkpoint", "r", "--out", "m.json", "--pgd-step-factor", "inf"],
            "--pgd-step-factor must be a finite number, got inf",
        ),
        (
            ["evaluate", "--checkpoint", "r", "--out", "m.txt"],
            "--out must end in .json (the metrics record), got 'm.txt'",
        ),
        (["bound", "--widths", "0"], "--widths must be integers >= 1, got 0"),
    ],
)
def test_out_of_range_values_are_refused_before_any_work(argv, msg, tmp_path, capsys):
    code, err = _run(argv, tmp_path, capsys)
    _one_line_error(code, err, argv[0])
    assert msg in err and _files(tmp_path) == []


def test_search_config_ranges():
    from robntk.analysis.search import MAX_SEEDS, SearchConfig

    assert SearchConfig(population=3, sample_size=3).sample_size == 3 and MAX_SEEDS == 10_000
    with pytest.raises(ValueError, match="must be ≤ population"):
        SearchConfig(population=2, sample_size=3)
    with pytest.raises(ValueError, match="seed must be an integer <= 2"):
        SearchConfig(seed=2**32)


# --------------------------------------------------------------------------- 5. outputs
@pytest.mark.parametrize(
    "argv, what",
    [
        (["score", "--arch", "1", "--out", "d.csv"], "--out d.csv"),
        (["proxies", "--arch", "1", "--out", "d.csv"], "--out d.csv"),
        (["correlate", "--scores", "s.csv", "--out", "d.csv"], "--out d.csv"),
        (["combine", "--scores", "s.csv", "--out", "d.csv"], "--out d.csv"),
        (["combine", "--scores", "s.csv", "--out", "t.csv", "--write-scores", "d.csv"], "--write-scores d.csv"),
        (["merge", "a", "--into", "m", "--out", "d.csv"], "--out d.csv"),
        (["evaluate", "--checkpoint", "r", "--out", "d.csv.json"], "--out d.csv.json"),
    ],
)
def test_directory_valued_outputs_name_the_users_path(argv, what, tmp_path, capsys):
    """Before: ``[Errno 21] Is a directory: '.../.d.xyz.csv' -> 'd.csv'`` (a temporary file)."""
    (tmp_path / what.split()[1]).mkdir()
    code, err = _run(argv, tmp_path, capsys)
    _one_line_error(code, err, argv[0])
    assert f"{what} is a directory; give a file path" in err and ".tmp" not in err


@pytest.mark.parametrize(
    "argv, what",
    [
        (["search", "--out", "f"], "--out f"),
        (["report", "--out-dir", "f"], "--out-dir f"),
        (["reproduce", "--out-dir", "f"], "--out-dir f"),
        (["train", "--arch", ARCH, "--out", "f"], "--out f"),
        (["bound", "--out", "f"], "--out f"),
        (["score", "--arch", "1", "--out", "o.csv", "--store", "f"], "--store f"),
        (["proxies", "--arch", "1", "--out", "o.csv", "--store", "f"], "--store f"),
    ],
)
def test_file_where_a_directory_is_needed(argv, what, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, err = _run(argv, tmp_path, capsys)
    _one_line_error(code, err, argv[0])
    assert f"{what} is a file, not a directory" in err and _files(tmp_path) == ["f"]


@pytest.mark.parametrize("sub", ["status", "fetch"])
def test_data_dir_that_is_a_file(sub, tmp_path, capsys):
    """Before: ``data fetch --data-dir FILE`` → ``[Errno 20] Not a directory: 'FILE/.downloads'``;
    ``data status --data-dir FILE`` → exit 0, every entry "missing"."""
    (tmp_path / "f").write_text("x")
    code = main(
        ["data", sub, "--data-dir", str(tmp_path / "f"), "--mirror" if sub == "fetch" else "--verify"]
        + (["file:///nonexistent"] if sub == "fetch" else [])
    )
    err = capsys.readouterr().err
    _one_line_error(code, err, "data")
    assert f"--data-dir {tmp_path / 'f'} is a file, not a directory" in err and _files(tmp_path) == ["f"]


def test_combine_checks_every_output_before_any_work(tmp_path, capsys, readonly_dir):
    """Before: --write-scores into a read-only place failed after --out had been written."""
    ro = readonly_dir / "w.csv"
    code, err = _run(
        ["combine", "--scores", "suite_zero", "--out", "t.csv", "--write-scores", str(ro)], tmp_path, capsys
    )
    _one_line_error(code, err, "combine")
    assert f"cannot write --write-scores {ro}: directory {readonly_dir} is not writable" in err
    assert _files(tmp_path) == []


@pytest.mark.parametrize(
    "command, flag",
    [("score", "--out"), ("proxies", "--out"), ("correlate", "--out"), ("combine", "--out"), ("evaluate", "--out")],
)
def test_read_only_outputs_are_refused_before_work(command, flag, tmp_path, capsys, readonly_dir):
    target = readonly_dir / ("m.json" if command == "evaluate" else "o.csv")
    argv = [a if a not in ("o.csv", "p.csv", "t.csv", "m.json") else str(target) for a in BASE[command]]
    if command == "correlate":
        argv += ["--out", str(target)]
    code, err = _run(argv, tmp_path, capsys)
    _one_line_error(code, err, command)
    assert f"cannot write {flag} {target}: directory {readonly_dir} is not writable" in err


@pytest.mark.parametrize(
    "argv, msg",
    [
        (["correlate", "--scores", "s.csv", "--out", "s.csv"], "--out and --scores are the same file (s.csv)"),
        (["correlate", "--scores", "s.csv", "--out", "c.csv", "--figure", "s.csv"], "--figure must end in .png"),
        (["correlate", "--scores", "s.csv", "--out", "c.csv", "--figure", "fig"], "--figure must end in .png"),
        (["combine", "--scores", "s.csv", "--out", "s.csv"], "--out and --scores are the same file (s.csv)"),
        (
            ["combine", "--scores", "s.csv", "--out", "t.csv", "--write-scores", "t.csv"],
            "--write-scores and --out are the same file (t.csv)",
        ),
    ],
)
def test_outputs_never_overwrite_inputs(argv, msg, tmp_path, capsys):
    """Before: ``correlate --scores s.csv --out s.csv`` replaced the scores by the τ table (exit 0)."""
    (tmp_path / "s.csv").write_text("nb201_index,a\n1,0.5\n")
    code, err = _run(argv, tmp_path, capsys)
    _one_line_error(code, err, argv[0])
    assert msg in err and (tmp_path / "s.csv").read_text() == "nb201_index,a\n1,0.5\n"
    assert _files(tmp_path) == ["s.csv"]


def test_atomic_writers_name_the_users_path(tmp_path):
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(IsADirectoryError) as exc:
        tables.write_table(pd.DataFrame({"a": [1]}), tmp_path / "d.csv")
    assert str(exc.value) == f"cannot write {tmp_path / 'd.csv'}: Is a directory"
    with pytest.raises(IsADirectoryError, match="cannot write .*d.csv: Is a directory"):
        with paths.atomic_write(tmp_path / "d.csv") as fh:
            fh.write("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]  # no temporary left


def test_check_writable_kinds(tmp_path, readonly_dir):
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    assert tables.check_writable(tmp_path / "new" / "deeper", "--out", kind="dir") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()
    with pytest.raises(NotADirectoryError, match=r"--out .*f is a file, not a directory"):
        tables.check_writable(tmp_path / "f", "--out", kind="dir")
    with pytest.raises(IsADirectoryError, match=r"--out .*d is a directory; give a file path"):
        tables.check_writable(tmp_path / "d", "--out", kind="file")
    with pytest.raises(PermissionError, match=r"cannot write --out .*f/x.csv: .*f is a file, not a directory"):
        tables.check_writable(tmp_path / "f" / "x.csv", "--out")
    with pytest.raises(PermissionError, match="is not writable"):
        tables.check_writable(readonly_dir / "x" / "y.csv", "--out")
    with pytest.raises(ValueError, match="kind must be one of"):
        tables.check_writable(tmp_path, kind="folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f"]  # the probe file is gone


# --------------------------------------------------------------------------- 6. wrong types, NaN, ∞
def _typed_flags():
    """(command, flag, type) of every flag that parses its value (not a plain string)."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for cmd, p in sub.choices.items():
        if cmd not in BASE:
            continue
        for a in p._actions:
            if a.option_strings and a.type not in (None, str) and a.option_strings[0] != "--data-dir":
                out.append((cmd, a.option_strings[0], a.type))
    return out


TYPED = _typed_flags()


@pytest.mark.parametrize("command, flag", [(c, f) for c, f, _ in TYPED])
def test_every_typed_flag_with_a_wrong_type_names_the_flag(command, flag, tmp_path, capsys):
    code, err = _run(BASE[command] + [flag, "abc"], tmp_path, capsys)
    _one_line_error(code, err, command)
    assert f"argument {flag}: " in err and "abc" in err
    assert _files(tmp_path) == []


@pytest.mark.parametrize("command, flag, value", [(c, f, v) for c, f, t in TYPED if t is float for v in ("nan", "inf")])
def test_every_float_flag_refuses_nan_and_inf(command, flag, value, tmp_path, capsys):
    code, err = _run(BASE[command] + [flag, value], tmp_path, capsys)
    _one_line_error(code, err, command)
    assert value in err and _files(tmp_path) == []


def test_the_typed_flags_are_covered():
    flags = {(c, f) for c, f, _ in TYPED}
    assert {
        ("score", "--seed"),
        ("score", "--time-budget"),
        ("train", "--lr"),
        ("search", "--threshold"),
        ("report", "--dpi"),
        ("merge", "--rtol"),
        ("proxies", "--minutes"),
    } <= flags
    assert sum(t is float for _, _, t in TYPED) >= 15


# --------------------------------------------------------------------------- 7. concurrent creation
#: A writer process: wait for the start signal, then open (creating) and append to each store in turn.
WRITER = """
import os, sys, time
from robntk.jobs.store import ResultStore
root, me, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
while not os.path.exists(os.path.join(root, "go")):
    time.sleep(0.001)
for t in range(n):
    st = ResultStore.open(os.path.join(root, "p.csv.store", f"proxy{t}"), "k", {"config": {"proxy": t}})
    st.append([{"nb201_index": me, "v": float(me)}])
"""


def test_concurrent_writers_create_one_store(tmp_path):
    """Before: a second writer could see the store directory before its header and was told
    "not a robntk result store". Now a store is built aside and renamed into place: four
    processes racing to create the same 20 stores all succeed, and each store holds one header
    and every writer's row."""
    import subprocess
    import sys

    n, writers = 20, 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(i), str(n)], stderr=subprocess.PIPE, text=True
        )
        for i in range(writers)
    ]
    (tmp_path / "go").write_text("")
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * writers, errs
    for t in range(n):
        path = tmp_path / "p.csv.store" / f"proxy{t}"
        assert sorted(p.name for p in path.iterdir()) == [HEADER, "rows"]
        assert ResultStore.open(path, "k").done() == set(range(writers))
    assert [p.name for p in (tmp_path / "p.csv.store").iterdir() if p.name.startswith(".")] == []


def test_store_creation_is_atomic_and_replaces_an_empty_directory(tmp_path, monkeypatch):
    seen = []
    real = os.rename

    def spy(src, dst):  # what appears at the store path is complete
        seen.append(sorted(p.name for p in Path(src).iterdir()))
        return real(src, dst)

    monkeypatch.setattr(os, "rename", spy)
    (tmp_path / "empty").mkdir()
    (tmp_path / "old" / "rows").mkdir(parents=True)  # half-made by an older robntk: no rows, no header
    for name in ("new", "empty", "old"):
        st = ResultStore.open(tmp_path / name, "k", {"config": {}})
        assert st.header["store_key"] == "k" and sorted(p.name for p in (tmp_path / name).iterdir()) == [HEADER, "rows"]
    assert seen == [[HEADER, "rows"]] * 3
    assert oct((tmp_path / "new").stat().st_mode & 0o777) == oct(0o777 & ~_umask())
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="file is a file, not a robntk result store"):
        ResultStore.open(tmp_path / "file", "k", {})


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


# --------------------------------------------------------------------------- 8. mismatch messages
ENGINE_HEADER = {
    "config": {"seed": 0, "batch_size": 32},
    "config_digest": "c0",
    "batch_sha256_16": "b0",
    "param_definition": "supernet-foldin-crc32-v1",
}


def test_resume_with_another_batch_names_the_batch_hash(tmp_path):
    """Before: "different configuration" only (the configs were equal; the batch was not)."""
    ResultStore.open(tmp_path / "s", "k0", ENGINE_HEADER)
    with pytest.raises(StoreMismatchError) as exc:
        ResultStore.open(tmp_path / "s", "k1", {**ENGINE_HEADER, "batch_sha256_16": "b1"})
    assert str(exc.value) == (
        f"store {tmp_path / 's'} was written with a different configuration: batch hash "
        f'(batch_sha256_16): stored "b0", now "b1" (store key k0 != k1); use another store '
        "directory, or the same configuration to resume"
    )
    with pytest.raises(
        StoreMismatchError,
        match=r"config digest \(config_digest\): stored \"c0\", now \"c1\"; "
        r"config.seed: stored 0, now 1 \(store key",
    ):
        ResultStore.open(
            tmp_path / "s", "k2", {**ENGINE_HEADER, "config_digest": "c1", "config": {"seed": 1, "batch_size": 32}}
        )
    with pytest.raises(
        StoreMismatchError,
        match=r"parameter definition \(param_definition\): stored "
        r"\"supernet-foldin-crc32-v1\", now \"v2\"",
    ):
        ResultStore.open(tmp_path / "s", "k3", {**ENGINE_HEADER, "param_definition": "v2"})
    with pytest.raises(StoreMismatchError, match="different configuration: its config:"):  # nothing to compare
        ResultStore.open(tmp_path / "s", "k4")


def test_proxy_store_mismatch_names_the_batch_hash(tmp_path):
    """Proxy stores keep the batch hash inside their config."""
    ResultStore.open(tmp_path / "nwot", "k0", {"config": {"proxy": "nwot", "batch_sha256_16": "aa", "seed": 0}})
    with pytest.raises(
        StoreMismatchError,
        match=r"batch hash \(config.batch_sha256_16\): stored \"aa\", now \"bb\" "
        r"\(store key k0 != k1\)",
    ):
        ResultStore.open(tmp_path / "nwot", "k1", {"config": {"proxy": "nwot", "batch_sha256_16": "bb", "seed": 0}})


def test_merge_mismatch_names_what_differs(tmp_path):
    ResultStore.open(tmp_path / "s0", "k0", ENGINE_HEADER)
    ResultStore.open(tmp_path / "s1", "k1", {**ENGINE_HEADER, "batch_sha256_16": "b1"})
    with pytest.raises(
        StoreMismatchError,
        match=r"different configurations \(batch hash \(batch_sha256_16\): "
        rf"{tmp_path / 's0'} \"b0\", {tmp_path / 's1'} \"b1\"\)",
    ):
        merge_stores([tmp_path / "s0", tmp_path / "s1"], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_merge_refuses_a_foreign_out_and_names_into(tmp_path, capsys):
    for i in (0, 1):
        ResultStore.open(tmp_path / f"s{i}", "k", {"config": {}, "selection": [0, 1]}).append(
            [{"nb201_index": i, "v": float(i)}]
        )
    (tmp_path / "all.csv").write_text("nb201_index\n5\n")
    code, err = _run(["merge", "s0", "s1", "--into", "m", "--out", "all.csv"], tmp_path, capsys)
    _one_line_error(code, err, "merge")
    assert "--out all.csv already exists and is not an export of the store m" in err
    assert "choose another --out, or pass --into pointing at the store that made it" in err
    assert (tmp_path / "all.csv").read_text() == "nb201_index\n5\n" and not (tmp_path / "m").exists()
    code, _ = _run(["merge", "s0", "s1", "--into", "m", "--out", "ok.csv"], tmp_path, capsys)
    assert code == 0
    code, _ = _run(["merge", "s0", "s1", "--into", "m", "--out", "ok.csv"], tmp_path, capsys)  # its own export
    assert code == 0 and sorted(pd.read_csv(tmp_path / "ok.csv")["nb201_index"]) == [0, 1]


def test_merge_cli_missing_and_file_sources(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, err = _run(["merge", "nope", "--into", "m"], tmp_path, capsys)
    _one_line_error(code, err, "merge")
    assert "shard store nope not found" in err
    code, err = _run(["merge", "f", "--into", "m"], tmp_path, capsys)
    assert "shard store f is a file, not a robntk result store directory" in err
    assert _files(tmp_path) == ["f"]
