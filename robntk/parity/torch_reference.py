"""NAS-RobBench-201's training step and evaluation in PyTorch, fed robntk's weights and draws.

Written from the benchmark's own files (github.com/TT2408/nasrobbench201, commit f933a51; line
numbers below are of that commit) and torchattacks 3.4.0:

* network: ``Sequential(Normalize(mean, std), TinyNetwork(C, N, genotype, classes))``
  (``main.py`` l.38-43; ``utils_data.py`` l.16-17 for the CIFAR-10 statistics), TinyNetwork of
  ``libnas/lib/models/cell_infers/tiny_network.py`` (stem l.17, cells l.24-31, ``lastact`` l.35,
  pooling l.36, classifier l.37, forward l.48-58), ``InferCell`` of ``cell_infers/cells.py``
  (node sums l.51), ops of ``libnas/lib/models/cell_operations.py`` (``OPS`` l.10-20,
  ``ReLUConvBN`` l.32, ``ResNetBasicblock`` l.74-107, ``POOLING`` l.118 with
  ``count_include_pad=False``, ``Zero`` l.148: ``x.mul(0.)``) — the AutoDL-Projects code it copies;
* training (``main.py`` ``NASModel``): ``_attack_train`` l.69-78 — BN in eval mode, torchattacks
  ``PGD(eps=8/255, alpha=2/255, steps=7, random_start=True)``, then train mode; the loss is
  ``F.cross_entropy`` (l.66) on the adversarial batch only; ``configure_optimizers`` l.171-207 —
  ``SGD(momentum=0.9, weight_decay=5e-4)`` (no Nesterov, no dampening) under
  ``OneCycleLR(optimizer, 0.1, ...)`` stepped per iteration (``"interval": "step"``); batches of
  256 (l.222) with ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()`` + ``ToTensor()``
  (``utils_data.py`` l.25-27);
* evaluation (``_attack_test`` l.80-113): FGSM (torchattacks ``FGSM``), PGD-20 with step
  2.5·ε/20 and a random start, AutoAttack ``version='standard'`` — all with BN in eval mode.

The PGD of torchattacks (``torchattacks/attacks/pgd.py`` l.40-79) draws its start with
``torch.empty_like(x).uniform_(-eps, eps)`` (l.58); :func:`pgd` here takes that noise as an
argument instead, so the reference can start from exactly the point robntk drew (robntk's
``random_start``: U(−1, 1) in float32, times ε); with ``noise`` drawn from torch's generator it
is torchattacks' PGD, step for step (tested).

One reference switch exists, ``biased_running_var``: PyTorch's ``BatchNorm2d`` updates its running
variance with the **unbiased** batch variance (× n/(n−1), n = B·H·W), and so does robntk
(``robntk.nb201.layers.batch_norm``; before this parity check it kept flax's biased convention).
``False`` (the default) is PyTorch's behaviour, the benchmark's; ``True`` is flax's convention, to
show what the difference does to a trajectory.

Layouts: robntk is NHWC with HWIO conv kernels and (in, out) dense kernels; PyTorch NCHW, OIHW,
(out, in). :func:`variables_to_state_dict` / :func:`state_dict_to_variables` convert both ways;
state-dict keys are those of the benchmark's model (``1.cells.3.layers.0.op.1.weight``, ...), so
the converted weights also load into the original AutoDL network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from robntk.core.registry import DATASETS, NUM_CLASSES
from robntk.nb201.cell import to_ops
from robntk.nb201.searchspace import EDGES

BN_MOMENTUM = 0.1  # PyTorch convention (robntk/flax: 0.9)
BN_EPS = 1e-5
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def torch_dtype(dtype) -> torch.dtype:
    """``'float32'``/``'float64'`` (or a numpy/jax dtype of that name) → the torch dtype.

    Raises:
        ValueError: another dtype.
    """
    name = np.dtype(dtype).name
    if name not in TORCH_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return TORCH_DTYPES[name]


# --------------------------------------------------------------------------------------------
# the network (AutoDL TinyNetwork as copied by the benchmark)


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (momentum 0.1, eps 1e-5). With ``biased_running_var`` the running
    variance is updated with the biased batch variance (robntk's convention) instead of PyTorch's
    unbiased one; normalisation is unchanged (biased batch variance in train mode, running
    statistics in eval mode)."""

    def __init__(self, num_features: int, biased_running_var: bool = False):
        super().__init__(num_features, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.biased_running_var = biased_running_var

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.biased_running_var):
            return super().forward(x)
        with torch.no_grad():
            m = self.momentum
            mean = x.mean(dim=(0, 2, 3))
            var = x.var(dim=(0, 2, 3), unbiased=False)
            self.running_mean.copy_(m * mean + (1 - m) * self.running_mean)
            self.running_var.copy_(m * var + (1 - m) * self.running_var)
            self.num_batches_tracked += 1
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class ReLUConvBN(nn.Module):
    """ReLU → Conv2d(k×k, no bias) → BN (``cell_operations.py`` l.32-43)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, biased_running_var: bool):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k - 1) // 2, bias=False),
            BatchNorm2d(c_out, biased_running_var),
        )

    def forward(self, x):
        return self.op(x)


class Pooling(nn.Module):
    """``POOLING`` with C_in = C_out: AvgPool2d(3, 1, 1, count_include_pad=False) (l.110-125)."""

    def __init__(self):
        super().__init__()
        self.op = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x):
        return self.op(x)


class Zero(nn.Module):
    """``Zero`` with stride 1: ``x.mul(0.)`` (l.137-148)."""

    def forward(self, x):
        return x.mul(0.0)


class ResNetBasicblock(nn.Module):
    """Reduction block (l.74-107): conv_a (3×3, stride 2) → conv_b (3×3); residual =
    AvgPool2d(2, 2) → Conv1×1 (no bias, no BN); output residual + conv_b."""

    def __init__(self, c_in: int, c_out: int, biased_running_var: bool):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, biased_running_var)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, biased_running_var)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2, padding=0), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x):
        b = self.conv_b(self.conv_a(x))
        return self.downsample(x) + b


def _edge_module(op: str, c: int, biased_running_var: bool) -> nn.Module:
    if op == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3, 1, biased_running_var)
    if op == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1, 1, biased_running_var)
    if op == "avg_pool_3x3":
        return Pooling()
    if op == "skip_connect":
        return nn.Identity()
    if op == "none":
        return Zero()
    raise ValueError(f"unknown NB201 op {op!r}")


class InferCell(nn.Module):
    """NB201 cell (``cells.py`` ``InferCell``): node j = Σ over its incoming edges, in arch-string
    order, of op(node i); one module per edge in :data:`robntk.nb201.searchspace.EDGES` order."""

    def __init__(self, ops: Sequence[str], c: int, biased_running_var: bool):
        super().__init__()
        self.layers = nn.ModuleList(_edge_module(op, c, biased_running_var) for op in ops)

    def forward(self, x):
        nodes = [x]
        for dst in (1, 2, 3):
            nodes.append(sum(self.layers[e](nodes[src]) for e, (src, d) in enumerate(EDGES) if d == dst))
        return nodes[3]


class TinyNetwork(nn.Module):
    """AutoDL ``TinyNetwork(C, N, genotype, num_classes)`` returning logits (``tiny_network.py``)."""

    def __init__(self, ops: Sequence[str], C: int, N: int, num_classes: int, biased_running_var: bool):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, 3, padding=1, bias=False), BatchNorm2d(C, biased_running_var))
        widths = [C] * N + [2 * C] + [2 * C] * N + [4 * C] + [4 * C] * N
        reduce = [False] * N + [True] + [False] * N + [True] + [False] * N
        cells, prev = [], C
        for w, r in zip(widths, reduce):
            cells.append(ResNetBasicblock(prev, w, biased_running_var) if r else InferCell(ops, w, biased_running_var))
            prev = w
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(BatchNorm2d(prev, biased_running_var), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, x):
        h = self.stem(x)
        for cell in self.cells:
            h = cell(h)
        h = self.global_pooling(self.lastact(h))
        return self.classifier(h.view(h.size(0), -1))


class Normalize(nn.Module):
    """torchvision ``Normalize(mean, std)`` on NCHW: (x − mean) / std with the statistics as Python
    floats (``utils_data.py`` l.16-19: ``[v / 255 for v in ...]``) cast to x's dtype."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.mean, self.std = list(mean), list(std)

    def forward(self, x):
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device)[:, None, None]
        return (x - mean) / std


