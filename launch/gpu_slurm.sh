#!/usr/bin/env bash
#SBATCH --job-name=spade-jax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=48:00:00
#SBATCH --signal=TERM@300
#SBATCH --requeue
#SBATCH --output=slurm-%x-%j.out
# Several GPU nodes under SLURM: one process per GPU (JAX's SLURM convention: each process takes
# the GPU numbered by its SLURM_LOCALID), all started by one srun. The mains see SLURM_NTASKS > 1
# and call jax.distributed.initialize(), which reads the coordinator, process count and id from
# SLURM. The workdir must be on a filesystem every node sees.
#
# Submit from a login node (this script calls sbatch on itself; sbatch flags override the
# #SBATCH defaults above):
#   launch/gpu_slurm.sh --nodes=4 --gpus-per-node=8 --partition=gpu --time=24:00:00 \
#       -- python -m lm.main --config=configs/wikitext103.py --config.data_dir=/shared/wt103 \
#          --workdir=/shared/runs/wt103
# or `sbatch launch/gpu_slurm.sh -- COMMAND...` with the defaults. Inside the job it runs
#   srun --kill-on-bad-exit=1 COMMAND...
# Preemption / time limit: SLURM sends SIGTERM 300 s before the end (--signal), the engine saves
# a checkpoint and exits, and --requeue restarts the job, which resumes from the workdir.
# --dry-run prints the sbatch and srun commands instead of running them.
set -euo pipefail
if [[ -n ${SLURM_JOB_ID:-} && -n ${SPADE_JAX_LAUNCH_DIR:-} ]]; then
    LAUNCH_DIR=$SPADE_JAX_LAUNCH_DIR  # sbatch runs a copy of this script: find common.sh again
else
    LAUNCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fi
# shellcheck source=launch/common.sh
source "$LAUNCH_DIR/common.sh"

usage() {
    cat <<'EOF_USAGE'
usage: launch/gpu_slurm.sh [--nodes=N] [--gpus-per-node=G] [--partition=P] [--time=T]
                           [--account=A] [--venv=DIR] [--dry-run] -- COMMAND...
  --nodes, --gpus-per-node  the allocation (default 2 x 8): G tasks per node, one GPU each
  --partition, --time, --account  passed to sbatch
  --venv=DIR    a virtual environment on the shared filesystem with spade-jax and jax[cuda12]
  --dry-run     print the sbatch command and the srun command the job runs
EOF_USAGE
}

NODES=2 GPUS=8 PARTITION="" TIME="" ACCOUNT="" VENV=""
option() {
    case $1 in
        --nodes) NODES=$2 ;;
        --gpus-per-node) GPUS=$2 ;;
        --partition) PARTITION=$2 ;;
        --time) TIME=$2 ;;
        --account) ACCOUNT=$2 ;;
        --venv) VENV=$2 ;;
        *) return 1 ;;
    esac
}
parse_args "$@"
[[ ${#COMMAND[@]} -gt 0 ]] || die "no command: put it after --, e.g. -- python -m lra.main ..."
[[ $NODES =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer"
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || die "--gpus-per-node must be a positive integer"
workdir_of "${COMMAND[@]}" >/dev/null || die "the command needs --workdir=DIR (on a shared filesystem)"
[[ -z $VENV || $VENV == /* ]] || VENV=$PWD/$VENV

SRUN=(srun --kill-on-bad-exit=1)

if [[ -n ${SLURM_JOB_ID:-} ]]; then  # inside the allocation: start every process
    echo "# job $SLURM_JOB_ID: ${SLURM_NNODES:-?} nodes, ${SLURM_NTASKS:-?} processes (restart ${SLURM_RESTART_COUNT:-0})"
    if [[ -n $VENV ]]; then
        echo "# PATH=$VENV/bin:\$PATH (srun passes the environment on)"
        export PATH="$VENV/bin:$PATH"
    fi
    run "${SRUN[@]}" "${COMMAND[@]}"
    exit
fi

SBATCH=(sbatch --nodes="$NODES" --ntasks-per-node="$GPUS" --gpus-per-node="$GPUS"
        --chdir="$(dirname "$LAUNCH_DIR")" --export="ALL,SPADE_JAX_LAUNCH_DIR=$LAUNCH_DIR")
[[ -n $PARTITION ]] && SBATCH+=(--partition="$PARTITION")
[[ -n $TIME ]] && SBATCH+=(--time="$TIME")
[[ -n $ACCOUNT ]] && SBATCH+=(--account="$ACCOUNT")
PASS=()
[[ -n $VENV ]] && PASS+=(--venv="$VENV")
run "${SBATCH[@]}" "$LAUNCH_DIR/gpu_slurm.sh" "${PASS[@]}" -- "${COMMAND[@]}"
if [[ $DRY_RUN == 1 ]]; then
    echo "# the job then runs, on $NODES nodes x $GPUS GPUs ($((NODES * GPUS)) processes):"
    [[ -z $VENV ]] || echo "# PATH=$VENV/bin:\$PATH (srun passes the environment on)"
    run "${SRUN[@]}" "${COMMAND[@]}"
fi
