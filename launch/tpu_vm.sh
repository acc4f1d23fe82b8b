#!/usr/bin/env bash
# Runs one lra.main / lm.main command on a Cloud TPU VM or pod slice, start to finish:
#   create the VM (--spot for a spot slice) -> copy this checkout (or clone --repo) to every worker
#   -> install it there (Python 3.11 venv, jax[tpu], gcsfuse) and mount the workdir's bucket
#   -> run the command on all workers at once (--worker=all), logs streamed here and kept in
#      WORKDIR/logs/ -> delete the VM.
# With --spot, a preempted slice is deleted, recreated and the same command rerun until it
# finishes (up to --max-attempts): the engine resumes from the last checkpoint in the workdir.
#
#   launch/tpu_vm.sh --name=pathx --zone=us-central2-b --accelerator=v4-32 --spot \
#       --workdir=gs://BUCKET/runs/pathx --data=gs://BUCKET/lra_release \
#       -- python -m lra.main --config=configs/pathx.py
#
# The command gets --workdir=/mnt/gcs/BUCKET/runs/pathx (the bucket mounted with gcsfuse on every
# worker: the engine writes with plain file I/O) and, with --data, --config.data_dir=~/data/NAME
# (the folder copied to each worker's disk). Every worker runs with SPADE_JAX_DISTRIBUTED=1, so
# lra.main / lm.main call jax.distributed.initialize() (JAX finds the workers in the TPU
# metadata). --dry-run prints the gcloud commands instead of running them (no credentials needed);
# with --spot it also shows one preemption and the retry.
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'EOF'
usage: launch/tpu_vm.sh --name=NAME --zone=ZONE --workdir=gs://BUCKET/PATH [options] -- COMMAND...
  --accelerator=TYPE   TPU type (default v4-8; a pod slice: v4-32, v5p-64, ...)
  --version=RUNTIME    TPU VM runtime (default tpu-ubuntu2204-base)
  --project=PROJECT    gcloud project (default: gcloud's configured one)
  --spot               a spot slice; on preemption recreate it and rerun (auto-resume)
  --max-attempts=N     VM creations at most (default 1; 20 with --spot)
  --retry-wait=SECONDS pause before recreating a preempted or unavailable slice (default 60)
  --repo=URL [--ref=REF]  clone this repository on the workers (default: copy this checkout,
                       with its uncommitted changes to tracked files)
  --data=gs://B/PATH   copy this folder to every worker and pass --config.data_dir to it
  --keep               do not delete the VM at the end
  --dry-run            print the commands, run nothing
EOF
}

NAME="" ZONE="" WORKDIR="" ACCELERATOR="v4-8" VERSION="tpu-ubuntu2204-base" PROJECT=""
SPOT=0 MAX_ATTEMPTS="" RETRY_WAIT=60 REPO="" REF="" DATA="" KEEP=0
option() {
    case $1 in
        --name) NAME=$2 ;;
        --zone) ZONE=$2 ;;
        --workdir) WORKDIR=$2 ;;
        --accelerator) ACCELERATOR=$2 ;;
        --version) VERSION=$2 ;;
        --project) PROJECT=$2 ;;
        --spot) SPOT=1 ;;
        --max-attempts) MAX_ATTEMPTS=$2 ;;
        --retry-wait) RETRY_WAIT=$2 ;;
        --repo) REPO=$2 ;;
        --ref) REF=$2 ;;
        --data) DATA=$2 ;;
        --keep) KEEP=1 ;;
        *) return 1 ;;
    esac
}
parse_args "$@"

