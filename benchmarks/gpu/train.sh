#!/bin/bash
# GPU training benchmark (issue: Training): bi-encoder (a)/(b1)/(c)/(d) on one GPU, then the
# cluster config (cross-encoder, DeepSpeed ZeRO-2 bf16) on 1 GPU worker with a BERT-base-size encoder.
#   bash benchmarks/gpu/train.sh OUT_DIR [STEPS]
set -o pipefail
OUT=${1:-/tmp/out}; STEPS=${2:-200}; mkdir -p "$OUT"
source benchmarks/gpu/setup.sh || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import ray, deepspeed, torch, transformers, sentence_transformers as st; print(ray.__version__, deepspeed.__version__, torch.__version__, transformers.__version__, st.__version__)" 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"
[ -d /tmp/bert-base ] || python3 benchmarks/random_encoder.py --arch bert-base --tokenizer .gpu/tokenizer --out /tmp/bert-base || exit 1
python3 benchmarks/train.py --device cuda --model /tmp/bert-base --batch-size 128 --max-length 64 --steps 120 --warmup 30 \
  --only a c d b1 2>&1 | tee "$OUT/train_bi.log" | grep -E '^\{|samples/s|Error|error' 
python3 -m jobs.train --config configs/train/cluster.yaml model.name_or_path=/tmp/bert-base scaling.num_workers=1 \
  scaling.cpus_per_worker=12 scaling.placement_strategy=PACK ray.address=null tracking.enabled=false \
  train.max_steps=$STEPS train.eval_every=50 train.patience=null output_dir=/tmp/runs/train/cluster > "$OUT/train_cluster.log" 2>&1
echo "cluster job exit $?"; grep -E "step [0-9]+:|Error" "$OUT/train_cluster.log" | tail -8
python3 benchmarks/train.py --report /tmp/runs/train/cluster/report.json --model /tmp/bert-base | tee "$OUT/train_cluster_mfu.jsonl"
