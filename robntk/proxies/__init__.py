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
:mod:`~robntk.proxies.robust` (``croze``, ``zcprob``); :mod:`~robntk.proxies.table` holds the suite
(:data:`PROXIES`) and :func:`proxy_table`, the resumable job over many archs.

Recent zero-cost proxies, one module per family: :mod:`~robntk.proxies.az_nas` (AZ-NAS:
``az_expressivity``, ``az_progressivity``, ``az_trainability``; Lee & Ham, CVPR 2024),
:mod:`~robntk.proxies.vkdnw` (VKDNW: ``vkdnw``, ``vkdnw_dim``; Týbl & Neumann, CVPR 2025),
:mod:`~robntk.proxies.meco_swap` (MeCo: ``meco``; Jiang et al., NeurIPS 2023; SWAP: ``swap``,
``swap_reg``; Peng et al., ICLR 2024), each with its population-level rank aggregations
(:func:`~robntk.proxies.az_nas.az_nas_rank`, :func:`~robntk.proxies.vkdnw.vkdnw_rank`,
:func:`~robntk.proxies.vkdnw.vkdnw_agg_rank`), and :mod:`~robntk.proxies.perturbed`
(:func:`~robntk.proxies.perturbed.on_pgd_inputs`, which turns any proxy into its perturbed-input
variant: the proxy computed on PGD examples of the network at init). They too have the suite's
signature ``proxy(net, variables, cell, x, y, key) -> scalar``: ``x`` (B, H, W, 3) in [0, 1] is
normalised by ``net.dataset`` inside; the cell may be an arch string / op names (fixed) or int
(6,) op ids (data, traceable: one ``jax.jit`` serves every cell). NaN where the proxy is
undefined, in particular for a cell without an input→output path
(:func:`robntk.proxies._common.connected`); :func:`proxy_table` flags every non-finite value.
The authors' *protocols* differ from the suite's defaults; the functions compute the authors'
*definitions* on whatever network, weights and batch they are given, so the protocol is the
caller's choice (each module states its authors'; ``experiments/proxies_modern/README.md``
states both). ZCPRob (Feng et al., ICLR 2025; :func:`~robntk.proxies.robust.zcprob_terms`)
follows the paper's Eq. 4, 7 and 8: its code (fyqsama/Robust_ZCP) could not be retrieved here,
so its factors are checked against independent computations (an explicit gradient Gram matrix,
a Hessian-vector product), not against the authors' values.

References: NASLib ``naslib/predictors/pruners/measures/*.py`` (automl/NASLib) and
SamsungLabs/zero-cost-nas ``foresight/pruners/measures/*.py`` (Abdelfattah et al., "Zero-Cost
Proxies for Lightweight NAS", ICLR 2021); NAS-Bench-Suite-Zero (Krishnakumar et al., NeurIPS
2022 D&B) for the released values (:mod:`robntk.data.suite_zero`).
"""

from robntk.proxies._common import Proxy, connected
from robntk.proxies.activation import epe_nas, input_jacobian_proxies, jacov, linear_regions, nwot, relu_inputs
from robntk.proxies.closed_form import flop_count, flops, param_count, params
from robntk.proxies.gradient import fisher, grad_norm, grasp, l2_norm, loss_gradient_proxies, plain, snip, synflow
from robntk.proxies.robust import croze, zcprob, zcprob_terms
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
    "zcprob",
    "zcprob_terms",
    "zico",
]
