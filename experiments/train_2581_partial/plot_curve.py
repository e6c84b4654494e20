"""Learning curve of the partial PGD-AT run of arch 2581 (a partial run, not a reproduction).

Reads the run's console log (``train_log.txt``: tqdm lines whose postfix holds the running means
of the epoch so far, ``acc``, ``loss`` and ``lr``) and ``metrics.jsonl`` (one line per finished
epoch), and writes ``curve.csv`` (global step, epoch, step in epoch, running adversarial-training
accuracy and loss, lr) and ``curve.png``. Evaluations (``metrics_epoch*.json``) are drawn as points.

    python experiments/train_2581_partial/plot_curve.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from robntk.core.figures import new_figure
from robntk.core.paths import atomic_save
from robntk.core.tables import write_table

HERE = Path(__file__).resolve().parent
LINE = re.compile(r"epoch (\d+)/\d+:.*?\|\s*(\d+)/(\d+) \[[^]]*acc=([0-9.]+), loss=([0-9.]+), lr=([0-9.]+)\]")


def parse(log: str) -> pd.DataFrame:
    """One row per (epoch, step) logged, the last postfix seen for it."""
    rows = {}
    for part in log.replace("\r", "\n").splitlines():
        m = LINE.search(part)
        if m:
            e, s, n, acc, loss, lr = m.groups()
            rows[(int(e), int(s))] = dict(
                epoch=int(e), step=int(s), global_step=(int(e) - 1) * int(n) + int(s),
                train_adv_acc_running=float(acc), train_adv_loss_running=float(loss), lr=float(lr),
            )  # fmt: skip
    return pd.DataFrame(sorted(rows.values(), key=lambda r: r["global_step"]))


def main() -> int:
    df = parse((HERE / "train_log.txt").read_text())
    write_table(df, HERE / "curve.csv", {"source": "train_log.txt (tqdm running means of each epoch so far)"})
    evals = {}
    for p in sorted(HERE.glob("metrics_epoch*.json")):
        d = json.loads(p.read_text())
        evals[int(re.search(r"epoch(\d+)", p.name).group(1))] = d["metrics"]
    fig = new_figure((9, 3.6))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(df["global_step"], df["train_adv_loss_running"], "-", lw=1)
    ax1.set_xlabel("optimiser step (195 per epoch)")
    ax1.set_ylabel("PGD-AT loss (epoch running mean)")
    ax2.plot(df["global_step"], df["train_adv_acc_running"], "-", lw=1, label="training, adversarial (running)")
    for e, m in evals.items():
        for key, mark, lab in (("val_acc", "oC1", "test clean"), ("val_pgd_8.0_acc", "sC2", "test PGD-20 8/255")):
            ax2.plot([e * 195], [m[key]], mark, label=f"{lab} (1,000 images)" if e == min(evals) else None)
    ax2.set_xlabel("optimiser step (195 per epoch)")
    ax2.set_ylabel("accuracy")
    ax2.legend(fontsize=7)
    fig.suptitle("arch 2581, PGD-AT on 50k CIFAR-10, 50-epoch OneCycle schedule: PARTIAL run", fontsize=9)
    fig.tight_layout()
    atomic_save(HERE / "curve.png", lambda p: fig.savefig(p, dpi=120))
    print(f"{len(df)} logged steps, evaluations at epochs {sorted(evals)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
