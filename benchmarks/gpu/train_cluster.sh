#!/bin/bash
# The cluster train config on one GPU worker with a BERT-base-size encoder at a given per-GPU batch.
#   bash benchmarks/gpu/train_cluster.sh OUT_DIR BATCH STEPS EVAL_EVERY [extra key=value ...]
OUT=${1:-/tmp/out}; B=${2:-32}; STEPS=${3:-200}; EV=${4:-50}; shift 4; mkdir -p "$OUT"
source benchmarks/gpu/setup.sh || exit 1
[ -d /tmp/bert-base ] || python3 benchmarks/random_encoder.py --arch bert-base --tokenizer .gpu/tokenizer --out /tmp/bert-base >/dev/null 2>&1
python3 -m jobs.train --config configs/train/cluster.yaml model.name_or_path=/tmp/bert-base scaling.num_workers=1 \
  scaling.cpus_per_worker=12 scaling.placement_strategy=PACK ray.address=null tracking.enabled=false \
  train.batch_size=$B train.max_steps=$STEPS train.eval_every=$EV train.patience=null \
  output_dir=/tmp/runs/train/cluster-b$B "$@" > "$OUT/train_cluster_b$B.log" 2>&1
echo "cluster job (batch $B) exit $?"
python3 benchmarks/train.py --report /tmp/runs/train/cluster-b$B/report.json --model /tmp/bert-base | tee "$OUT/train_cluster_b$B.jsonl"
