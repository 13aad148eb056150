#!/bin/bash
# Build .gpu/ (git-ignored) for the lent GPU machine, whose image has Python 3.12, torch + CUDA,
# transformers and sentence-transformers but no Ray, DeepSpeed or pydantic and no network. Run here
# after `make install`; then pass `carry: [".gpu"]` to the device tool and start each command with
# `source benchmarks/gpu/setup.sh` (the scripts beside this file do). Total ~63 MB of the 64 MiB limit.
#   bash benchmarks/gpu/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
DATA=${RECSYS_DATA_ROOT:-../shared/data}
grep -qx "/.gpu/" .git/info/exclude || echo "/.gpu/" >> .git/info/exclude
rm -rf .gpu /tmp/gpu-prep && mkdir -p .gpu/whl .gpu/tokenizer /tmp/gpu-prep
ver() { $PY -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
fetch() {  # cp312 manylinux wheels, no dependencies (each is listed)
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_34_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 -d "$1" "$2"
}
# What Ray (default, serve, train, tune, data), DeepSpeed, mlflow-skinny and recsys import that the
# image lacks (its package list: /work/.library/device/KINDS.md).
PKGS="annotated-types brotli cachetools colorful databricks-sdk datasets datasketches dill distlib fastapi
google-api-core google-auth googleapis-common-protos hjson importlib_metadata jsonschema
jsonschema-specifications lz4 mlflow-skinny mlflow-tracing mmh3 multiprocess opencensus opencensus-context
opentelemetry-api opentelemetry-exporter-prometheus opentelemetry-proto opentelemetry-sdk
opentelemetry-semantic-conventions orjson platformdirs proto-plus py-spy pyasn1 pyasn1_modules pydantic
pydantic_core python-discovery referencing rpds-py smart_open sqlparse starlette tensorboardX
typing_extensions typing-inspection uvicorn virtualenv watchfiles wcwidth aiohttp-cors"
for p in $PKGS; do fetch .gpu/whl "$p==$(ver "$p")"; done
fetch .gpu/whl grpcio-reflection==1.84.0  # must match the image's grpcio (1.84); a newer one fails at import
PIP_CONSTRAINT= $PY -m pip wheel -q --no-deps --no-build-isolation -w .gpu/whl "deepspeed==$(ver deepspeed)"  # pure Python (DS_BUILD_OPS=0)
# Ray's wheel (~80 MB) is over the transfer limit: unpacked without Java jars, RLlib and LLM, as xz (~30 MB).
fetch /tmp/gpu-prep "ray==$(ver ray)"
(mkdir -p /tmp/gpu-prep/ray && cd /tmp/gpu-prep/ray && unzip -q ../ray-*.whl && rm -rf ray/jars ray/rllib ray/llm \
  && tar cf - . | xz -T0 -6 > "$OLDPWD/.gpu/ray312.tar.xz")
tar cJf .gpu/data.tar.xz -C "$DATA" --transform "s,^,data/," product-matching
TOK=$($PY -c "from recsys.models.hub import resolve_model_path; print(resolve_model_path('all-MiniLM-L6-v2'))")
cp "$TOK"/{tokenizer.json,tokenizer_config.json,vocab.txt,special_tokens_map.json,config.json} .gpu/tokenizer/
rm -rf /tmp/gpu-prep
du -sh .gpu
