#!/usr/bin/env bash
# Train and test a tagger on JetClass (10 classes) with weaver.
#
#   ./train_JetClass.sh MODEL [FEATURES] [weaver options...]
#     MODEL     ParT, ParT-topk, LinParT, PN, PFN, PCNN, MST or Concat
#     FEATURES  kin, kinpid or full (default): the feature YAML data/JetClass/JetClass_<FEATURES>.yaml;
#               MST and Concat (multi-scale transformer and its concatenation baseline, configuration model_3;
#               -o config model_1 picks another) read data/JetClass/JetClass_<FEATURES>_multiscale.yaml,
#               which exists for kin and full
#     weaver options go last on weaver's command line, so they override the defaults here
#     (e.g. --num-epochs 5, --batch-size 256, --gpus 0,1 for DataParallel on two GPUs).
#
# Environment:
#   DATADIR_JetClass   folder holding train_100M/ (or train/), val_5M/ (or val/), test_20M/ (or test/);
#                      default from env.sh (written by ./get_datasets.py), else ./datasets/JetClass/Pythia
#   GPUS               GPUs for weaver's --gpus, e.g. 0 or 0,1 (DataParallel); "" trains on the CPU.
#                      Unset: GPU 0 when CUDA is available, else the CPU.
#   DDP_NGPUS=N        DistributedDataParallel on N GPUs of this node through torchrun (needs CUDA);
#                      samples per epoch are divided among the N processes.
#   NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT
#                      several nodes: run the same command on each node with NNODES nodes in all, this
#                      node's NODE_RANK (0 .. NNODES-1), and MASTER_ADDR:MASTER_PORT (default port 29500) of
#                      node 0 (torchrun's static rendezvous); DDP_NGPUS is the number of GPUs per node.
#   DRY_RUN=1          print the weaver command (one line, shell-quoted) and exit without checking data,
#                      GPUs or checkpoints: commands for GPU nodes can be prepared on a login node.
#   PYTHON             the python of the environment with jetattn, which reads the weaver options, checks
#                      CUDA and the data (default: python)
#   JETATTN_ASSUME_CUDA=1|0  skip the CUDA check and assume a GPU is (1) or is not (0) there.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATASET=JetClass
source "$HERE/scripts/train_common.sh"

parse_args "ParT ParT-topk LinParT PN PFN PCNN MST Concat" "kin kinpid full" full "$@"
select_model
data_config=${ROOT}data/JetClass/JetClass_$FEATURES.yaml
if [[ $MODEL == MST || $MODEL == Concat ]]; then
    data_config=$(multiscale_config "kin full" "${ROOT}data/JetClass/JetClass_${FEATURES}_multiscale.yaml")
fi
set_datadir

first_dir() {  # the first of the folder names under DATADIR that exists (the official name first)
    local name
    for name in "$@"; do
        [[ -d $DATADIR/$name ]] && { echo "$DATADIR/$name"; return; }
    done
    echo "$DATADIR/$1"
}
train_dir=$(first_dir train_100M train)
val_dir=$(first_dir val_5M val)
test_dir=$(first_dir test_20M test)
require_files train "no .root files in $train_dir" "$train_dir/*.root"
require_files val "no .root files in $val_dir" "$val_dir/*.root"
require_files test "no .root files in $test_dir" "$test_dir/*.root"

# one file group per class, named after the official file prefixes, in the public recipe's order (weaver shuffles
# the training files starting from this list, so the order matters for reproducing a run seed for seed)
DATA_TRAIN=() DATA_VAL=("$val_dir/*.root") DATA_TEST=()
for class in HToBB HToCC HToGG HToWW2Q1L HToWW4Q TTBar TTBarLep WToQQ ZToQQ ZJetsToNuNu; do
    DATA_TRAIN+=("$class:$train_dir/${class}_*.root")
    DATA_TEST+=("$class:$test_dir/${class}_*.root")
done

set_launcher $((10000 * 1024))
run_weaver "$data_config" \
    --data-train "${DATA_TRAIN[@]}" \
    --data-val "${DATA_VAL[@]}" \
    --data-test "${DATA_TEST[@]}" \
    --num-workers 2 --fetch-step 0.01 \
    --num-epochs 50 --samples-per-epoch "$SAMPLES_PER_EPOCH" --samples-per-epoch-val $((10000 * 128))
