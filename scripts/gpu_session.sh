#!/bin/bash
# The decisive GPU measurements of the open issues, in one call of under 5 minutes, for a session lent a GPU
# (the `device` tool). Each step has its own time limit and writes its JSON and log to $OUT as it goes, so a run cut
# short keeps what it measured; $OUT/summary.txt has one line per step.
#
# Prepare on the CPU first (both folders are git-ignored; pass them to the device tool's `carry`):
#   .whl/       cp312 manylinux wheels of weaver-core, uproot, awkward, awkward-cpp, awkward0, vector, lz4, numexpr,
#               cramjam (pip download, as the device README shows)
#   .gpu/data/  a generated JetClass sample, e.g. ./get_datasets.py JetClass --generate --num-jets 1250
#               --files-per-class 1 -d /tmp/gpudata, then its Pythia/{train,val,test} copied here
# Run: scripts/gpu_session.sh   (on the device machine, from the repository root, with $OUT set)
set -u
export PYTHONUNBUFFERED=1
T0=$(date +%s)
: "${OUT:?set OUT to the folder that comes back}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH PYTHON=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
python3 -c "import torch, weaver; print(torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"

step() {  # name, time limit (s), command...
  local name=$1 limit=$2
  shift 2
  local t=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "$name rc=$? $(($(date +%s) - t)) s (at $(($(date +%s) - T0)) s)" | tee -a "$OUT/summary.txt"
  tail -25 "$OUT/$name.log" >> "$OUT/summary.txt"
}

# issue 18: the packed ParT's targets (weaver eager and compiled, ours padded and packed, bf16), CUDA-event timing
step quick 170 python3 -m jetattn.bench attention --quick --budget-s 120 --json "$OUT/quick.json"
# issue 18: packed = padded on CUDA, compiled without graph breaks (the tests marked gpu)
step gpu_tests 60 python3 -m pytest -q -m gpu tests/test_packed.py tests/test_attention.py -p no:cacheprovider
# issue 17: every weaver version, weaver against ours padded and padding-free, fp32 eager
step versions 60 python3 -m jetattn.bench attention --no-compile --sweep --models ParT weaver-ParT \
  --precisions fp32 --variants padded bucketed --versions 2 3 3.5 3.6 --steps 5 --json "$OUT/versions.json"
echo "total $(($(date +%s) - T0)) s" >> "$OUT/summary.txt"
