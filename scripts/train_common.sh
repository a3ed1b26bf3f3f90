# shellcheck shell=bash
# Shared by train_JetClass.sh, train_TopLandscape.sh, train_QuarkGluon.sh and train_DiHiggs.sh (sourced, not run): argument
# checks, the model table, the dataset folder, the CPU / DataParallel / DDP launcher and the final command.
# The calling script sets HERE (its own folder) and DATASET before sourcing this file.

PY=${PYTHON:-python}
# Paths inside the repository: relative when run from its root (a readable command), absolute otherwise.
if [[ $PWD == "$HERE" ]]; then ROOT=""; else ROOT="$HERE/"; fi

die() {  # die MESSAGE [EXIT_CODE]: one line on stderr
    echo "error: $1" >&2
    exit "${2:-1}"
}

dry_run() { [[ -n ${DRY_RUN:-} && ${DRY_RUN} != 0 ]]; }

# Quote each argument the way Python's shlex.quote does, so a printed command can be pasted into a shell.
shell_quote() {
    local arg quoted=()
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
            quoted+=("$arg")
        else
            quoted+=("'${arg//\'/\'\"\'\"\'}'")
        fi
    done
    echo "${quoted[*]}"
}

# parse_args "MODELS" "FEATURE SETS" DEFAULT_FEATURES "$@"  ->  MODEL, FEATURES, EXTRA_ARGS (for weaver)
# Empty FEATURE SETS: the script takes no FEATURES argument (FEATURES stays empty).
parse_args() {
    local models=$1 feature_sets=$2 default=$3
    shift 3
    local usage="usage: ./${0##*/} MODEL [FEATURES] [weaver options...]; MODEL: ${models// /, }; FEATURES: ${feature_sets// /, } (default $default)"
    [[ -z $feature_sets ]] && usage="usage: ./${0##*/} MODEL [weaver options...]; MODEL: ${models// /, }"
    if [[ ${1:-} == -h || ${1:-} == --help ]]; then
        # the script's header comment is its manual
        sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
        exit 0
    fi
    [[ $# -ge 1 && $1 != -* ]] || die "no MODEL given; $usage" 2
    MODEL=$1
    shift
    FEATURES=$default
    if [[ -n $feature_sets && $# -ge 1 && $1 != -* ]]; then
        FEATURES=$1
        shift
    fi
    [[ " $models " == *" $MODEL "* ]] || die "unknown MODEL '$MODEL' for $DATASET; choose one of: ${models// /, }" 2
    if [[ -n $feature_sets ]]; then
        [[ " $feature_sets " == *" $FEATURES "* ]] ||
            die "unknown FEATURES '$FEATURES' for $DATASET; choose one of: ${feature_sets// /, }" 2
    elif [[ $# -ge 1 && $1 != -* ]]; then
        die "$DATASET takes no FEATURES argument, got '$1'; $usage" 2
    fi
    EXTRA_ARGS=("$@")
    quote_config_option
    read_user_args
}

# read_user_args: what the caller's weaver options (EXTRA_ARGS) set, read by jetattn.weaver_cli with weaver's own
# option names, in every form argparse takes (`--data-test=FILE`, `-mPREFIX`, `--no-predict`): USER_PREDICT,
# USER_GPUS_GIVEN, USER_GPUS, USER_{TRAIN,VAL,TEST}_GIVEN and USER_PREFIX (empty unless given). An option weaver
# would refuse stops here, in one line.
read_user_args() {
    local assignments errors status=0
    errors=$(mktemp)
    assignments=$("$PY" -m jetattn.weaver_cli shell -- "${EXTRA_ARGS[@]}" 2>"$errors") || status=$?
    ((status == 2)) && cat "$errors" >&2  # the one line naming the option
    rm -f "$errors"
    ((status == 2)) && exit 2
    ((status == 0)) ||
        die "$PY cannot import jetattn and its dependencies: install it where weaver runs (pip install -e . in this repository), or point PYTHON at that environment's python"
    eval "$assignments"
}

# weaver reads each -o/--network-option value as a Python literal, so `-o config model_2` would fail there: a bare
# multi-scale configuration name among EXTRA_ARGS is quoted ('model_2') for it.
quote_config_option() {
    local i
    for ((i = 0; i + 2 < ${#EXTRA_ARGS[@]}; i++)); do
        if [[ ${EXTRA_ARGS[i]} == -o || ${EXTRA_ARGS[i]} == --network-option ]] &&
            [[ ${EXTRA_ARGS[i + 1]} == config && ${EXTRA_ARGS[i + 2]} =~ ^(model_[0-9]+|objects)$ ]]; then
            EXTRA_ARGS[i + 2]="'${EXTRA_ARGS[i + 2]}'"
        fi
    done
}

# multiscale_config FEATURES_WITH_A_YAML YAML: the data config of MST and Concat, which read several input
# streams (YAML, a ..._multiscale.yaml); stops when FEATURES has none, or when it is missing outside DRY_RUN.
multiscale_config() {
    local offered=$1 yaml=$2
    [[ " $offered " == *" $FEATURES "* ]] ||
        die "$MODEL on $DATASET needs a multi-scale YAML, which FEATURES '$FEATURES' has not; choose one of: ${offered// /, }" 2
    dry_run || [[ -f $yaml ]] || die "$MODEL needs $yaml, which does not exist"
    echo "$yaml"
}

# The model table: network file under networks/, batch size, learning rate and weaver options of each model;
# fine-tuned models also name the stem of their pretrained checkpoint (models/<stem>_<features>.pt).
# A new model is one line here plus its name in the MODELS list of the scripts that offer it.
select_model() {
    PRETRAINED_STEM=""
    MODEL_OPTS=()
    case $MODEL in
        ParT)          NETWORK=example_ParticleTransformer.py          BATCH=512  LR=1e-3
                       MODEL_OPTS=(--use-amp) ;;
        ParT-FineTune) NETWORK=example_ParticleTransformer_finetune.py BATCH=512  LR=1e-4 PRETRAINED_STEM=ParT
                       MODEL_OPTS=(--use-amp --optimizer-option lr_mult '("fc.*",50)' --lr-scheduler none) ;;
        ParT-topk)     NETWORK=example_ParT_topk.py                    BATCH=512  LR=1e-3
                       MODEL_OPTS=(--use-amp) ;;
        LinParT)       NETWORK=example_LinParT.py                      BATCH=512  LR=1e-3
                       MODEL_OPTS=(--use-amp) ;;
        PN)            NETWORK=example_ParticleNet.py                  BATCH=512  LR=1e-2 ;;
        PN-FineTune)   NETWORK=example_ParticleNet_finetune.py         BATCH=512  LR=1e-3 PRETRAINED_STEM=ParticleNet
                       MODEL_OPTS=(--optimizer-option lr_mult '("fc_out.*",50)' --lr-scheduler none) ;;
        PFN)           NETWORK=example_PFN.py                          BATCH=4096 LR=2e-2 ;;
        PCNN)          NETWORK=example_PCNN.py                         BATCH=4096 LR=2e-2 ;;
        # multi-scale models: configuration model_3 unless the caller passes -o config model_1|model_2
        MST)           NETWORK=example_MultiScaleTransformer.py        BATCH=256  LR=1e-3 ;;
        Concat)        NETWORK=example_ConcatTransformer.py            BATCH=256  LR=1e-3 ;;
        *) die "MODEL '$MODEL' has no entry in the model table of scripts/train_common.sh" 2 ;;
    esac
}