def build_model(
    arch, *, C: int = 16, N: int = 5, dataset: str = "cifar10", dtype="float32", biased_running_var: bool = False
) -> nn.Sequential:
    """The benchmark's model ``Sequential(Normalize, TinyNetwork)`` (``main.py`` l.38-43), on the
    CPU, in ``dtype``, with PyTorch's default init (overwrite it with
    :func:`load_robntk_variables`). Input NCHW in [0, 1].

    Args:
        arch: NB201 arch string or 6 op names. C, N: width and cells per stage (16, 5).
        dataset: selects the class count and the normalisation (:data:`robntk.core.registry.DATASETS`).
        dtype: ``'float32'`` or ``'float64'``.
        biased_running_var: see the module docstring (False: PyTorch's BatchNorm).

    Raises:
        ValueError: malformed arch, unknown dataset or dtype.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
    info = DATASETS[dataset]
    net = TinyNetwork(to_ops(arch), C, N, NUM_CLASSES[dataset], biased_running_var)
    model = nn.Sequential(Normalize([v / 255 for v in info.mean], [v / 255 for v in info.std]), net)
    return model.to(torch_dtype(dtype))


# --------------------------------------------------------------------------------------------
# weights: robntk {'params', 'batch_stats'} <-> PyTorch state dict


def torch_key(path: Sequence[str]) -> tuple[str, str]:
    """robntk variable path → ``(state-dict key, kind)``, kind ∈ {``'conv'`` (HWIO ↔ OIHW),
    ``'dense'`` ((in, out) ↔ (out, in)), ``'vector'`` (as is)}.

    Example: ``('params', 'cells_3', 'e0_nor_conv_3x3', 'conv', 'kernel')`` →
    ``('1.cells.3.layers.0.op.1.weight', 'conv')``; ``('batch_stats', 'stem_bn', 'var')`` →
    ``('1.stem.1.running_var', 'vector')``.

    Raises:
        KeyError: a path that is not a TinyNetwork variable.
    """
    col, *rest = path
    bn = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
    head = rest[0]
    if head == "stem_conv":
        return "1.stem.0.weight", "conv"
    if head in ("stem_bn", "lastact_bn"):
        return ("1.stem.1." if head == "stem_bn" else "1.lastact.0.") + bn[rest[1]], "vector"
    if head == "classifier":
        return ("1.classifier.weight", "dense") if rest[1] == "kernel" else ("1.classifier.bias", "vector")
    if head.startswith("cells_"):
        k = int(head.split("_")[1])
        mod = rest[1]
        if mod == "downsample":
            return f"1.cells.{k}.downsample.1.weight", "conv"
        prefix = (
            f"1.cells.{k}.{mod}" if mod in ("conv_a", "conv_b") else f"1.cells.{k}.layers.{int(mod[1:].split('_')[0])}"
        )
        if rest[2] == "conv":
            return f"{prefix}.op.1.weight", "conv"
        return f"{prefix}.op.2.{bn[rest[3]]}", "vector"
    raise KeyError(f"not a TinyNetwork variable: {'/'.join(path)}")


def _to_torch(a, kind: str) -> np.ndarray:
    a = np.asarray(a)
    if kind == "conv":
        return a.transpose(3, 2, 0, 1)
    return a.T if kind == "dense" else a


def _from_torch(a: np.ndarray, kind: str) -> np.ndarray:
    if kind == "conv":
        return a.transpose(2, 3, 1, 0)
    return a.T if kind == "dense" else a


def _leaves(tree) -> list[tuple[tuple[str, ...], Any]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(tuple(str(getattr(k, "key", k)) for k in p), v) for p, v in flat]


def variables_to_state_dict(variables: dict, dtype=None) -> dict[str, torch.Tensor]:
    """robntk ``{'params', 'batch_stats'}`` → the benchmark model's state dict (every BN's
    ``num_batches_tracked`` set to 0).

    Args:
        variables: robntk variables (any array type; leaves shaped as
            :meth:`robntk.nb201.network.TinyNetwork.param_spec`).
        dtype: torch dtype of the tensors (None: the leaves' dtype).

    Raises:
        KeyError: an unknown variable path.
    """
    sd: dict[str, torch.Tensor] = {}
    for path, v in _leaves(variables):
        key, kind = torch_key(path)
        t = torch.from_numpy(np.array(_to_torch(v, kind), copy=True, order="C"))
        sd[key] = t if dtype is None else t.to(dtype)
        if key.endswith("running_mean"):
            sd[key[: -len("running_mean")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return sd


def load_robntk_variables(model: nn.Module, variables: dict) -> None:
    """Load robntk variables into ``model`` (:func:`build_model`), strictly: a missing or extra
    key, or a shape mismatch, raises (RuntimeError from ``load_state_dict``)."""
    dtype = next(model.parameters()).dtype
    model.load_state_dict(variables_to_state_dict(variables, dtype), strict=True)


def state_dict_to_variables(tensors: dict[str, torch.Tensor], like: dict) -> dict:
    """The inverse of :func:`variables_to_state_dict`: tensors keyed like the state dict (a state
    dict, or gradients keyed by parameter name) → numpy arrays in the structure of ``like``
    (robntk variables or a sub-tree such as ``{'params': ...}``).

    Raises:
        KeyError: a leaf of ``like`` with no tensor.
    """
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    out = []
    for p, _ in flat:
        key, kind = torch_key(tuple(str(getattr(k, "key", k)) for k in p))
        out.append(_from_torch(tensors[key].detach().cpu().numpy(), kind))
    return jax.tree_util.tree_unflatten(treedef, out)


def nhwc_to_nchw(x: np.ndarray, dtype=None) -> torch.Tensor:
    """(B, H, W, C) array → contiguous (B, C, H, W) tensor (optionally cast to the torch ``dtype``)."""
    t = torch.from_numpy(np.array(np.asarray(x).transpose(0, 3, 1, 2), copy=True, order="C"))
    return t if dtype is None else t.to(dtype)


def nchw_to_nhwc(t: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) tensor → (B, H, W, C) numpy array."""
    return t.detach().cpu().numpy().transpose(0, 2, 3, 1)


# --------------------------------------------------------------------------------------------
# attacks (torchattacks 3.4.0 with the random start as an argument)


def pgd(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    alpha: float,
    steps: int,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """torchattacks 3.4.0 ``PGD.forward`` (``attacks/pgd.py`` l.40-79) with its random start
    ``uniform_(-eps, eps)`` (l.58) replaced by ``noise``: x₀ = clamp(x + noise, 0, 1), then
    ``steps`` times x ← clamp(x + clamp(x + α·sign(∇ CE) − x, −ε, ε), 0, 1) with
    ``nn.CrossEntropyLoss()`` (mean). The model's mode is left as it is (the caller sets eval).

    Args:
        model: NCHW logits model. images: (B, C, H, W) in [0, 1]. labels: int64 (B,).
        eps, alpha: radius and step, [0, 1] pixel units. steps: iterations (≥ 1).
        noise: (B, C, H, W) start offset in [−ε, ε] (None: start at x, ``random_start=False``).

    Returns:
        Adversarial images (B, C, H, W), detached.
    """
    loss = nn.CrossEntropyLoss()
    images = images.clone().detach()
    adv = images.clone().detach()
    if noise is not None:
        adv = torch.clamp(adv + noise, min=0, max=1).detach()
    for _ in range(steps):
        adv.requires_grad = True
        cost = loss(model(adv), labels)
        grad = torch.autograd.grad(cost, adv, retain_graph=False, create_graph=False)[0]
        adv = adv.detach() + alpha * grad.sign()
        delta = torch.clamp(adv - images, min=-eps, max=eps)
        adv = torch.clamp(images + delta, min=0, max=1).detach()
    return adv


# --------------------------------------------------------------------------------------------
# the training step


class ReferenceTrainer:
    """The benchmark's PGD-AT optimisation (``main.py`` ``NASModel``) on a given model.

    ``torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)`` (the initial lr is
    ``--cyclelr``, overwritten by the scheduler) and
    ``OneCycleLR(optimizer, max_lr, total_steps=total_steps)`` with PyTorch's defaults (the
    benchmark passes ``epochs`` and ``steps_per_epoch``, whose product is ``total_steps``),
    stepped after every optimizer step.

    Args:
        model: :func:`build_model`'s model. total_steps: optimizer steps of the whole schedule.
        max_lr, momentum, weight_decay: 0.1, 0.9, 5e-4 (the benchmark's).
        eps, alpha, attack_steps: the training PGD (8/255, 2/255, 7).
    """

    def __init__(
        self,
        model: nn.Module,
        total_steps: int,
        *,
        max_lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        attack_steps: int = 7,
    ):
        self.model = model
        self.opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=momentum, weight_decay=weight_decay)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr, total_steps=total_steps)
        self.eps, self.alpha, self.attack_steps = eps, alpha, attack_steps
        self.names = [n for n, _ in model.named_parameters()]

    def step(self, images: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor | None) -> dict[str, Any]:
        """One training step (``_attack_train`` + ``training_step`` + optimizer and scheduler
        steps): PGD with BN in eval mode from ``clamp(images + noise)``, then cross-entropy on the
        adversarial batch in train mode (running statistics updated), backward, SGD step,
        OneCycle step.

        Args:
            images: (B, C, H, W) augmented batch in [0, 1]. labels: int64 (B,).
            noise: the PGD start offset (B, C, H, W).

        Returns:
            ``{'x_adv' (B, C, H, W), 'loss' (float), 'acc' (train-mode accuracy on x_adv),
            'grads' ({parameter name: tensor}, before weight decay), 'lr', 'momentum'
            (the values this update used)}``.
        """
        self.model.eval()
        x_adv = pgd(self.model, images, labels, self.eps, self.alpha, self.attack_steps, noise)
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(x_adv)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        group = self.opt.param_groups[0]
        out = {
            "x_adv": x_adv,
            "loss": loss.item(),
            "acc": float((logits.argmax(1) == labels).double().mean()),
            "grads": {n: p.grad.detach().clone() for n, p in self.model.named_parameters()},
            "lr": float(group["lr"]),
            "momentum": float(group["momentum"]),
        }
        self.opt.step()
        self.sched.step()
        return out


