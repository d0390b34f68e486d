#!/usr/bin/env bash
# Interleaved A/B of the tree before the refactor (BEFORE) and after it (AFTER): a tiny training run (one epoch; train clips/s
# from metrics.csv) and `bench pipeline` (DALI train/test clips/s), ROUNDS times each, alternating B, A, B, A...
# Usage: bash ab.sh BEFORE_TREE AFTER_TREE DATA_DIR OUT_DIR [ROUNDS]
set -euo pipefail
before=$1 after=$2 data=$3 out=$4 rounds=${5:-3}
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for side in before after; do
    tree=$before; [ "$side" = after ] && tree=$after
    run="$out/$side-$r"
    rm -rf "$run"
    ( cd "$tree" && SLOWFAST_CACHE_DIR="$out/cache-$side" .venv/bin/python -m slowfast_trt.cli.main train --preset slowfast_tiny_4x16 \
        --train "$data/train.csv" --out "$run/train" --epochs 1 --batch-size 4 --amp fp32 --device cpu --threads 2 --quiet ) \
        > "$run.train.log" 2>&1
    ( cd "$tree" && .venv/bin/python -m slowfast_trt.cli.main bench pipeline "$data/val.csv" --preset slowfast_tiny_4x16 --batch-size 4 \
        --clips 48 --budget 6 --loaders dali_train,dali_test --device cpu --quiet --out "$run/pipeline" ) > "$run.pipeline.log" 2>&1
    echo "$side round $r done"
  done
done