# add_pretrained FEATURES_OF_CHECKPOINT: fine-tuned models load $PRETRAINED, else models/<stem>_<features>.pt.
add_pretrained() {
    [[ -n $PRETRAINED_STEM ]] || return 0
    local checkpoint=${PRETRAINED:-${ROOT}models/${PRETRAINED_STEM}_$1.pt}
    if ! dry_run && [[ ! -f $checkpoint ]]; then
        die "$MODEL needs the pretrained checkpoint $checkpoint, which does not exist; run ./get_datasets.py models --parts $PRETRAINED_STEM $1 (the official one), or set PRETRAINED=path/to/checkpoint.pt"
    fi
    MODEL_OPTS+=(--load-model-weights "$checkpoint")
}

# set_datadir: DATADIR from the caller's DATADIR_<dataset>, else env.sh next to the scripts, else ./datasets.
set_datadir() {
    local var=DATADIR_$DATASET
    local caller=${!var:-}
    if [[ -f $HERE/env.sh ]]; then
        # shellcheck source=/dev/null
        source "$HERE/env.sh"
    fi
    local fallback=$HERE/datasets/$DATASET
    [[ $DATASET == JetClass ]] && fallback+=/Pythia
    DATADIR=${caller:-${!var:-$fallback}}
}

predict_only() { [[ -n $USER_PREDICT ]]; }

# require_files SPLIT WHAT PATTERN...: each PATTERN must match a file, else one line naming get_datasets.py
# (GET_DATA: the command that makes the dataset, where it differs from the download and --num-jets).
# Skipped under DRY_RUN, when the caller gave the SPLIT's files, and for train/val under --predict.
require_files() {
    local split=$1 what=$2 pattern
    shift 2
    dry_run && return 0
    local given="USER_${split^^}_GIVEN"
    [[ -n ${!given} ]] && return 0
    [[ $split != test ]] && predict_only && return 0
    for pattern in "$@"; do
        compgen -G "$pattern" >/dev/null ||
            die "no $DATASET data under $DATADIR ($what); run ${GET_DATA:-./get_datasets.py $DATASET (or ./get_datasets.py $DATASET --generate --num-jets N for a small Pythia sample)}, or set DATADIR_$DATASET"
    done
}

