"""Throughput of robntk's PGD-AT training step and evaluation against the benchmark's PyTorch code
(robntk.parity.torch_reference), same process, interleaved, on this CPU; plus a FLOP projection
of the full 50-epoch NAS-RobBench-201 run on one H100/H200.

Training: one PGD-AT step (7-step PGD with BN in eval mode + train-mode update, SGD/OneCycle) of
a batch of B CIFAR-10 images, TinyNetwork C=16 N=5 of arch 2581, float32. robntk: the jitted
step of ``robntk train`` (compiled once, excluded). Reference: ``ReferenceTrainer.step``.
Evaluation: clean + FGSM-8 + PGD-20-8 on the same M images (robntk's RobustnessEvaluator, compiled
once and excluded; reference: torchattacks FGSM + the torchattacks PGD loop).
The rounds alternate robntk / PyTorch (2 threads) / PyTorch (1 thread); medians are reported.

    ROBNTK_DATA=../shared/data python benchmarks/bench_train_parity.py [--batch 64] [--rounds 5]

Writes ``benchmarks/train_parity.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from robntk.data.datasets import load_split  # noqa: E402
from robntk.nb201.searchspace import SearchSpace  # noqa: E402
from robntk.parity import torch_reference as ref  # noqa: E402
from robntk.parity.eval_parity import pgd_start_noise  # noqa: E402
from robntk.parity.train_parity import crop_flip, robntk_draws  # noqa: E402
from robntk.train.config import TrainConfig  # noqa: E402
from robntk.train.eval_config import EvalConfig  # noqa: E402
from robntk.train.evaluation import RobustnessEvaluator  # noqa: E402
from robntk.train.loop import build_model, init_state, make_optimizer, make_train_step, step_key  # noqa: E402
from robntk.train.step import StepSpec  # noqa: E402

OUT = ROOT / "benchmarks" / "train_parity.json"
FP32_PEAK = 67e12  # FLOP/s, FP32 without tensor cores, H100 SXM and H200 SXM datasheets


def forward_flops(model, variables, arch) -> float:
    """Forward FLOPs of one image (eval mode), from XLA's cost analysis of a batch of 8."""
    f = jax.jit(lambda v, x: model.apply(v, x, arch))
    cost = f.lower(variables, jnp.zeros((8, 32, 32, 3), jnp.float32)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) / 8


