"""Build ``quickstart.ipynb`` and ``reproduce_figures.ipynb`` from the cell sources below and
execute them in place (outputs committed). Usage, from the repository root::

    ROBNTK_DATA=../shared/data python notebooks/tools/build_notebooks.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parents[1]

QUICKSTART = [
    ("md", """# robntk quickstart: NTK scores of NB201 cells, then their correlation with NAS-RobBench-201

**What it shows.** (1) One architecture through the Python API: the network, the robust kernel
family (clean K, robust K̃ε, twice-perturbed K̃2ε, the mixed K_all(β), K̃_all(β)) and the spectrum;
(2) a few architectures through the engine (one compile for all cells, a resumable store);
(3) Kendall τ of those scores against NAS-RobBench-201.

**Small configuration.** To run in CI in about two minutes on a 2-core CPU, the network is
narrow (C=4, N=1) and the sample is 12 architectures; `robntk reproduce` runs the real size
(C=16, N=5). **It takes** about 2–3 minutes (mostly XLA compilation)."""),
    ("code", """import jax
import numpy as np
from robntk import SearchSpace, RobBench, TinyNetwork, fixed_batch, kernel_family, spectrum
from robntk.scoring.runner import run_engine
from robntk.scoring.config import ScoreConfig

space = SearchSpace.load()          # reads $ROBNTK_DATA (or ./data)
bench = RobBench.load()
arch = space.arch_str(2581)         # the benchmark's most robust CIFAR-10 cell
print(arch)"""),
    ("md", """## 1. One architecture through the Python API
`TinyNetwork.init(PRNGKey(s), arch=...)` is "init seed s": the same weights in every robntk
command. `make_apply` returns `f(params, x) -> logits` with batch-statistics BatchNorm
(`bn_mode="train"`, as a PyTorch model in `train()` mode)."""),
    ("code", """net = TinyNetwork(C=4, N=1, num_classes=10, dataset="cifar10")
variables = net.init(jax.random.PRNGKey(0), arch=arch)
f, params = net.make_apply(variables, arch, bn_mode="train")
x, y = fixed_batch("cifar10", 8)   # 8 class-balanced CIFAR-10 training images in [0, 1]
fam = jax.jit(lambda p: kernel_family(f, p, x, y, 8 / 255, key=jax.random.PRNGKey(1), steps=3))(params)
for name, K in [("K", fam.clean), ("K̃ε", fam.robust), ("K̃2ε", fam.twice), ("K_all(0.5)", fam.k_all(0.5)),
                ("K̃_all(0.5)", fam.k_tilde_all(0.5))]:
    s = spectrum(K, np.float64)
    print(f"{name:>11}: λ_min={s.lambda_min:.4g}  λ_max={s.lambda_max:.4g}  cond={s.cond:.3g}")"""),
    ("md", """## 2. A few architectures through the engine
The cell is data, so one compiled function scores every cell; rows go to a crash-safe store
(rerunning resumes)."""),
    ("code", """import tempfile
from pathlib import Path

cfg = ScoreConfig(C=4, N=1, batch_size=8, eps=("8/255",), pgd_steps=2)
sample = [int(i) for i in np.random.default_rng(0).permutation(np.asarray(space.representatives))[:12]]
out = Path(tempfile.mkdtemp()) / "scores.csv"
rep = run_engine(sample, cfg, out.with_name("scores.store"), space=space, out=out, progress=False)
print(f"{rep.n_scored} archs, compile {rep.compile_s:.0f} s, {rep.archs_per_s:.2f} archs/s")
import pandas as pd
scores = pd.read_csv(out)
scores[["nb201_index", "lambda_min_clean", "lambda_min_robust_all_eps8_beta0.5", "degenerate"]].head()"""),
    ("md", """## 3. Correlation with NAS-RobBench-201
Kendall τ-b with bootstrap CIs of every score (and the #parameters baseline) against the
benchmark. With 12 archs of a narrow network this is a demonstration, not a result: see
`experiments/` for the real numbers."""),
    ("code", """from robntk import correlation_table
table = correlation_table(scores, bench, datasets=["cifar10"], metrics=["val_acc", "val_pgd_8.0_acc"], n_boot=50)
table[["score", "metric", "n", "kendall_tau", "kendall_tau_ci_low", "kendall_tau_ci_high"]].round(3)"""),
]

REPRODUCE = [
    ("md", """# The committed correlation figures, viewed without recomputation

**What it shows.** The Kendall τ-b tables behind robntk's committed results — the main job
(`experiments/reproduce/`) and the largest CPU sample (`experiments/results/`, 789 archs,
eval-mode BN) — as heatmaps and a compact table, read from the committed CSVs; and the
protocol study's figures when they have been computed (`experiments/protocol/`).
Nothing is recomputed. **It takes** a few seconds."""),
    ("code", """from pathlib import Path
import pandas as pd
from IPython.display import Image, display

ROOT = Path.cwd().parent
for rel in ["experiments/reproduce/correlation.csv", "experiments/results/scores_cifar10_sample_correlation.csv"]:
    t = pd.read_csv(ROOT / rel)
    sub = t[(t.dataset == "cifar10") & t.metric.isin(["val_acc", "val_pgd_8.0_acc", "autoattack"])]
    print(rel, f"(n = {int(sub.n.max())} archs)")
    display(sub.pivot(index="score", columns="metric", values="kendall_tau").round(3))"""),
    ("code", """for rel in ["experiments/reproduce/tau_heatmap.png", "experiments/results/scores_cifar10_sample_tau.png"]:
    print(rel)
    display(Image(filename=str(ROOT / rel), width=720))"""),
    ("code", """figs = sorted((ROOT / "experiments/protocol").glob("*.png"))
print("protocol-study figures:", [f.name for f in figs] or "none computed yet (experiments/protocol/run_protocol.py)")
for f in figs:
    display(Image(filename=str(f), width=640))"""),
]


def build(cells, path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(s) if k == "md" else nbformat.v4.new_code_cell(s) for k, s in cells]
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(nb, path)
    print("wrote", path)


if __name__ == "__main__":
    targets = sys.argv[1:] or ["quickstart", "reproduce_figures"]
    if "quickstart" in targets:
        build(QUICKSTART, HERE / "quickstart.ipynb")
    if "reproduce_figures" in targets:
        build(REPRODUCE, HERE / "reproduce_figures.ipynb")
