#!/bin/sh
# Reduced CPU reproduction of NAS-RobBench-201's PGD-AT for NB201 arch 2581 (see README.md).
# Run from the repository root; the data directory is the shared bundle (JPEG CIFAR-10).
# Both commands are resumable/idempotent: re-running `train` continues from the last checkpoint.
set -e
DATA=${ROBNTK_DATA:-../shared/data}
RUN=runs/train_repro_2581
python -m robntk.cli train --data-dir "$DATA" --arch 2581 --dataset cifar10 --method pgd --eps 8/255 \
    --epochs 5 --batch-size 256 --train-limit 2560 --seed 0 --out "$RUN"
python -m robntk.cli evaluate --data-dir "$DATA" --checkpoint "$RUN" --limit 500 \
    --attacks all --eps 3/255 8/255 --aa-eps 8/255 --aa-version torchattacks \
    --square-queries 500 --out experiments/train_repro/metrics.json
