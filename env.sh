# Dataset folders read by the train_*.sh scripts (`source env.sh`).
# ./get_datasets.py rewrites the matching line after a download; a DATADIR_* already set by the caller wins.
_jetattn_root="$(cd "$(dirname "${BASH_SOURCE:-$0}")" && pwd)"
export DATADIR_JetClass="${DATADIR_JetClass:-$_jetattn_root/datasets/JetClass/Pythia}"
export DATADIR_TopLandscape="${DATADIR_TopLandscape:-$_jetattn_root/datasets/TopLandscape}"
export DATADIR_QuarkGluon="${DATADIR_QuarkGluon:-$_jetattn_root/datasets/QuarkGluon}"
export DATADIR_DiHiggs="${DATADIR_DiHiggs:-$_jetattn_root/datasets/DiHiggs}"
unset _jetattn_root
