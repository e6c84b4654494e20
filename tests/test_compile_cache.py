"""The persistent compilation cache (robntk.core.compile_cache): where it lives (flag > env >
JAX's own setting > XDG > home, or off), the command-line flags, and that a second process with
the same configuration loads the engine's program instead of compiling it (tiny network; every
cache lives under tmp_path, never in the real ~/.cache)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from robntk.core import compile_cache as cc

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- resolution
def test_resolve_precedence(tmp_path):
    env = {"HOME": "/home/u"}
    assert cc.resolve(None, env, jax_dir="", backend="gpu") == (Path("/home/u/.cache/robntk/jax-cache"), "home")
    env["XDG_CACHE_HOME"] = "relative/dir"  # the XDG spec ignores relative paths
    assert cc.resolve(None, env, jax_dir="", backend="gpu") == (Path("/home/u/.cache/robntk/jax-cache"), "home")
    env["XDG_CACHE_HOME"] = "/xdg"
    assert cc.resolve(None, env, jax_dir="", backend="gpu") == (Path("/xdg/robntk/jax-cache"), "xdg")
    assert cc.resolve(None, env, jax_dir="/jaxdir") == (Path("/jaxdir"), "jax")  # JAX's own setting is kept
    assert cc.resolve(None, env, jax_dir="", backend="cpu") == (None, "cpu")  # off by default on XLA:CPU
    env[cc.ENV_VAR] = str(tmp_path / "env")
    assert cc.resolve(None, env, jax_dir="/jaxdir") == (tmp_path / "env", "env")
    env[cc.ENV_VAR] = " "  # blank = unset
    assert cc.resolve(None, env, jax_dir="", backend="gpu") == (Path("/xdg/robntk/jax-cache"), "xdg")
    for off in ("off", "OFF", " Off "):
        env[cc.ENV_VAR] = off
        assert cc.resolve(None, env, jax_dir="/jaxdir") == (None, "env")
    # the explicit option beats everything; False / 'off' disable; True = the default choice
    assert cc.resolve(str(tmp_path / "opt"), env, jax_dir="") == (tmp_path / "opt", "option")
    assert cc.resolve(False, {}, jax_dir="") == (None, "option")
    assert cc.resolve("off", {}, jax_dir="") == (None, "option")
    assert cc.resolve(True, {"HOME": "/h"}, jax_dir="") == (Path("/h/.cache/robntk/jax-cache"), "home")
    assert cc.resolve("~/c", {}, jax_dir="")[0] == Path("~/c").expanduser()


def test_resolve_rejects_bad_values(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="exists and is not a directory"):
        cc.resolve(str(f), {}, jax_dir="")
    with pytest.raises(ValueError, match=f"\\${cc.ENV_VAR} .* exists and is not a directory"):
        cc.resolve(None, {cc.ENV_VAR: str(f)}, jax_dir="")
    for bad in ("", 3):
        with pytest.raises(ValueError, match="must be a directory or 'off'"):
            cc.resolve(bad, {}, jax_dir="")


def test_cli_flags_are_taken_out_of_the_command_line(capsys):
    argv = ["score", "--arch", "1", "--compile-cache", "/c", "--out", "o.csv"]
    assert cc.pop_cli_flags(argv) == (["score", "--arch", "1", "--out", "o.csv"], "/c")
    assert cc.pop_cli_flags(["--compile-cache=/d", "score"]) == (["score"], "/d")
    assert cc.pop_cli_flags(["score", "--no-compile-cache"]) == (["score"], False)
    assert cc.pop_cli_flags(["--compile-cache", "/c", "--no-compile-cache"])[1] is False  # the last one wins
    assert cc.pop_cli_flags(["score"]) == (["score"], None)
    assert cc.pop_cli_flags(["x", "--", "--no-compile-cache"]) == (["x", "--", "--no-compile-cache"], None)
    for bad in (["--compile-cache"], ["--compile-cache", "--arch"], ["--compile-cache="]):
        with pytest.raises(ValueError, match="needs a directory"):
            cc.pop_cli_flags(bad)
    with pytest.raises(SystemExit) as exc:
        cc.cli_hook(["score", "--compile-cache"])
    assert exc.value.code == 2 and "robntk: error: --compile-cache needs a directory" in capsys.readouterr().err


def test_help_lists_the_flags():
    import argparse

    p = argparse.ArgumentParser()
    cc.add_arguments(p)
    text = p.format_help()
    assert "--compile-cache DIR" in text and "--no-compile-cache" in text and cc.ENV_VAR in text


# --------------------------------------------------------------------------- two processes
SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from robntk.core import compile_cache
    from robntk.scoring.config import ScoreConfig
    from robntk.scoring.engine import Engine, EngineOptions
    from robntk.nb201.cell import op_ids

    cfg = ScoreConfig(batch_size=4, C=2, N=1, pgd_steps=1, eps=(8 / 255,), bn_mode="eval")
    eng = Engine(cfg, EngineOptions(implementation="layerwise"))
    rng = np.random.default_rng(0)
    eng.set_batch(rng.uniform(size=(4, 8, 8, 3)), rng.integers(0, 10, 4).astype(np.int32))
    k = eng.kernels(np.stack([op_ids([3, 2, 4, 1, 3, 0]), op_ids([1, 3, 3, 2, 4, 3])]))
    print(json.dumps({**eng.compile_report(), "kernels": {n: v.tolist() for n, v in k.items()}}))
""")


def _run(script: Path, env_value: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT"))}
    env.update({cc.ENV_VAR: env_value, "PYTHONPATH": str(REPO), "HOME": str(tmp_path / "home")})
    env.pop("XDG_CACHE_HOME", None)
    res = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, timeout=600)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    return json.loads(res.stdout.decode().strip().splitlines()[-1])


def test_second_process_loads_the_program_from_the_cache(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    cache = tmp_path / "cache"
    first = _run(script, str(cache), tmp_path)
    assert first["dir"] == str(cache.resolve()) and first["source"] == "env" and first["enabled"]
    assert first["traces"] == 1 and first["writes"] >= 1 and first["jax_cache_hits"] == 0
    jax_entries = [p for p in cache.iterdir() if p.name.startswith("jit__batched")]
    assert len(jax_entries) == 1  # the engine's program, written once

    second = _run(script, str(cache), tmp_path)
    assert second["traces"] == 1 and second["jax_cache_hits"] == 1 and second["used"]  # traced, not compiled
    assert second["kernels"] == first["kernels"]  # the same executable: the same bits
    assert second["compile_s"] < first["compile_s"]

    off = _run(script, "off", tmp_path)
    assert not off["enabled"] and off["dir"] is None and off["traces"] == 1 and off["hits"] == 0
    assert off["kernels"] == first["kernels"]
    assert not (tmp_path / "home" / ".cache").exists()  # nothing went to the default location
