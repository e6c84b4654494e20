"""Parity of robntk's adversarial training and evaluation with NAS-RobBench-201's own PyTorch code.

:mod:`robntk.parity.torch_reference` rebuilds, in PyTorch, what the benchmark ran
(github.com/TT2408/nasrobbench201 ``main.py``, ``utils_data.py`` and its copy of AutoDL's
TinyNetwork, ``libnas/lib/models/``; attacks from torchattacks 3.4.0), converts robntk's weights
into it, and replays robntk's training steps and evaluation attacks with the same batches,
augmentation decisions and random starts, so the two can be compared number by number
(``tests/test_parity_train.py``, ``tests/test_parity_eval.py``, ``experiments/parity/``).

This package is the only place in robntk that imports ``torch`` (and ``torchattacks``), and only
when :mod:`robntk.parity.torch_reference` is imported: ``import robntk`` never needs them. Install
them with the ``parity`` extra (``pip install -e '.[parity]'`` then
``pip install --no-deps torchattacks==3.4.0``: torchattacks declares a torchvision dependency that it
does not import, and PyPI's torchvision does not import beside the pinned CPU torch).
"""

from __future__ import annotations

__all__ = ["torch_reference"]


def __getattr__(name: str):
    if name == "torch_reference":  # imported on first use only: it imports torch
        import importlib

        return importlib.import_module("robntk.parity.torch_reference")
    raise AttributeError(f"module 'robntk.parity' has no attribute {name!r}")
