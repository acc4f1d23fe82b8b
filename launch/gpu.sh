#!/usr/bin/env bash
# One node, all (or some) of its GPUs: a single process sees every visible GPU and the engine's
# mesh (data=-1) spreads the batch over them; nothing distributed to set up.
#
#   launch/gpu.sh --install -- python -m lra.main --config=configs/pathx.py \
#       --config.data_dir=/data/lra_release --workdir=runs/pathx
#   launch/gpu.sh --gpus=0,1,2,3 -- python -m lm.main --config=configs/wikitext103.py ...
#
# Rerunning the same command resumes from its --workdir; --retries=N reruns it after a crash or
# a SIGTERM exit until results.json appears. --dry-run prints the commands.
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'EOF_USAGE'
usage: launch/gpu.sh [--gpus=0,1,...] [--install] [--venv=DIR] [--retries=N] [--dry-run] -- COMMAND...
  --gpus=LIST   CUDA_VISIBLE_DEVICES (default: every GPU)
  --install     first create --venv (default .venv-gpu) and pip install -e . 'jax[cuda12]' there
  --venv=DIR    run the command with DIR/bin first on PATH
  --retries=N   rerun the command up to N more times while WORKDIR/results.json is missing
  --dry-run     print the commands, run nothing
EOF_USAGE
}

GPUS="" INSTALL=0 VENV="" RETRIES=0
option() {
    case $1 in
        --gpus) GPUS=$2 ;;
        --install) INSTALL=1 ;;
        --venv) VENV=$2 ;;
        --retries) RETRIES=$2 ;;
        *) return 1 ;;
    esac
}
parse_args "$@"
[[ ${#COMMAND[@]} -gt 0 ]] || die "no command: put it after --, e.g. -- python -m lra.main ..."
[[ $RETRIES =~ ^[0-9]+$ ]] || die "--retries must be a non-negative integer"
[[ -z $GPUS || $GPUS =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--gpus must be a list like 0,1,2,3"
WORKDIR=$(workdir_of "${COMMAND[@]}") || die "the command needs --workdir=DIR"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ $INSTALL == 1 && -z $VENV ]] && VENV=$ROOT/.venv-gpu
[[ -z $VENV || $VENV == /* ]] || VENV=$PWD/$VENV

if [[ $INSTALL == 1 ]]; then
    run python3 -m venv "$VENV"
    run "$VENV/bin/pip" install -q --upgrade pip
    run "$VENV/bin/pip" install -q -e "$ROOT" 'jax[cuda12]'
fi
ENV=(env XLA_PYTHON_CLIENT_MEM_FRACTION=0.95)
[[ -n $GPUS ]] && ENV+=(CUDA_VISIBLE_DEVICES="$GPUS")
[[ -n $VENV ]] && ENV+=(PATH="$VENV/bin:$PATH")
[[ $DRY_RUN == 1 ]] && ENV=("${ENV[@]/#PATH=*/PATH=$VENV/bin:\$PATH}")

for ((attempt = 0; attempt <= RETRIES; attempt++)); do
    status=0
    run "${ENV[@]}" "${COMMAND[@]}" || status=$?
    if [[ $DRY_RUN == 1 || -f $WORKDIR/results.json ]]; then
        exit "$status"
    fi
    echo "# exit status $status and no $WORKDIR/results.json; rerunning (resumes)" >&2
done
exit 1
