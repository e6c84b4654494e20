"""The README's Python API example runs as written (in a fresh interpreter) and prints two
positive eigenvalues; the README's commands parse with the real CLI parser."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

from robntk.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(heading: str, lang: str) -> str:
    text = README.read_text()
    section = text.split(f"## {heading}", 1)[1]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def test_python_api_example_runs_as_written(data_dir):
    code = _block("Python API", "python")
    env = {"ROBNTK_DATA": str(data_dir), "PATH": "/usr/bin:/bin", "PYTHONPATH": str(README.parent)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    lam = [float(v) for v in res.stdout.split()]
    assert len(lam) == 2 and all(v > 0 for v in lam)


def test_readme_commands_parse():
    text = _block("Command line", "bash").replace("\\\n", " ")
    n = 0
    for line in text.splitlines():
        line = line.split("  #")[0].strip()
        if not line.startswith("robntk ") or "--help" in line or "..." in line:
            continue
        build_parser().parse_args(shlex.split(line)[1:])
        n += 1
    assert n >= 10
