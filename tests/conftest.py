"""Shared fixtures. Real-data tests read the data directory from $ROBNTK_DATA (CI sets it to
../shared/data); when unset, ../shared/data next to the repository is used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    env = os.environ.get("ROBNTK_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _data_dir()
    if not (d / "nb201_archs" / "meta.json").is_file():
        pytest.skip(f"reference data not found at {d}; set ROBNTK_DATA")
    return d


@pytest.fixture(scope="session")
def space(data_dir):
    from robntk.nb201.searchspace import SearchSpace

    return SearchSpace.load(data_dir)


@pytest.fixture(scope="session")
def bench(data_dir):
    """NAS-RobBench-201 read once per session (the default source)."""
    from robntk.data.benchmark import RobBench

    return RobBench.load(data_dir)


@pytest.fixture(scope="module")
def x64():
    """float64 for one test module (``pytestmark = pytest.mark.usefixtures("x64")``); a global
    config update would leak into every other module."""
    import jax

    with jax.enable_x64(True):
        yield
