#!/usr/bin/env bash
#SBATCH --job-name=spade-jax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=48:00:00
#SBATCH --signal=B:TERM@120
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
# in the background and waits for it.
#
# Time limit: --signal=B:TERM@120 sends SIGTERM to this batch shell alone, 120 s before the limit
# (raise it if a step plus a checkpoint save takes longer). The script passes it on to srun, which
# passes it to every task; the engine saves a checkpoint at the next step and exits 75
# (EX_TEMPFAIL). When the step ends with 75 (or is killed by a signal after that SIGTERM), the script
# runs `scontrol requeue $SLURM_JOB_ID`: the job goes back to the queue and, when it runs again,
# resumes from the workdir. SLURM itself never requeues a job at its time limit.
# --requeue (above) makes the job requeueable: SLURM requeues it after a node failure, or when it
# is preempted under PreemptMode=REQUEUE (the tasks get SIGTERM there too, save and exit 75), and
# `scontrol requeue` needs it on clusters where requeueing is off by default (JobRequeue=0).
# Exit 0 (finished: results.json) or any other status (a failure) is not requeued;
# --max-restarts=N (default 20) stops requeueing after N restarts (SLURM_RESTART_COUNT).
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
                           [--account=A] [--venv=DIR] [--max-restarts=N] [--dry-run] -- COMMAND...
  --nodes, --gpus-per-node  the allocation (default 2 x 8): G tasks per node, one GPU each
  --partition, --time, --account  passed to sbatch
  --venv=DIR    a virtual environment on the shared filesystem with spade-jax and jax[cuda12]
  --max-restarts=N  requeue the job (after exit status 75: saved, not finished) at most N
                times (default 20)
  --dry-run     print the sbatch command and the srun command the job runs
EOF_USAGE
}

NODES=2 GPUS=8 PARTITION="" TIME="" ACCOUNT="" VENV="" MAX_RESTARTS=20
option() {
    case $1 in
        --nodes) NODES=$2 ;;
        --gpus-per-node) GPUS=$2 ;;
        --partition) PARTITION=$2 ;;
        --time) TIME=$2 ;;
        --account) ACCOUNT=$2 ;;
        --venv) VENV=$2 ;;
        --max-restarts) MAX_RESTARTS=$2 ;;
        *) return 1 ;;
    esac
}
parse_args "$@"
[[ ${#COMMAND[@]} -gt 0 ]] || die "no command: put it after --, e.g. -- python -m lra.main ..."
[[ $NODES =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer"
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || die "--gpus-per-node must be a positive integer"
[[ $MAX_RESTARTS =~ ^[0-9]+$ ]] || die "--max-restarts must be a non-negative integer"
workdir_of "${COMMAND[@]}" >/dev/null || die "the command needs --workdir=DIR (on a shared filesystem)"
[[ -z $VENV || $VENV == /* ]] || VENV=$PWD/$VENV

SRUN=(srun --kill-on-bad-exit=1)

# run_step SRUN...: the job step in the background (so that the SIGTERM --signal sends reaches
# this shell's trap at once), SIGTERM passed on to it; then requeue the job if it stopped to be
# resumed. Exits with the step's status.
run_step() {
    local step="" status=0 again restarts=${SLURM_RESTART_COUNT:-0}
    TERMINATED=0
    trap 'TERMINATED=1; echo "# SIGTERM (time limit or preemption): passing it to the job step"; [[ -z $step ]] || kill -TERM "$step" 2>/dev/null || true' TERM
    announce "$@"
    "$@" &
    step=$!
    [[ $TERMINATED == 0 ]] || kill -TERM "$step" 2>/dev/null || true
    while :; do  # a trapped signal interrupts wait: wait again until the step has ended
        status=0
        wait "$step" || status=$?
        kill -0 "$step" 2>/dev/null || break
    done
    if ((status > 128)); then  # maybe an interrupted wait just as the step ended: its own status
        again=0
        wait "$step" || again=$?
        ((again == 127)) || status=$again
    fi
    trap - TERM
    if [[ $status == 75 ]] || { [[ $TERMINATED == 1 ]] && ((status > 128)); }; then
        if ((restarts >= MAX_RESTARTS)); then
            echo "# the step stopped (exit status $status) after $restarts restarts: not requeueing (--max-restarts=$MAX_RESTARTS); resubmit to resume" >&2
        else
            echo "# the step stopped (exit status $status) to be resumed: requeueing job $SLURM_JOB_ID"
            run scontrol requeue "$SLURM_JOB_ID" || echo "# scontrol requeue failed (already requeued by SLURM?)" >&2
        fi
    else
        echo "# the step ended with exit status $status$([[ $status == 0 ]] && echo ' (finished)' || echo ' (a failure: not requeued)')"
    fi
    exit "$status"
}

if [[ -n ${SLURM_JOB_ID:-} ]]; then  # inside the allocation: start every process
    echo "# job $SLURM_JOB_ID: ${SLURM_NNODES:-?} nodes, ${SLURM_NTASKS:-?} processes (restart ${SLURM_RESTART_COUNT:-0})"
    if [[ -n $VENV ]]; then
        echo "# PATH=$VENV/bin:\$PATH (srun passes the environment on)"
        export PATH="$VENV/bin:$PATH"
    fi
    if [[ $DRY_RUN == 1 ]]; then
        run "${SRUN[@]}" "${COMMAND[@]}"
        exit 0
    fi
    run_step "${SRUN[@]}" "${COMMAND[@]}"
fi

SBATCH=(sbatch --nodes="$NODES" --ntasks-per-node="$GPUS" --gpus-per-node="$GPUS"
        --chdir="$(dirname "$LAUNCH_DIR")" --export="ALL,SPADE_JAX_LAUNCH_DIR=$LAUNCH_DIR")
[[ -n $PARTITION ]] && SBATCH+=(--partition="$PARTITION")
[[ -n $TIME ]] && SBATCH+=(--time="$TIME")
[[ -n $ACCOUNT ]] && SBATCH+=(--account="$ACCOUNT")
PASS=(--max-restarts="$MAX_RESTARTS")
[[ -n $VENV ]] && PASS+=(--venv="$VENV")
run "${SBATCH[@]}" "$LAUNCH_DIR/gpu_slurm.sh" "${PASS[@]}" -- "${COMMAND[@]}"
if [[ $DRY_RUN == 1 ]]; then
    echo "# the job then runs, on $NODES nodes x $GPUS GPUs ($((NODES * GPUS)) processes):"
    [[ -z $VENV ]] || echo "# PATH=$VENV/bin:\$PATH (srun passes the environment on)"
    run "${SRUN[@]}" "${COMMAND[@]}"
fi
