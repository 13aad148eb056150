# Source on the lent GPU machine (it has torch + CUDA, transformers and sentence-transformers, but
# no Ray, DeepSpeed or pydantic, and no network): installs the carried cp312 wheels, the carried Ray
# (its wheel is over the transfer limit, so it travels as an xz tarball without jars/rllib) and the
# carried product-matching data, once per machine. .gpu/ is made here by benchmarks/gpu/prepare.sh.
#   source benchmarks/gpu/setup.sh
if [ ! -f /tmp/site/.done ]; then
  mkdir -p /tmp/site /tmp/gpudata
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || return 1
  tar xJf .gpu/ray312.tar.xz -C /tmp/site || return 1
  tar xJf .gpu/data.tar.xz -C /tmp/gpudata || return 1
  touch /tmp/site/.done
fi
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
export RECSYS_DATA_ROOT=/tmp/gpudata/data RECSYS_RUNS_ROOT=/tmp/runs HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export RAY_USAGE_STATS_ENABLED=0 PYTHONUNBUFFERED=1
