"""Execute every ``notebooks/*.ipynb`` top to bottom and fail on any cell error.

The kernel is the Python running the tests (a kernelspec written to a temporary JUPYTER_PATH
points at ``sys.executable``), with ``ROBNTK_DATA`` set to the test data directory and the
repository root on ``PYTHONPATH``, so the notebooks import this checkout's robntk. Each notebook
runs in its own directory (``notebooks/``) under a per-notebook timeout (:data:`TIMEOUT_S`).
Needs nbclient, nbformat and ipykernel (skipped if they are missing).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
#: Per-notebook timeout in seconds (per cell for nbclient; the notebooks are sized well below it).
TIMEOUT_S = 300
KERNEL_NAME = "robntk-test-python"


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory, data_dir):
    pytest.importorskip("nbclient")
    pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "robntk test python",
                "language": "python",
            }
        )
    )
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(root))
    mp.setenv("ROBNTK_DATA", str(data_dir))
    mp.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    mp.setenv("MPLBACKEND", "Agg")
    yield
    mp.undo()


def execute_notebook(path: Path, timeout: int = TIMEOUT_S):
    """Run a notebook with the test kernel; returns the executed notebook (nbformat node).

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised.
    """
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name=KERNEL_NAME, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    return nb


def test_notebooks_found():
    assert any(p.name == "benchmark_report.ipynb" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, kernel_env):
    nb = execute_notebook(path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "takes" in first.source.lower()  # says what it shows and how long


def test_harness_uses_this_python_and_fails_on_cell_error(tmp_path, kernel_env, data_dir):
    import nbformat
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# harness self-check\nTakes 2 s."),
        nbformat.v4.new_code_cell(
            f"import os, sys\nassert sys.executable == {sys.executable!r}\n"
            f"assert os.environ['ROBNTK_DATA'] == {str(data_dir)!r}\n"
            f"import robntk\nassert robntk.__file__.startswith({str(REPO)!r})"
        ),
        nbformat.v4.new_code_cell("1 / 0"),
    ]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        execute_notebook(path, timeout=60)