def projection(F: float) -> dict:
    """FLOPs of one full NAS-RobBench-201 run (50 epochs × 50,000 images, 7-step PGD-AT, then the
    evaluation on 10,000 test images) for forward FLOPs ``F`` per image, and its time at the FP32
    peak of one H100/H200 (backward ≈ 2 forwards)."""
    per_image_step = 7 * 3 * F + 3 * F  # PGD: forward + input-gradient backward (≈2F) × 7; update fwd+bwd
    train = 50 * 50_000 * per_image_step
    evaluation = 10_000 * (F + 2 * 3 * F + 2 * 20 * 3 * F)  # clean, FGSM ×2 radii, PGD-20 ×2 radii
    total = train + evaluation
    return {
        "forward_flops_per_image": F,
        "train_flops": train,
        "eval_flops_without_autoattack": evaluation,
        "total_flops": total,
        "fp32_peak_flops_per_s": FP32_PEAK,
        "seconds_at_fp32_peak": total / FP32_PEAK,
        "hours_at_25pct_of_peak": total / (0.25 * FP32_PEAK) / 3600,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--eval-images", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    data_dir = os.environ.get("ROBNTK_DATA", "../shared/data")
    arch = SearchSpace.load(data_dir).arch_str(2581)
    B, M = args.batch, args.eval_images
    x, y = load_split("cifar10", "train", data_dir, 4 * B, seed=0)
    xt, yt = load_split("cifar10", "test", data_dir, M, seed=0)

    cfg = TrainConfig(arch=arch, batch_size=B)
    spec = StepSpec.of(cfg)
    model = build_model(cfg)
    tx = make_optimizer(cfg, 1000)
    state = init_state(model, tx, cfg)
    step = make_train_step(model, tx, cfg)
    xd, yd = jnp.asarray(x), jnp.asarray(y.astype(np.int32))
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    tm = ref.build_model(arch, dtype="float32")
    ref.load_robntk_variables(tm, variables)
    trainer = ref.ReferenceTrainer(tm, 1000)

    f, params = model.make_apply(variables, arch, "eval")
    ecfg = EvalConfig(attacks=("clean", "fgsm", "pgd"), eps=(8 / 255,), batch_size=M, min_batch=M)
    ev = RobustnessEvaluator(f, params, 10, ecfg)
    noise = {8 / 255: pgd_start_noise(ev, 8 / 255, M)}

    def robntk_train(t):
        nonlocal state
        idx = jnp.asarray(np.arange(B) + (t % 4) * B, jnp.int32)
        state, m = step(state, xd, yd, idx, step_key(0, 0, t))
        jax.block_until_ready(m["loss"])

    def torch_train(t):
        idx = np.arange(B) + (t % 4) * B
        d = robntk_draws(step_key(0, 0, t), (B, 32, 32, 3), spec.crop_pad, spec.eps, np.float32)
        xb = crop_flip(x[idx].astype(np.float32) / np.float32(255), d["offsets"], d["flips"], spec.crop_pad)
        trainer.step(ref.nhwc_to_nchw(xb), torch.from_numpy(y[idx].astype(np.int64)), ref.nhwc_to_nchw(d["noise"]))

    def robntk_eval(_):
        ev.evaluate(xt, yt)

    def torch_eval(_):
        ref.evaluate(tm, xt, yt, eps=(8 / 255,), pgd_noise=noise, aa_eps=None, batch_size=M)

    def timed(fn, t, threads=None):
        if threads is not None:
            torch.set_num_threads(threads)
        s = time.perf_counter()
        fn(t)
        return time.perf_counter() - s

    t0 = time.perf_counter()
    robntk_train(0)
    robntk_eval(0)
    compile_s = time.perf_counter() - t0
    timed(torch_train, 0, 2)  # warm-up
    times: dict[str, list[float]] = {k: [] for k in ("robntk", "torch_2threads", "torch_1thread")}
    etimes: dict[str, list[float]] = {k: [] for k in times}
    for r in range(1, args.rounds + 1):
        times["robntk"].append(timed(robntk_train, r))
        times["torch_2threads"].append(timed(torch_train, r, 2))
        times["torch_1thread"].append(timed(torch_train, r, 1))
        etimes["robntk"].append(timed(robntk_eval, r))
        etimes["torch_2threads"].append(timed(torch_eval, r, 2))
        etimes["torch_1thread"].append(timed(torch_eval, r, 1))
        print(r, {k: f"{v[-1]:.2f}" for k, v in times.items()}, {k: f"{v[-1]:.2f}" for k, v in etimes.items()})
    med = {k: float(np.median(v)) for k, v in times.items()}
    emed = {k: float(np.median(v)) for k, v in etimes.items()}
    best_torch = min(med["torch_2threads"], med["torch_1thread"])
    best_torch_e = min(emed["torch_2threads"], emed["torch_1thread"])
    record = {
        "what": "PGD-AT train step and clean+FGSM-8+PGD-20-8 evaluation, arch 2581, C=16, N=5, float32",
        "batch": B,
        "eval_images": M,
        "rounds": args.rounds,
        "train_step_s": {k: [round(v, 4) for v in vs] for k, vs in times.items()},
        "eval_s": {k: [round(v, 4) for v in vs] for k, vs in etimes.items()},
        "train_images_per_s": {k: B / v for k, v in med.items()},
        "eval_images_per_s": {k: M / v for k, v in emed.items()},
        "train_ratio_robntk_over_best_torch": best_torch / med["robntk"],
        "eval_ratio_robntk_over_best_torch": best_torch_e / emed["robntk"],
        "robntk_compile_s": compile_s,
        "projection_full_run": projection(forward_flops(model, variables, arch)),
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_at_end": os.getloadavg(),
            "note": "shared 2-core CPU; other jobs ran concurrently (see loadavg)",
        },
        "versions": {"jax": jax.__version__, "torch": torch.__version__},
    }
    out = Path(args.out)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(out)
    print(json.dumps({k: record[k] for k in ("train_images_per_s", "eval_images_per_s")}, indent=1))
    print("ratios", record["train_ratio_robntk_over_best_torch"], record["eval_ratio_robntk_over_best_torch"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
