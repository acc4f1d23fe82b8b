#!/usr/bin/env bash
# One node, all (or some) of its GPUs: a single process sees every visible GPU and the engine's
# mesh (data=-1) spreads the batch over them; nothing distributed to set up.
#
#   launch/gpu.sh --install -- python -m lra.main --config=configs/pathx.py \
#       --config.data_dir=/data/lra_release --workdir=runs/pathx
#   launch/gpu.sh --gpus=0,1,2,3 -- python -m lm.main --config=configs/wikitext103.py ...
#
# Rerunning the same command resumes from its --workdir; --retries=N reruns it after a crash (a
# signal's death) or a SIGTERM exit (75: saved, rerun to resume) until results.json appears; a
# user error (2) or a failure (1) is not rerun. --install creates the
# virtual environment with the first Python >= 3.11 it finds (python3.13, python3.12, python3.11,
# python3; or --python=EXE): jax, flax and orbax need 3.11. --dry-run prints the commands.
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'EOF_USAGE'
usage: launch/gpu.sh [--gpus=0,1,...] [--install [--python=EXE]] [--venv=DIR] [--retries=N]
                     [--dry-run] -- COMMAND...
  --gpus=LIST   CUDA_VISIBLE_DEVICES (default: every GPU)
  --install     first create --venv (default .venv-gpu) and pip install -e . 'jax[cuda12]' there
  --python=EXE  the Python for --install (default: the first >= 3.11 of python3.13, python3.12,
                python3.11, python3)
  --venv=DIR    run the command with DIR/bin first on PATH
  --retries=N   rerun the command up to N more times after exit 75 or a crash, while
                WORKDIR/results.json is missing
  --dry-run     print the commands, run nothing
EOF_USAGE
}

GPUS="" INSTALL=0 VENV="" RETRIES=0 PYTHON=""
option() {
    case $1 in
        --gpus) GPUS=$2 ;;
        --install) INSTALL=1 ;;
        --venv) VENV=$2 ;;
        --python) PYTHON=$2 ;;
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

new_enough() {  # new_enough EXE: a Python >= 3.11 (what jax, flax and orbax-checkpoint require)
    command -v "$1" >/dev/null && "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
}
version_of() { { command -v "$1" >/dev/null && "$1" --version 2>&1; } || echo "not found"; }
if [[ $INSTALL == 1 ]]; then
    if [[ -n $PYTHON ]]; then
        new_enough "$PYTHON" || die "--python=$PYTHON is $(version_of "$PYTHON"): spade-jax needs Python >= 3.11 (jax, flax, orbax-checkpoint)"
    else
        for candidate in python3.13 python3.12 python3.11 python3; do
            if new_enough "$candidate"; then PYTHON=$candidate; break; fi
        done
        [[ -n $PYTHON ]] || die "no Python >= 3.11 found (python3: $(version_of python3)): spade-jax needs 3.11 or newer (jax, flax, orbax-checkpoint); install one (e.g. apt install python3.11 python3.11-venv) or pass --python=EXE"
    fi
    run "$PYTHON" -m venv "$VENV"
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
    # 75: stopped by SIGTERM after saving; >= 128: killed by a signal (OOM killer, a crash).
    # Anything else (2: a user error, 1: a failure) would fail the same way again.
    if [[ $status != 75 && $status -lt 128 ]]; then
        echo "# exit status $status (not a preemption or a crash): not rerunning" >&2
        exit "$status"
    fi
    echo "# exit status $status and no $WORKDIR/results.json; rerunning (resumes)" >&2
done
exit 1
