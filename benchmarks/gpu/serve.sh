#!/bin/bash
# GPU reranker benchmark (issue: Serving): one Reranker replica on the GPU, 50 candidates per request,
# open loop at 500 req/s (p50/p95/p99), then @serve.batch off vs on at concurrency 32.
#   bash benchmarks/gpu/serve.sh OUT_DIR
# The GPU options of rerank (configs/serve: precision, pad_to_multiple_of, torch_compile) by env:
#   PRECISION=bf16 PAD=16 COMPILE=1 bash benchmarks/gpu/serve.sh OUT_DIR   (defaults: auto = fp16, 0, off)
set -o pipefail
OUT=${1:-/tmp/out}; mkdir -p "$OUT"
source benchmarks/gpu/setup.sh || exit 1
for arch in ${ARCHS:-minilm-l6 bert-base}; do
  python3 -m benchmarks.serve_reranker --data /tmp/gpudata/data/product-matching/abt-buy --arch $arch \
    --tokenizer .gpu/tokenizer --num-gpus 1 --num-cpus 4 --rate ${RATES:-100 250 500} --duration ${DURATION:-8} --candidates 50 \
    --concurrency 32 --max-batch-size 32 --batch-wait-s 0.002 --precision ${PRECISION:-auto} \
    --pad-to-multiple-of ${PAD:-0} ${COMPILE:+--torch-compile} > "$OUT/serve_$arch.log" 2>&1
  echo "$arch exit $?"; sed -n '/^{/,/^}/p' "$OUT/serve_$arch.log" | tee "$OUT/serve_$arch.json" | head -40
done
