#!/bin/sh
# The exact commands of experiments/search (run from the repository root). Equivalent to
# `robntk search ...` once the command is wired into robntk.cli.
set -e
export PYTHONPATH=$PWD ROBNTK_DATA=${ROBNTK_DATA:-/work/shared/data}
PY=${PY:-/work/main/.venv/bin/python}
nice -n 10 $PY experiments/search/run_search.py --budget 1000 --seeds 200 --seed 0 \
  --scores experiments/combine/combined_scores.csv \
  --score params nwot 'vote(synflow,jacov,snip)' nb201clean_greedy linear_c10pgd8_half \
  --threshold 0.478 0.477 --out experiments/search/main --no-progress
nice -n 10 $PY experiments/search/run_search.py --methods tf --budget 1000 --seeds 200 --seed 0 --tf-pool 1000 \
  --scores experiments/combine/combined_scores.csv \
  --score params nwot 'vote(synflow,jacov,snip)' nb201clean_greedy linear_c10pgd8_half \
  --threshold 0.478 0.477 --out experiments/search/tf_pool1000 --no-progress
