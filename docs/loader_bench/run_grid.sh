#!/usr/bin/env bash
# The loader table of docs/benchmarks.md: one bench run per block, JSON rows under $OUT.
#   docs/loader_bench/run_grid.sh LAYOUTS OUT   (LAYOUTS: the folder make_layouts.py wrote)
set -u
cd "$(dirname "$0")/../.."
L=$1; OUT=$2; mkdir -p "$OUT"
files() { for c in HToBB HToCC HToGG HToWW2Q1L HToWW4Q TTBar TTBarLep WToQQ ZToQQ ZJetsToNuNu; do echo -n "$c:$L/$1/${c}_*.$2 "; done; }
bench() { local name=$1; shift; echo "== $name: $*"; nice -n 2 python -m jetattn.bench loader --model-steps 0 --warmup 1 --json $OUT/$name.json "$@" 2>&1 | tr '\r' '\n' | grep -E "jets/s  first|crash|^cpu"; }
bench x8_f001 --files $(files g1k_x8 root) --num-workers 1 2 4 --fetch-step 0.01 --batches 4 --profile-fetch
bench x8_f1 --files $(files g1k_x8 root) --num-workers 1 2 4 8 --fetch-step 1 --batches 60 --profile-fetch
bench x8_byfiles --files $(files g1k_x8 root) --num-workers 1 2 --fetch-step 10 --fetch-by-files --batches 40 --profile-fetch
bench g10k_f --files $(files g10k root) --num-workers 1 --fetch-step 0.01 0.1 --batches 8 --profile-fetch
bench g10k_b1k --files $(files g10k_b1k root) --num-workers 1 --fetch-step 0.01 0.1 --batches 8 --profile-fetch
bench g100k --files $(files g100k root) --num-workers 1 --fetch-step 0.01 0.05 --batches 30 --profile-fetch
bench g10k_mem --files $(files g10k root) --num-workers 1 --fetch-step 1 --in-memory --batches 60
bench g10k_kin --data-config data/JetClass/JetClass_kin.yaml --files $(files g10k root) --num-workers 1 --fetch-step 0.01 0.1 --batches 8 --profile-fetch
bench p10k --files $(files p10k parquet) --num-workers 1 --fetch-step 0.01 0.1 --batches 8 --profile-fetch
bench p10k_rg1k --files $(files p10k_rg1k parquet) --num-workers 1 --fetch-step 0.01 0.1 --batches 8 --profile-fetch
echo done
