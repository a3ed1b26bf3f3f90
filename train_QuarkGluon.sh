#!/usr/bin/env bash
# Train and test a quark/gluon tagger on the Pythia quark-gluon dataset with weaver.
#
#   ./train_QuarkGluon.sh MODEL [FEATURES] [weaver options...]
#     MODEL     ParT, ParT-FineTune, ParT-topk, LinParT, PN, PN-FineTune, PFN or PCNN
#               (MST and Concat are not offered here: there is no multi-scale YAML for QuarkGluon)
#     FEATURES  kin, kinpid (default) or kinpidplus: data/QuarkGluon/qg_<FEATURES>.yaml
#     weaver options go last on weaver's command line, so they override the defaults here.
#   Validation jets are the last 11% of each training file (--train-val-split 0.8889, the share of
#   ./get_datasets.py --generate's default split; for another --split it prints the value to pass).
#   The FineTune models start from models/ParT_<kin|kinpid>.pt or models/ParticleNet_<kin|kinpid>.pt
#   (pretrained on JetClass; kinpidplus uses the kinpid one; ./get_datasets.py models downloads them);
#   PRETRAINED=path/to/checkpoint.pt picks another.
#
# Environment:
#   DATADIR_QuarkGluon  folder with train_file_*.parquet and test_file_*.parquet (or .root, as generated);
#                       default from env.sh (./get_datasets.py writes it), else ./datasets/QuarkGluon
#   GPUS, DDP_NGPUS, NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, DRY_RUN, PYTHON, JETATTN_ASSUME_CUDA
#                       as in train_JetClass.sh: GPU choice, DDP on one or several nodes through torchrun,
#                       print the command only, the python to use, skip the CUDA check.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATASET=QuarkGluon
source "$HERE/scripts/train_common.sh"

parse_args "ParT ParT-FineTune ParT-topk LinParT PN PN-FineTune PFN PCNN" "kin kinpid kinpidplus" kinpid "$@"
select_model
[[ $MODEL == ParT* || $MODEL == LinParT ]] && MODEL_OPTS+=(--optimizer-option weight_decay 0.01)
if [[ $FEATURES == kin ]]; then add_pretrained kin; else add_pretrained kinpid; fi
set_datadir

# the official files are parquet, the Pythia generator writes ROOT
ext=parquet
if ! compgen -G "$DATADIR/train_file_*.parquet" >/dev/null && compgen -G "$DATADIR/train_file_*.root" >/dev/null; then
    ext=root
fi
for split in train test; do
    require_files $split "no ${split}_file_*.parquet or ${split}_file_*.root" "$DATADIR/${split}_file_*.$ext"
done
# validation jets come out of the training files (--train-val-split)
DATA_TRAIN=("$DATADIR/train_file_*.$ext") DATA_VAL=() DATA_TEST=("$DATADIR/test_file_*.$ext")

set_launcher 1600000
data_config=${ROOT}data/QuarkGluon/qg_$FEATURES.yaml
run_weaver "$data_config" \
    --data-train "${DATA_TRAIN[@]}" \
    --data-test "${DATA_TEST[@]}" \
    --train-val-split 0.8889 \
    --in-memory --fetch-step 1 --num-workers 1 \
    --num-epochs 20 --samples-per-epoch "$SAMPLES_PER_EPOCH" --samples-per-epoch-val 200000