has_cuda() {
    # JETATTN_ASSUME_CUDA=1 or 0 skips the check (tests; machines where the login node has no GPU)
    case ${JETATTN_ASSUME_CUDA:-} in
        1) return 0 ;;
        0) return 1 ;;
    esac
    "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
}

# set_launcher SAMPLES_PER_EPOCH: LAUNCH (weaver, or torchrun + weaver), GPU_OPTS and SAMPLES_PER_EPOCH,
# the latter divided among the DDP processes so that an epoch still sees SAMPLES_PER_EPOCH jets.
set_launcher() {
    local ngpus=${DDP_NGPUS:-1} nnodes=${NNODES:-1} gpus=$USER_GPUS gpus_given=$USER_GPUS_GIVEN gpus_from_env=""
    [[ $ngpus =~ ^[1-9][0-9]*$ ]] || die "DDP_NGPUS must be a positive number of GPUs per node, got '$ngpus'" 2
    [[ $nnodes =~ ^[1-9][0-9]*$ ]] || die "NNODES must be a positive number of nodes, got '$nnodes'" 2
    # weaver takes the last --gpus given, so the caller's decides (read_user_args); else GPUS from the environment
    if [[ -z $gpus_given && -n ${GPUS+set} ]]; then
        gpus_given=1 gpus_from_env=1 gpus=$GPUS
    fi

    local weaver
    weaver=$(command -v weaver) || { dry_run && weaver=weaver; } ||
        die "weaver not found on PATH; activate the environment that has weaver-core (pip install weaver-core)"
    local world=$((ngpus * nnodes))
    SAMPLES_PER_EPOCH=$(($1 / world))
    GPU_OPTS=()
    [[ -n $gpus_from_env ]] && GPU_OPTS=(--gpus "$gpus")
    if ((world > 1)); then
        # weaver-core 0.5.3 runs DDP on GPUs only (its CPU + gloo path fails) and needs a non-empty --gpus;
        # each process then takes the GPU of its LOCAL_RANK
        if ! has_cuda; then
            # a dry run prepares the command, often on a login node without GPUs: the note is enough there
            dry_run || die "DDP_NGPUS=$ngpus needs CUDA GPUs and none was found; unset DDP_NGPUS to train on one device"
            echo "note: no CUDA device here; DDP_NGPUS=$ngpus needs CUDA GPUs where the command runs" >&2
        fi
        [[ -n $gpus_given && -z $gpus ]] && die "DDP_NGPUS=$ngpus cannot run with an empty --gpus (the CPU)" 2
        [[ -z $gpus_given ]] && GPU_OPTS=(--gpus 0)
        if ((nnodes > 1)); then
            [[ -n ${MASTER_ADDR:-} ]] || die "NNODES=$nnodes needs MASTER_ADDR, the address of the node with NODE_RANK=0" 2
            LAUNCH=(torchrun "--nnodes=$nnodes" "--node_rank=${NODE_RANK:-0}" "--nproc_per_node=$ngpus"
                "--master_addr=$MASTER_ADDR" "--master_port=${MASTER_PORT:-29500}")
        else
            LAUNCH=(torchrun --standalone --nnodes=1 "--nproc_per_node=$ngpus")
        fi
        command -v torchrun >/dev/null || dry_run || die "torchrun not found on PATH (it comes with PyTorch)"
        LAUNCH+=("$weaver" --backend nccl)
        return 0
    fi
    LAUNCH=("$weaver")
    if [[ -z $gpus_given ]]; then
        if has_cuda; then
            gpus=0
        else
            echo "note: no CUDA device found, training on the CPU (--gpus \"\"); set GPUS or pass --gpus to choose GPUs" >&2
        fi
        GPU_OPTS=(--gpus "$gpus")
    fi
    if [[ -z $gpus ]]; then
        # mixed precision is a GPU feature: on the CPU it only slows training down
        local opt kept=()
        for opt in "${MODEL_OPTS[@]}"; do [[ $opt == --use-amp ]] || kept+=("$opt"); done
        MODEL_OPTS=("${kept[@]}")
    fi
}

