#!/usr/bin/env bash
# Train and test a resonant di-Higgs event classifier (gg -> H -> hh -> bbbb against QCD multijets and ttbar)
# with weaver, on the events of ./get_datasets.py DiHiggs --generate --num-events N.
#
#   ./train_DiHiggs.sh MODEL [weaver options...]
#     MODEL     MST (multi-scale cross-attention transformer) or Concat (its concatenation baseline), both in
#               configuration model_3 (both jets' constituents and the objects); -o config model_2 (each jet's
#               constituents and the objects) or -o config model_1 (constituents only) picks another.
#               -o config objects: self-attention over the objects alone (the kinematics-only baseline).
#               ParT: the constituents of both jets as one particle sequence (pf), no objects.
#               One feature YAML serves them all: data/DiHiggs/dihiggs.yaml
#     weaver options go last on weaver's command line, so they override the defaults here
#     (e.g. --num-epochs 5, --batch-size 128, --gpus 0,1 for DataParallel on two GPUs).
#   An epoch is one pass over the training file. Events carry a `weight` (pb; see docs/generator.md), kept as
#   an observer in the predictions: the background's QCD and ttbar are mixed half and half, not by cross-section.
#
# Environment:
#   DATADIR_DiHiggs     folder with train_file.root, val_file.root and test_file.root; default from env.sh
#                       (./get_datasets.py writes it), else ./datasets/DiHiggs
#   GPUS, DDP_NGPUS, NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, DRY_RUN, PYTHON, JETATTN_ASSUME_CUDA
#                       as in train_JetClass.sh: GPU choice, DDP on one or several nodes through torchrun,
#                       print the command only, the python to use, skip the CUDA check. weaver's DDP hands
#                       each process its own training files: with the single train_file.root, pass as many
#                       files as processes (--data-train a.root b.root ...).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATASET=DiHiggs
source "$HERE/scripts/train_common.sh"

parse_args "MST Concat ParT" "" "" "$@"
select_model
set_datadir

GET_DATA="./get_datasets.py DiHiggs --generate --num-events N"  # generated only, by events
for split in train val test; do
    require_files $split "no ${split}_file.root" "$DATADIR/${split}_file.root"
done
DATA_TRAIN=("$DATADIR/train_file.root") DATA_VAL=("$DATADIR/val_file.root") DATA_TEST=("$DATADIR/test_file.root")

# no --samples-per-epoch (nor --in-memory, which needs one): an epoch is one pass over the training file
set_launcher 0
run_weaver "${ROOT}data/DiHiggs/dihiggs.yaml" \
    --data-train "${DATA_TRAIN[@]}" \
    --data-val "${DATA_VAL[@]}" \
    --data-test "${DATA_TEST[@]}" \
    --fetch-step 1 --num-workers 1 \
    --num-epochs 20
