"""Benchmark: compile once per machine — the first and the second run of the default commands.

In one run on one machine, each in a fresh subprocess:

1. ``robntk score --arch 2581`` with an empty compilation cache, then again with the cache the
   first run filled (a new output, so the arch is scored again rather than resumed);
2. ``robntk reproduce --sample 5`` with another empty cache, then again warm.

For each run it records the wall seconds of the whole command, its CPU seconds and peak RSS
(``os.wait4``), the compile seconds the engine reports (``compile_cache.compile_s`` of the
table's sidecar: tracing + lowering + compiling, or loading from the cache), how the program was
obtained (traces, JAX cache hits and writes) and the 1-, 5- and
15-minute load averages before and after (:func:`os.getloadavg`; the machine may be shared).
It also checks that the warm run's scores equal the cold run's bit for bit.

Usage (one command; writes the JSON)::

    ROBNTK_DATA=../shared/data python benchmarks/bench_compile.py --out benchmarks/compile_cpu.json

``--extra`` passes flags to both commands (e.g. ``--extra=--no-pgd-unroll`` for the rolled
PGD loop), ``--skip-reproduce`` runs only the ``score`` pair.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAMBDA_PREFIXES = ("lambda_", "cond_", "trace_", "logdet_")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def run_command(argv: list[str], env: dict[str, str], cwd: Path) -> dict:
    """Run ``robntk argv`` in a fresh process: wall and CPU seconds, peak RSS (its own rusage,
    ``os.wait4``), load averages before and after, the end of its stdout.

    Raises:
        RuntimeError: the command failed (its stderr tail is in the message).
    """
    cmd = [sys.executable, "-m", "robntk.cli", *argv]
    load_before = os.getloadavg()
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fo, stderr=fe)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read().decode(), fe.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"robntk {' '.join(argv)} exited {proc.returncode}: {err[-2000:]}")
    return {
        "argv": argv,
        "wall_s": round(wall, 2),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
        "max_rss_gb": round(ru.ru_maxrss / 1e6, 2),
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "stdout_tail": out[-600:],
    }


def _sidecar(table: Path) -> dict:
    side = json.loads(Path(str(table) + ".json").read_text())
    cc = side.get("compile_cache") or {}
    keep = ("compile_s", "compile_cpu_s", "traces", "jax_cache_hits", "hits", "writes", "dir")
    return {k: cc.get(k) for k in keep}


def _scores(table: Path):
    import pandas as pd

    df = pd.read_csv(table).sort_values("nb201_index").reset_index(drop=True)
    return df[["nb201_index"] + [c for c in df.columns if c.startswith(LAMBDA_PREFIXES)]]


def pair(name: str, argv_for, table_for, env: dict, work: Path) -> dict:
    """The cold and the warm run of one command with the cache ``env`` points at."""
    runs = []
    for k in ("first", "second"):
        r = run_command(argv_for(k), env, work)
        r.update(run=k, **_sidecar(table_for(k)))
        print(
            json.dumps(
                {
                    "command": name,
                    **{
                        x: r[x]
                        for x in (
                            "run",
                            "wall_s",
                            "cpu_s",
                            "compile_s",
                            "compile_cpu_s",
                            "jax_cache_hits",
                            "load_before",
                        )
                    },
                }
            ),
            flush=True,
        )
        runs.append(r)
    a, b = _scores(table_for("first")), _scores(table_for("second"))
    equal = a.shape == b.shape and bool((a.to_numpy() == b.to_numpy()).all())
    frac = lambda k: None if not runs[0][k] else round(runs[1][k] / runs[0][k], 4)
    return {
        "command": name,
        "runs": runs,
        "scores_bit_identical": equal,
        "second_compile_fraction": frac("compile_s"),
        "second_compile_cpu_fraction": frac("compile_cpu_s"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--data-dir", default=None, help="data directory (default $ROBNTK_DATA)")
    ap.add_argument("--arch", default="2581", help="arch of the score pair")
    ap.add_argument("--sample", type=int, default=5, help="archs of the reproduce pair")
    ap.add_argument("--extra", default="", help="flags added to both commands, e.g. --extra=--no-pgd-unroll")
    ap.add_argument("--skip-reproduce", action="store_true")
    ap.add_argument("--work-dir", default=None, help="where outputs and caches go (default: a temporary directory)")
    args = ap.parse_args(argv)
    if args.sample < 1:
        raise SystemExit(f"--sample must be >= 1, got {args.sample}")

    tmp = tempfile.TemporaryDirectory(prefix="bench_compile_") if args.work_dir is None else None
    work = Path(args.work_dir or tmp.name).resolve()
    work.mkdir(parents=True, exist_ok=True)
    base_env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if args.data_dir:
        base_env["ROBNTK_DATA"] = str(Path(args.data_dir).resolve())
    extra = shlex.split(args.extra)
    import jax

    res = {
        "benchmark": "bench_compile",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "git_commit": _git_commit(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
        },
        "extra_flags": extra,
        "pairs": [],
    }

    env = dict(base_env, ROBNTK_COMPILE_CACHE=str(work / "cache_score"))
    res["pairs"].append(
        pair(
            f"score --arch {args.arch}",
            lambda k: ["score", "--arch", args.arch, "--out", str(work / f"score_{k}.csv"), "--no-progress", *extra],
            lambda k: work / f"score_{k}.csv",
            env,
            work,
        )
    )
    if not args.skip_reproduce:
        env = dict(base_env, ROBNTK_COMPILE_CACHE=str(work / "cache_reproduce"))
        res["pairs"].append(
            pair(
                f"reproduce --sample {args.sample}",
                lambda k: [
                    "reproduce",
                    "--sample",
                    str(args.sample),
                    "--out-dir",
                    str(work / f"reproduce_{k}"),
                    "--no-progress",
                    "--n-boot",
                    "20",
                    *extra,
                ],
                lambda k: work / f"reproduce_{k}" / "scores.csv",
                env,
                work,
            )
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