# --------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return (model(x).argmax(1) == y).cpu().numpy()


def evaluate(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    eps: Sequence[float] = (3 / 255, 8 / 255),
    pgd_noise: dict[float, np.ndarray] | None = None,
    pgd_steps: int = 20,
    aa_eps: float | None = 8 / 255,
    aa_seed: int = 0,
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """Per-example verdicts of the benchmark's evaluation (``main.py`` ``_attack_test``, BN in
    eval mode): clean, torchattacks ``FGSM(eps)``, PGD-20 (step 2.5·ε/20) from the given starts,
    torchattacks ``AutoAttack(norm='Linf', eps, version='standard', n_classes=K, seed)``.

    Args:
        model: :func:`build_model`'s model (set to eval mode here).
        x: uint8 (N, H, W, 3) images (scaled by 1/255 in float32, as ``ToTensor``). y: labels (N,).
        eps: FGSM/PGD radii (pixel units).
        pgd_noise: ε → (N, H, W, 3) PGD start offsets in [−ε, ε]; None: PGD is not run.
        aa_eps: AutoAttack radius, or None to skip it. aa_seed: its ``seed``.
        batch_size: images per attack call (256, ``main.py`` l.224).

    Returns:
        ``{metric name (robntk's, e.g. 'val_pgd_8.0_acc', 'autoattack'): bool (N,)}``.

    Raises:
        ValueError: images not uint8 (N, H, W, 3).
    """
    import torchattacks

    from robntk.core.registry import AA_METRIC, CLEAN_METRIC, metric_name

    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"x must be uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
    model.eval()
    dtype = next(model.parameters()).dtype
    n = len(x)
    out: dict[str, list] = {}
    num_classes = model[1].classifier.out_features
    for s in range(0, n, batch_size):
        xb = nhwc_to_nchw(x[s : s + batch_size]).to(dtype) / 255
        yb = torch.from_numpy(np.asarray(y[s : s + batch_size], np.int64))
        out.setdefault(CLEAN_METRIC, []).append(_correct(model, xb, yb))
        for e in eps:
            adv = torchattacks.FGSM(model, eps=e)(xb, yb)
            out.setdefault(metric_name("fgsm", e), []).append(_correct(model, adv, yb))
            if pgd_noise is not None:
                noise = nhwc_to_nchw(pgd_noise[e][s : s + batch_size]).to(dtype)
                adv = pgd(model, xb, yb, e, 2.5 * e / pgd_steps, pgd_steps, noise)
                out.setdefault(metric_name("pgd", e), []).append(_correct(model, adv, yb))
        if aa_eps is not None:
            aa = torchattacks.AutoAttack(
                model, norm="Linf", eps=aa_eps, version="standard", n_classes=num_classes, seed=aa_seed
            )
            out.setdefault(AA_METRIC, []).append(_correct(model, aa(xb, yb), yb))
    return {k: np.concatenate(v) for k, v in out.items()}


def max_rel_diff(a, b, floor: float = 1e-6) -> float:
    """The "relative difference" of the parity reports: max over leaves of
    ‖a − b‖∞ / max(‖b‖∞, floor·M), M = the largest ‖b‖∞ over all leaves, for two trees (or
    arrays) of the same structure, b the reference.

    The floor keeps leaves whose exact value is 0 from dividing rounding noise by rounding noise:
    e.g. the gradient of the BN biases of the last cell's edges, which the following train-mode
    BN (batch mean subtracted) makes exactly 0 in exact arithmetic. 0 when a == b.
    """
    pairs = [
        (np.asarray(u, np.float64), np.asarray(v, np.float64))
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True)
    ]
    scale = max((float(np.max(np.abs(v))) for _, v in pairs if v.size), default=0.0)
    worst = 0.0
    for u, v in pairs:
        if not v.size:
            continue
        num = float(np.max(np.abs(u - v)))
        den = max(float(np.max(np.abs(v))), floor * scale)
        worst = max(worst, 0.0 if num == 0 else (num / den if den > 0 else math.inf))
    return worst
