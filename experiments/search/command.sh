#!/bin/sh
# The exact commands of experiments/search (run from the repository root, with robntk installed).
set -e
export ROBNTK_DATA=${ROBNTK_DATA:-../shared/data}
robntk search --budget 1000 --seeds 200 --seed 0 \
  --scores experiments/combine/combined_scores.csv \
  --score params nwot 'vote(synflow,jacov,snip)' nb201clean_greedy linear_c10pgd8_half \
  --threshold 0.478 0.477 --out experiments/search/main --no-progress
robntk search --methods tf --budget 1000 --seeds 200 --seed 0 --tf-pool 1000 \
  --scores experiments/combine/combined_scores.csv \
  --score params nwot 'vote(synflow,jacov,snip)' nb201clean_greedy linear_c10pgd8_half \
  --threshold 0.478 0.477 --out experiments/search/tf_pool1000 --no-progress
# training-free search with robntk's own proxies (experiments/proxies/proxies_all.csv, all 6,466 reps)
robntk search --methods tf --criteria robust --budget 1000 --seeds 200 --seed 0 \
  --scores experiments/proxies/proxies_all.csv \
  --score params synflow nwot 'mean_rank(params,flops,synflow,nwot)' 'vote(params,flops,synflow,nwot)' \
  --threshold 0.478 0.477 --out experiments/search/tf_robntk_proxies --no-progress
