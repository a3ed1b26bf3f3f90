#!/usr/bin/env bash
# Train and test a top-quark tagger on the Top Quark Tagging Reference Dataset (TopLandscape) with weaver.
#
#   ./train_TopLandscape.sh MODEL [kin] [weaver options...]
#     MODEL     ParT, ParT-FineTune, ParT-topk, LinParT, PN, PN-FineTune, PFN, PCNN, MST or Concat
#     FEATURES  kin (the only set: the dataset has no particle ID), data/TopLandscape/top_kin.yaml;
#               MST and Concat (multi-scale transformer and its concatenation baseline, configuration model_3;
#               -o config model_1 picks another) read data/TopLandscape/top_kin_multiscale.yaml
#     weaver options go last on weaver's command line, so they override the defaults here.
#   The FineTune models start from models/ParT_kin.pt or models/ParticleNet_kin.pt (pretrained on JetClass);
#   ./get_datasets.py models downloads them; PRETRAINED=path/to/checkpoint.pt picks another.
#
# Environment:
#   DATADIR_TopLandscape  folder with train_file, val_file and test_file (.parquet as downloaded, or .root
#                         as generated); default from env.sh (./get_datasets.py writes it), else ./datasets/TopLandscape
#   GPUS, DDP_NGPUS, NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, DRY_RUN, PYTHON, JETATTN_ASSUME_CUDA
#                         as in train_JetClass.sh: GPU choice, DDP on one or several nodes through torchrun,
#                         print the command only, the python to use, skip the CUDA check.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATASET=TopLandscape
source "$HERE/scripts/train_common.sh"

parse_args "ParT ParT-FineTune ParT-topk LinParT PN PN-FineTune PFN PCNN MST Concat" "kin" kin "$@"
select_model
[[ $MODEL == ParT* || $MODEL == LinParT ]] && MODEL_OPTS+=(--optimizer-option weight_decay 0.01)
add_pretrained kin
data_config=${ROOT}data/TopLandscape/top_kin.yaml
if [[ $MODEL == MST || $MODEL == Concat ]]; then
    data_config=$(multiscale_config kin "${ROOT}data/TopLandscape/top_kin_multiscale.yaml")
fi
set_datadir

# the official files are parquet, the Pythia generator writes ROOT
ext=parquet
if [[ ! -f $DATADIR/train_file.parquet && -f $DATADIR/train_file.root ]]; then
    ext=root
fi
for split in train val test; do
    require_files $split "no ${split}_file.parquet or ${split}_file.root" "$DATADIR/${split}_file.$ext"
done
DATA_TRAIN=("$DATADIR/train_file.$ext") DATA_VAL=("$DATADIR/val_file.$ext") DATA_TEST=("$DATADIR/test_file.$ext")

set_launcher $((2400 * 512))
run_weaver "$data_config" \
    --data-train "${DATA_TRAIN[@]}" \
    --data-val "${DATA_VAL[@]}" \
    --data-test "${DATA_TEST[@]}" \
    --in-memory --fetch-step 1 --num-workers 1 \
    --num-epochs 20 --samples-per-epoch "$SAMPLES_PER_EPOCH" --samples-per-epoch-val $((800 * 512))