[[ -n $NAME ]] || die "--name is required"
[[ -n $ZONE ]] || die "--zone is required"
# plain names only: the paths go unquoted into the workers' shell commands
[[ $WORKDIR =~ ^gs://([a-z0-9][a-z0-9._-]*)/([A-Za-z0-9_./-]*[A-Za-z0-9_.-])/?$ ]] ||
    die "--workdir must be gs://BUCKET/PATH (letters, digits, _ . - /), got '$WORKDIR'"
BUCKET=${BASH_REMATCH[1]}
MOUNT=/mnt/gcs/$BUCKET
REMOTE_WORKDIR=$MOUNT/${BASH_REMATCH[2]}
[[ ${#COMMAND[@]} -gt 0 ]] || die "no command: put it after --, e.g. -- python -m lra.main --config=configs/pathx.py"
for word in "${COMMAND[@]}"; do
    [[ $word != --workdir* ]] || die "leave --workdir out of the command: it is set from --workdir=gs://..."
done
if [[ -n $DATA ]]; then
    [[ $DATA =~ ^gs://[^/]+/.+ ]] || die "--data must be gs://BUCKET/PATH, got '$DATA'"
    DATA=${DATA%/}
fi
[[ -z $MAX_ATTEMPTS ]] && { [[ $SPOT == 1 ]] && MAX_ATTEMPTS=20 || MAX_ATTEMPTS=1; }
[[ $MAX_ATTEMPTS =~ ^[1-9][0-9]*$ ]] || die "--max-attempts must be a positive integer"
[[ $RETRY_WAIT =~ ^[0-9]+$ ]] || die "--retry-wait must be a number of seconds"

GCLOUD_TPU=(gcloud compute tpus tpu-vm)
LOCATION=(--zone="$ZONE")
[[ -n $PROJECT ]] && LOCATION+=(--project="$PROJECT")
if [[ $DRY_RUN == 1 ]]; then LOG="(none: dry run)"; else LOG=$(mktemp -t "spade-jax-$NAME-XXXX.log"); fi

# --- the remote commands (single-quoted parts: $HOME, $USER etc. expand on the workers) -------
# shellcheck disable=SC2016  # expands on the workers
SETUP_SYSTEM='set -e; if ! command -v gcsfuse >/dev/null || ! command -v python3.11 >/dev/null; then
curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null;
echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -cs) main" | sudo tee /etc/apt/sources.list.d/gcsfuse.list;
sudo apt-get update -q && sudo apt-get install -y -q gcsfuse python3.11 python3.11-venv; fi'
SETUP_MOUNT="sudo mkdir -p $MOUNT && sudo chown \"\$USER\" $MOUNT && (mountpoint -q $MOUNT || gcsfuse --implicit-dirs $BUCKET $MOUNT) && mkdir -p $REMOTE_WORKDIR/logs"
SETUP_PYTHON="python3.11 -m venv ~/venv && ~/venv/bin/pip install -q --upgrade pip && ~/venv/bin/pip install -q -e ~/spade-jax 'jax[tpu]'"
REMOTE_ARGS=""
if [[ -n $DATA ]]; then
    DATA_NAME=$(basename "$DATA")
    [[ $DATA_NAME =~ ^[A-Za-z0-9_.-]+$ ]] || die "--data: use a folder name of letters, digits, _ . - (got '$DATA_NAME')"
    SETUP_DATA="mkdir -p ~/data && (test -d ~/data/$DATA_NAME || gcloud storage cp -r $(quote_word "$DATA") ~/data/)"
    REMOTE_ARGS+=" --config.data_dir=\"\$HOME/data/$DATA_NAME\""
fi
REMOTE_ARGS+=" --workdir=$REMOTE_WORKDIR"
REMOTE_RUN="cd ~/spade-jax && export PATH=\"\$HOME/venv/bin:\$PATH\" SPADE_JAX_DISTRIBUTED=1 && $(join_command "${COMMAND[@]}")$REMOTE_ARGS 2>&1 | tee -a $REMOTE_WORKDIR/logs/\$(hostname).log; exit \${PIPESTATUS[0]}"

on_workers() {  # on_workers COMMAND_STRING: run on every worker of the slice
    run "${GCLOUD_TPU[@]}" ssh "$NAME" "${LOCATION[@]}" --worker=all --command="$1"
}

create_vm() {
    local flags=(--accelerator-type="$ACCELERATOR" --version="$VERSION")
    [[ $SPOT == 1 ]] && flags+=(--spot)
    run "${GCLOUD_TPU[@]}" create "$NAME" "${LOCATION[@]}" "${flags[@]}"
}

copy_code() {
    if [[ -n $REPO ]]; then
        on_workers "rm -rf ~/spade-jax && git clone -q $(quote_word "$REPO") ~/spade-jax${REF:+ && git -C ~/spade-jax checkout -q $(quote_word "$REF")}"
        return
    fi
    local root tree archive
    root=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
    archive=${TMPDIR:-/tmp}/spade-jax-$NAME.tar.gz
    # HEAD plus uncommitted changes to tracked files (git stash create prints nothing when clean)
    tree=$(git -C "$root" stash create 2>/dev/null || true)
    run git -C "$root" archive --format=tar.gz --output="$archive" "${tree:-HEAD}"
    run "${GCLOUD_TPU[@]}" scp "$archive" "$NAME:spade-jax.tar.gz" "${LOCATION[@]}" --worker=all
    on_workers "rm -rf ~/spade-jax && mkdir -p ~/spade-jax && tar -xzf ~/spade-jax.tar.gz -C ~/spade-jax"
}

setup_workers() {
    on_workers "$SETUP_SYSTEM" && on_workers "$SETUP_MOUNT" && on_workers "$SETUP_PYTHON" &&
        { [[ -z $DATA ]] || on_workers "$SETUP_DATA"; }
}

run_command() {  # the command on every worker; the streamed output also goes to a local log
    if [[ $DRY_RUN == 1 ]]; then
        on_workers "$REMOTE_RUN"
        return
    fi
    on_workers "$REMOTE_RUN" 2>&1 | tee -a "$LOG"
    return "${PIPESTATUS[0]}"
}

# The dry run plays one preemption of a spot slice (attempt 1), then a clean finish.
dry_preempted() { [[ $DRY_RUN == 1 && $SPOT == 1 && $1 == 1 ]]; }

finished() {  # results.json is the engine's last write: the run is complete
    local query=(gcloud storage ls "$WORKDIR/results.json")
    if [[ $DRY_RUN == 1 ]]; then
        run "${query[@]}"
        if dry_preempted "$1"; then return 1; fi
        return 0
    fi
    "${query[@]}" >/dev/null 2>&1
}

vm_state() {  # STATE=READY, PREEMPTED, ... ("" when the VM is gone)
    local query=("${GCLOUD_TPU[@]}" describe "$NAME" "${LOCATION[@]}" --format='value(state)')
    if [[ $DRY_RUN == 1 ]]; then
        run "${query[@]}"
        if dry_preempted "$1"; then STATE=PREEMPTED; else STATE=READY; fi
        return
    fi
    STATE=$("${query[@]}" 2>/dev/null || true)
}

delete_vm() {
    run "${GCLOUD_TPU[@]}" delete "$NAME" "${LOCATION[@]}" --quiet
}

# shellcheck disable=SC2329  # run by the EXIT trap
cleanup() {
    local status=$?
    if [[ $KEEP == 1 ]]; then
        echo "# keeping $NAME (--keep); delete it with:"
        show "${GCLOUD_TPU[@]}" delete "$NAME" "${LOCATION[@]}" --quiet
    else
        echo "# deleting the TPU VM"
        delete_vm || true
    fi
    echo "# local log: $LOG; per-worker logs: $WORKDIR/logs/"
    exit "$status"
}
trap cleanup EXIT

echo "# $ACCELERATOR in $ZONE$([[ $SPOT == 1 ]] && echo ', spot'), at most $MAX_ATTEMPTS attempt(s)$([[ $DRY_RUN == 1 ]] && echo '; dry run')"
for ((attempt = 1; attempt <= MAX_ATTEMPTS; attempt++)); do
    echo "# attempt $attempt of $MAX_ATTEMPTS"
    if ! create_vm; then
        echo "# could not create $NAME (no capacity?); retrying in ${RETRY_WAIT}s" >&2
        delete_vm >/dev/null 2>&1 || true
        sleep "$RETRY_WAIT"
        continue
    fi
    status=0
    copy_code && setup_workers && run_command || status=$?
    if finished "$attempt"; then
        echo "# finished: $WORKDIR/results.json"
        exit 0
    fi
    vm_state "$attempt"
    if [[ $STATE == READY ]]; then  # a healthy VM: a real failure, rerunning would not help
        echo "# the command ended (exit status $status) without $WORKDIR/results.json on a" \
             "healthy VM; not retrying" >&2
        exit 1
    fi
    echo "# $NAME is ${STATE:-gone}: delete it, recreate it, rerun the same command" \
         "(the engine resumes from $WORKDIR)"
    delete_vm || true
    [[ $DRY_RUN == 1 ]] || sleep "$RETRY_WAIT"
done
echo "# gave up after $MAX_ATTEMPTS attempt(s)" >&2
exit 1
