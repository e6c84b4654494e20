"""The curated face ``import robntk``: cheap to import, every public name resolves to the one
definition in its layer."""

import importlib
import subprocess
import sys

import robntk


def test_import_is_lazy():
    """``import robntk`` imports no JAX (names resolve on first use, PEP 562)."""
    code = "import sys, robntk; print('jax' in sys.modules, robntk.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", robntk.__version__]


def test_every_public_name_is_its_layers_definition():
    for name in robntk.__all__:
        if name == "__version__":
            continue
        module, _, attr = robntk._FACE[name].partition(":")
        assert getattr(robntk, name) is getattr(importlib.import_module(module), attr or name), name
    assert robntk.adversarial_train.__module__ == "robntk.train.loop"
    assert "train" not in robntk._FACE  # robntk.train is the subpackage
    try:
        robntk.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("unknown names must raise AttributeError")
