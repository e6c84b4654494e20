"""Zero-cost proxies of NB201 networks computed by robntk in JAX (NASLib's definitions).

Every proxy is a pure function ``proxy(net, variables, cell, x, y, key) -> scalar`` of

* ``net``: a :class:`robntk.nb201.network.TinyNetwork` (its ``dataset`` normalisation is applied to
  ``x`` first; the proxies then act on the *normalised* input, as NASLib's networks do, which see
  normalised tensors);
* ``variables``: the full-tree ``{'params', 'batch_stats'}`` of ``net.init`` (every op of every
  edge), so that a cell given as data selects its ops inside one compiled function;
* ``cell``: an arch string / 6 op names (fixed) or int (6,) op ids (data; may be traced: one
  ``jax.jit`` serves all 15,625 cells);
* ``x``: (B, H, W, 3) float images in [0, 1]; ``y``: (B,) int labels; ``key``: PRNG key (used by
  ``zen`` alone, for its Gaussian inputs and weights; every other proxy is deterministic given
  the weights and the batch — kept for the one signature).

BN mode: batch statistics (``train=True``), as NASLib's ``find_measures`` runs the network in
``train()`` mode; ``synflow`` alone is BN-free (NASLib's ``bn=False``). Undefined values: the
proxies added after NASLib's set (``epe_nas``, ``zen``, ``zico``, ``tenas_ntk_cond``,
``linear_regions``, ``croze``) return NaN for a cell without an input→output path
(:func:`connected`), ``jacov`` is NaN there by its definition; :func:`proxy_table` flags every
such cell for every proxy that needs a forward pass. Layers summed over
("every prunable layer" in NASLib: ``nn.Conv2d`` and ``nn.Linear`` weights): the stem conv, the
conv of every *chosen* conv edge, the reduction blocks' ``conv_a``, ``conv_b`` and shortcut
conv, and the classifier. Parameters of ops a cell does not use never count (they receive zero
gradients; ``l2_norm`` masks them explicitly).

Modules, by the pass a proxy needs: :mod:`~robntk.proxies.closed_form` (``params``, ``flops``),
:mod:`~robntk.proxies.gradient` (one loss backward: ``grad_norm``, ``snip``, ``plain``,
``fisher``, ``grasp``; ``synflow``, ``l2_norm``), :mod:`~robntk.proxies.activation` (ReLU codes
and input Jacobians: ``nwot``, ``linear_regions``, ``jacov``, ``epe_nas``),
:mod:`~robntk.proxies.zen_zico_tenas` (``zen``, ``zico``, ``tenas_ntk_cond``),
:mod:`~robntk.proxies.robust` (``croze``); :mod:`~robntk.proxies.table` holds the suite
(:data:`PROXIES`) and :func:`proxy_table`, the resumable job over many archs.

References: NASLib ``naslib/predictors/pruners/measures/*.py`` (automl/NASLib) and
SamsungLabs/zero-cost-nas ``foresight/pruners/measures/*.py`` (Abdelfattah et al., "Zero-Cost
Proxies for Lightweight NAS", ICLR 2021); NAS-Bench-Suite-Zero (Krishnakumar et al., NeurIPS
2022 D&B) for the released values (:mod:`robntk.data.suite_zero`).
"""

from robntk.proxies._common import Proxy, connected
from robntk.proxies.activation import epe_nas, input_jacobian_proxies, jacov, linear_regions, nwot, relu_inputs
from robntk.proxies.closed_form import flop_count, flops, param_count, params
from robntk.proxies.gradient import fisher, grad_norm, grasp, l2_norm, loss_gradient_proxies, plain, snip, synflow
from robntk.proxies.robust import croze
from robntk.proxies.table import CLOSED_FORM, FLOAT64_PROXIES, GROUPS, PROXIES, check_proxy_names, proxy_table
from robntk.proxies.zen_zico_tenas import tenas_ntk_cond, zen, zico

__all__ = [
    "CLOSED_FORM",
    "FLOAT64_PROXIES",
    "GROUPS",
    "PROXIES",
    "Proxy",
    "check_proxy_names",
    "connected",
    "croze",
    "epe_nas",
    "fisher",
    "flop_count",
    "flops",
    "grad_norm",
    "grasp",
    "input_jacobian_proxies",
    "jacov",
    "l2_norm",
    "linear_regions",
    "loss_gradient_proxies",
    "nwot",
    "param_count",
    "params",
    "plain",
    "proxy_table",
    "relu_inputs",
    "snip",
    "synflow",
    "tenas_ntk_cond",
    "zen",
    "zico",
]