# stoppable COMMAND...: run COMMAND and pass it a SIGTERM, SIGHUP or SIGINT that this script receives, then exit
# with 128 + the signal's number. Without this bash would die at once and leave COMMAND running: it runs a trap only
# once its foreground child has ended, hence the background job and `wait` (which a trapped signal interrupts).
# weaver needs none of this: the script execs it, so a signal reaches weaver, or torchrun, which passes it on to
# every rank, directly.
stoppable() {
    local child status stopped=""
    "$@" &
    child=$!
    trap 'stopped=143; kill "$child" 2>/dev/null' TERM
    trap 'stopped=129; kill "$child" 2>/dev/null' HUP
    trap 'stopped=130; kill "$child" 2>/dev/null' INT  # a background job ignores SIGINT: SIGTERM it
    while true; do
        status=0
        wait "$child" || status=$?
        kill -0 "$child" 2>/dev/null || break  # else `wait` returned for a signal and the command still runs
    done
    trap - TERM HUP INT
    [[ -z $stopped ]] || exit "$stopped"
    return "$status"
}

# run_weaver DATA_CONFIG DATASET_OPTIONS...: the weaver command is LAUNCH, the dataset's options (data files, loader,
# epochs), the options every dataset shares, GPU_OPTS, MODEL_OPTS and last EXTRA_ARGS (weaver takes the last
# occurrence of an option, so the caller's win). Before it runs, `python -m jetattn.preflight --command` checks the
# files weaver will read against the data config it will use (the caller's --data-config and files where given)
# and fits the loader options to the data (jetattn/loader_settings.py): they go before EXTRA_ARGS, and only where
# the caller set none. DRY_RUN prints the command, fitted where the training files are there to read. Otherwise the
# command replaces this shell, so that a SIGTERM to the script (a batch system's limit) reaches weaver or torchrun.
run_weaver() {
    local data_config=$1
    shift
    local run="training/$DATASET/$MODEL/${FEATURES:+$FEATURES/}{auto}"
    # the log goes beside the caller's own --model-prefix: weaver would fill the {auto} of the script's log path
    # with a name of its own, in a folder of its own, and print it nowhere
    local log="$run/train.log"
    if [[ -n $USER_PREFIX && $USER_PREFIX != *"{auto}"* ]]; then
        log="$(dirname "$USER_PREFIX")/$(predict_only && echo predict || echo train).log"
    fi
    local script_args=("$@"
        --data-config "$data_config"
        --network-config "${ROOT}networks/$NETWORK"
        --model-prefix "$run/net" --log-file "$log" --predict-output pred.root
        --batch-size "$BATCH" --start-lr "$LR" --optimizer ranger
        "${GPU_OPTS[@]}" "${MODEL_OPTS[@]}")
    local fitted=() options_file checked=0
    if fit_wanted; then
        # the fitted options come back on stdout, one per line; through a file, not $(...), so that the check runs
        # in this shell under `stoppable` (a SIGTERM meanwhile stops it too)
        options_file=$(mktemp)
        trap 'rm -f "$options_file"' EXIT
        stoppable "$PY" -m jetattn.preflight --command --processes "${DDP_NGPUS:-1}" \
            --user-args "${#EXTRA_ARGS[@]}" -- "${script_args[@]}" "${EXTRA_ARGS[@]}" >"$options_file" || checked=$?
        mapfile -t fitted <"$options_file"
        rm -f "$options_file"
        trap - EXIT
        if ((checked != 0)); then
            dry_run || exit 1
            echo "note: the command below is not fitted to the data (the check above failed)" >&2
        fi
    fi
    local cmd=("${LAUNCH[@]}" "${script_args[@]}" "${fitted[@]}" "${EXTRA_ARGS[@]}")
    if dry_run; then
        shell_quote "${cmd[@]}"
        exit 0
    fi
    echo "+ $(shell_quote "${cmd[@]}")" >&2
    if [[ ${DATA_TEST[*]:-} == *:* ]]; then
        # weaver scores each test group on its own, and each holds one class: no AUC per group, which sklearn
        # would repeat as a warning for every group; the whole test set's metrics come from jetattn.metrics
        echo "note: weaver tests each class group alone, so it logs 'Cannot compute metric roc_auc_score' per group; for the test set's metrics: python -m jetattn.metrics <run>/predict_output/pred_*.root --task $DATASET --combine" >&2
        export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:Only one class is present in y_true"
    fi
    # one line naming where the checkpoints, the log and the predictions go, from the options weaver will take
    predict_only || "$PY" -m jetattn.weaver_cli where -- "${cmd[@]:${#LAUNCH[@]}}" >&2
    exec "${cmd[@]}"
}

# fit_wanted: the loader check runs before every real run; a dry run fits the command only where the training
# files are there to read (a command prepared on a login node without the data is printed as the script has it).
fit_wanted() {
    dry_run || return 0
    local pattern spec
    for spec in "${DATA_TRAIN[@]}"; do
        pattern=${spec#*:}
        compgen -G "$pattern" >/dev/null || return 1
    done
    [[ ${#DATA_TRAIN[@]} -gt 0 ]]
}
