#!/usr/bin/env bash
# Runs one lra.main / lm.main command on a Cloud TPU VM or pod slice and looks after it until it
# has finished or failed (docs/launch.md):
#   create the slice (directly, or --queued as a queued resource; --spot for spot capacity)
#   -> copy this checkout (or clone --repo) and the job wrapper launch/tpu_job.sh to every worker
#   -> install it there (Python 3.11 venv, jax[tpu]) -> start the command DETACHED on all workers
#      (setsid/nohup: a dropped ssh or a closed laptop does not stop it; each worker's log is
#      copied to WORKDIR/logs/<host>.log) -> poll the workers' job state every --poll-interval
#   -> delete the slice once the job has ended.
#
#   launch/tpu_vm.sh --name=pathx --zone=us-central2-b --accelerator=v4-32 --spot \
#       --workdir=gs://BUCKET/runs/pathx --data=gs://BUCKET/lra_release \
#       -- python -m lra.main --config=configs/pathx.py
#   launch/tpu_vm.sh --attach=pathx     # from any shell, after the launcher was stopped
#   launch/tpu_vm.sh --logs=pathx --follow
#
# What ends the job, from the command's exit status (lra.main / lm.main) and the VM's state:
#   0 and WORKDIR/results.json   finished: delete the slice, exit 0
#   75 (saved after SIGTERM)     rerun the same command on the same, healthy slice (it resumes)
#   slice PREEMPTED / TERMINATED / gone   delete it, recreate it, rerun (--spot: up to 20 times)
#   any other status             failed: print the workers' last log lines, delete, exit 1
# No answer over ssh (exit 255, a dropped connection) decides nothing: the launcher asks the VM's
# state and polls again. Stopping the launcher (Ctrl-C, a closed laptop) while the job runs
# deletes nothing: --attach=NAME picks the job up again (with the options this machine saved at
# launch), without recreating the slice or rerunning the command.
#
# The command gets --workdir=gs://BUCKET/PATH itself (the engine reads and writes gs:// paths);
# --gcsfuse mounts the bucket on every worker instead and passes /mnt/gcs/BUCKET/PATH. With
# --data, it also gets --config.data_dir=~/data/NAME (the folder copied to each worker's disk).
# Every worker runs with SPADE_JAX_DISTRIBUTED=1: lra.main / lm.main call
# jax.distributed.initialize(), which finds the workers in the TPU metadata. --dry-run prints the
# gcloud commands instead of running them (no credentials needed); with --spot it also shows one
# preemption and the recreation.
set -euo pipefail
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
    cat <<'EOF'
usage: launch/tpu_vm.sh --name=NAME --zone=ZONE --workdir=gs://BUCKET/PATH [options] -- COMMAND...
       launch/tpu_vm.sh --attach=NAME [options]     manage NAME's running job again
       launch/tpu_vm.sh --logs=NAME [--lines=N] [--follow]   the workers' logs
  --accelerator=TYPE   TPU type (default v4-8; a pod slice: v4-32, v5p-64, v6e-16, ...)
  --version=RUNTIME    TPU VM runtime (default: the one for the accelerator's generation,
                       tpu-ubuntu2204-base for v4; table in docs/launch.md)
  --project=PROJECT    gcloud project (default: gcloud's configured one)
  --spot               spot capacity; on preemption recreate the slice and rerun (resumes)
  --queued             request the slice as a queued resource (gcloud compute tpus
                       queued-resources): wait in Google's queue for capacity
  --gcsfuse            mount the workdir's bucket with gcsfuse on the workers and pass the
                       mounted path as --workdir (default: the gs:// path itself)
  --max-attempts=N     slice creations plus reruns at most (default 1; 20 with --spot)
  --retry-wait=SECONDS pause before recreating a preempted or unavailable slice (default 60)
  --poll-interval=SECONDS  how often to ask the workers for the job's state (default 60)
  --repo=URL [--ref=REF]  clone this repository on the workers (default: copy this checkout,
                       with its uncommitted changes to tracked files)
  --data=gs://B/PATH   copy this folder to every worker and pass --config.data_dir to it
  --keep               do not delete the slice at the end
  --no-preflight       skip the check before anything is created: the job compiled here for
                       --accelerator (python -m spade_jax.aot, when libtpu is installed on
                       this machine), refused when it does not fit
  --attach=NAME        poll and manage the job already running on NAME: nothing is created,
                       copied or started (the launch's options and command are read from
                       ~/.cache/spade-jax/launch/NAME.args; give them again on another machine)
  --logs=NAME          print the last --lines (default 100) of every worker's log, prefixed with
                       its host name; --follow keeps printing
  --dry-run            print the commands, run nothing
EOF
}

NAME="" ZONE="" WORKDIR="" ACCELERATOR="v4-8" VERSION="" PROJECT="" SPOT=0 QUEUED=0 GCSFUSE=0
MAX_ATTEMPTS="" RETRY_WAIT=60 POLL=60 REPO="" REF="" DATA="" KEEP=0 ATTACH="" LOGS="" LINES=100
FOLLOW=0 PREFLIGHT=1
option() {
    case $1 in
        --name) NAME=$2 ;;
        --zone) ZONE=$2 ;;
        --workdir) WORKDIR=$2 ;;
        --accelerator) ACCELERATOR=$2 ;;
        --version) VERSION=$2 ;;
        --project) PROJECT=$2 ;;
        --spot) SPOT=1 ;;
        --queued) QUEUED=1 ;;
        --gcsfuse) GCSFUSE=1 ;;
        --max-attempts) MAX_ATTEMPTS=$2 ;;
        --retry-wait) RETRY_WAIT=$2 ;;
        --poll-interval) POLL=$2 ;;
        --repo) REPO=$2 ;;
        --ref) REF=$2 ;;
        --data) DATA=$2 ;;
        --keep) KEEP=1 ;;
        --no-preflight) PREFLIGHT=0 ;;
        --attach) ATTACH=$2 ;;
        --logs) LOGS=$2 ;;
        --lines) LINES=$2 ;;
        --follow) FOLLOW=1 ;;
        *) return 1 ;;
    esac
}
ARGS=("$@")
parse_args "$@"

# --attach / --logs: the options of the launch, saved on this machine, then the ones given now
STATE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/spade-jax/launch
if [[ -n $ATTACH || -n $LOGS ]]; then
    [[ -z $ATTACH || -z $LOGS ]] || die "--attach and --logs: one at a time"
    NAME=${ATTACH:-$LOGS}
    SAVED=$STATE_DIR/$NAME.args
    if [[ -f $SAVED ]]; then
        mapfile -d '' SAVED_ARGS <"$SAVED"
        parse_args "${SAVED_ARGS[@]}"
        SAVED_COMMAND=("${COMMAND[@]}")
        parse_args "${ARGS[@]}"
        [[ ${#COMMAND[@]} -gt 0 ]] || COMMAND=("${SAVED_COMMAND[@]}")
        NAME=${ATTACH:-$LOGS}
        echo "# $NAME: the launch's options from $SAVED"
    fi
fi

[[ -n $NAME ]] || die "--name is required"
[[ $NAME =~ ^[a-z]([a-z0-9-]*[a-z0-9])?$ ]] || die "--name: lowercase letters, digits and -, got '$NAME'"
[[ -n $ZONE ]] || die "--zone is required"
[[ $POLL =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--poll-interval must be a number of seconds"
[[ $RETRY_WAIT =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--retry-wait must be a number of seconds"
[[ $LINES =~ ^[1-9][0-9]*$ ]] || die "--lines must be a positive integer"

GCLOUD_TPU=(gcloud compute tpus tpu-vm)
GCLOUD_QUEUED=(gcloud compute tpus queued-resources)
LOCATION=(--zone="$ZONE")
[[ -n $PROJECT ]] && LOCATION+=(--project="$PROJECT")
# keepalives: a dead connection ends ssh (exit 255) within minutes instead of hanging a poll
SSH=("${GCLOUD_TPU[@]}" ssh "$NAME" "${LOCATION[@]}" --worker=all
     --ssh-flag=-oServerAliveInterval=30 --ssh-flag=-oServerAliveCountMax=6)
# On the workers: the wrapper (a copy of launch/tpu_job.sh) and its folder (status, pid, log)
# shellcheck disable=SC2088  # ~ expands on the workers
WRAPPER='bash ~/spade-jax-job.sh' JOB_DIR='~/spade-jax-job'

if [[ -n $LOGS ]]; then
    status=0
    run "${SSH[@]}" --command="$WRAPPER logs $JOB_DIR $LINES$([[ $FOLLOW == 1 ]] && echo ' --follow')" ||
        status=$?
    if [[ $status != 0 ]]; then
        echo "# no answer from $NAME's workers (exit status $status)${WORKDIR:+; the copies of their logs: gcloud storage ls ${WORKDIR%/}/logs/}" >&2
    fi
    exit "$status"
fi

[[ -n $ATTACH && ${#COMMAND[@]} == 0 ]] &&
    die "--attach=$NAME: no launch options saved in $STATE_DIR; give the launch's options and command again"
# plain names only: the paths go unquoted into the workers' shell commands
[[ $WORKDIR =~ ^gs://([a-z0-9][a-z0-9._-]*)/([A-Za-z0-9_./-]*[A-Za-z0-9_.-])/?$ ]] ||
    die "--workdir must be gs://BUCKET/PATH (letters, digits, _ . - /), got '$WORKDIR'"
BUCKET=${BASH_REMATCH[1]}
WORKDIR=gs://$BUCKET/${BASH_REMATCH[2]}
MOUNT=/mnt/gcs/$BUCKET
if [[ $GCSFUSE == 1 ]]; then RUN_WORKDIR=$MOUNT/${BASH_REMATCH[2]}; else RUN_WORKDIR=$WORKDIR; fi
[[ ${#COMMAND[@]} -gt 0 ]] || die "no command: put it after --, e.g. -- python -m lra.main --config=configs/pathx.py"
for word in "${COMMAND[@]}"; do
    [[ $word != --workdir* ]] || die "leave --workdir out of the command: it is set from --workdir=gs://..."
done
if [[ -n $DATA ]]; then
    [[ $DATA =~ ^gs://[^/]+/.+ ]] || die "--data must be gs://BUCKET/PATH, got '$DATA'"
    DATA=${DATA%/}
    DATA_NAME=$(basename "$DATA")
    [[ $DATA_NAME =~ ^[A-Za-z0-9_.-]+$ ]] || die "--data: use a folder name of letters, digits, _ . - (got '$DATA_NAME')"
fi
[[ -z $MAX_ATTEMPTS ]] && { [[ $SPOT == 1 ]] && MAX_ATTEMPTS=20 || MAX_ATTEMPTS=1; }
[[ $MAX_ATTEMPTS =~ ^[1-9][0-9]*$ ]] || die "--max-attempts must be a positive integer"

runtime_for() {  # the TPU VM runtime for JAX on an accelerator type's generation
    case $1 in
        v2-* | v3-* | v4-*) echo tpu-ubuntu2204-base ;;
        v5litepod-* | v5e-*) echo v2-alpha-tpuv5-lite ;;
        v5p-*) echo v2-alpha-tpuv5 ;;
        v6e-*) echo v2-alpha-tpuv6e ;;
        *) return 1 ;;
    esac
}
[[ -n $VERSION ]] || VERSION=$(runtime_for "$ACCELERATOR") ||
    die "no default runtime for --accelerator=$ACCELERATOR: pass --version=RUNTIME (docs/launch.md)"

# --- the remote commands (single-quoted parts: $HOME, $USER etc. expand on the workers) -------
# shellcheck disable=SC2016  # expands on the workers
SETUP_PYTHON_APT='{ dpkg -s python3.11-venv >/dev/null 2>&1 || { sudo apt-get update -q && sudo apt-get install -y -q python3.11 python3.11-venv; }; }'
# shellcheck disable=SC2016
SETUP_GCSFUSE='{ command -v gcsfuse >/dev/null || { curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null && echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -cs) main" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null && sudo apt-get update -q && sudo apt-get install -y -q gcsfuse; }; }'
MOUNT_BUCKET="sudo mkdir -p $MOUNT && sudo chown \"\$USER\" $MOUNT && { mountpoint -q $MOUNT || gcsfuse --implicit-dirs $BUCKET $MOUNT; } && mkdir -p $RUN_WORKDIR/logs"
SETUP_VENV="python3.11 -m venv ~/venv && ~/venv/bin/pip install -q --upgrade pip && ~/venv/bin/pip install -q -e ~/spade-jax 'jax[tpu]'"
if [[ -n $REPO ]]; then
    GET_CODE="rm -rf ~/spade-jax && git clone -q $(quote_word "$REPO") ~/spade-jax${REF:+ && git -C ~/spade-jax checkout -q $(quote_word "$REF")}"
else
    GET_CODE="rm -rf ~/spade-jax && mkdir -p ~/spade-jax && tar -xzf ~/spade-jax.tar.gz -C ~/spade-jax"
fi
SETUP="$GET_CODE && $SETUP_PYTHON_APT"
[[ $GCSFUSE == 1 ]] && SETUP+=" && $SETUP_GCSFUSE && $MOUNT_BUCKET"
SETUP+=" && $SETUP_VENV"
RUN_ARGS=""
if [[ -n $DATA ]]; then
    SETUP+=" && mkdir -p ~/data && { test -d ~/data/$DATA_NAME || gcloud storage cp -r $(quote_word "$DATA") ~/data/; }"
    RUN_ARGS+=" --config.data_dir=\"\$HOME/data/$DATA_NAME\""
fi
RUN_ARGS+=" --workdir=$RUN_WORKDIR"
START_ENV="cd ~/spade-jax && export PATH=\"\$HOME/venv/bin:\$PATH\" SPADE_JAX_DISTRIBUTED=1"
[[ $GCSFUSE == 1 ]] && START_ENV="$MOUNT_BUCKET && $START_ENV"  # again after a VM restart

# --- talking to the slice ---------------------------------------------------------------------
pause() {  # pause SECONDS; a signal ends it (and the launcher) at once
    [[ $DRY_RUN == 1 ]] || { sleep "$1" & wait $!; }
}

on_workers() {  # on_workers COMMAND: run on every worker; ssh's 255 (connection trouble) retried
    local status tries=0
    while :; do
        status=0
        run "${SSH[@]}" --command="$1" || status=$?
        [[ $status == 255 ]] && ((++tries < 3)) || return "$status"
        echo "# ssh: connection trouble (exit status 255); trying again in ${POLL}s" >&2
        pause "$POLL"
    done
}

# The dry run plays one preemption of a spot slice (on attempt 1), then a clean finish.
dry_preempted() { [[ $SPOT == 1 && $ATTEMPT == 1 ]]; }

read_state() {  # read_state GCLOUD_DESCRIBE...: the state it prints; GONE (not found); UNKNOWN (no answer)
    local out
    if out=$("$@" 2>&1); then  # the upper-case word: stderr notices ("Updates are available") skipped
        grep -E '^[A-Z][A-Z_]*$' <<<"$out" | tail -n 1 | grep . || echo UNKNOWN
    elif [[ $out == *NOT_FOUND* ]]; then
        echo GONE
    else
        echo UNKNOWN
    fi
}

vm_state() {  # STATE: READY, PREEMPTED, ... as gcloud says; GONE (not found); UNKNOWN (no answer)
    if [[ $DRY_RUN == 1 ]]; then
        run "${GCLOUD_TPU[@]}" describe "$NAME" "${LOCATION[@]}" --format='value(state)'
        if dry_preempted; then STATE=PREEMPTED; else STATE=READY; fi
        return 0
    fi
    STATE=$(read_state "${GCLOUD_TPU[@]}" describe "$NAME" "${LOCATION[@]}" --format='value(state)')
}

vm_lost() {  # the slice will not run the job any more: recreate it
    case $STATE in
        PREEMPTED | TERMINATED | STOPPED | STOPPING | DELETING | GONE) return 0 ;;
        *) return 1 ;;  # READY; CREATING, RESTARTING, REPAIRING, UNKNOWN...: wait and see
    esac
}

job_state() {  # JOB: running | finished | stopped | failed | lost | none | unreachable; CODE
    local out status=0 tag state code n=0 running=0 none=0 lost=0 stopped=0
    JOB="" CODE="" DETAIL="" WORKERS=0
    if [[ $DRY_RUN == 1 ]]; then
        run "${SSH[@]}" --command="$WRAPPER status $JOB_DIR"
        if dry_preempted; then JOB=unreachable CODE=255; else JOB=finished CODE=0; fi
        return 0
    fi
    out=$("${SSH[@]}" --command="$WRAPPER status $JOB_DIR" 2>&1) || status=$?
    while read -r tag _ state code; do  # spade-jax-job HOST STATE [CODE]
        [[ $tag == spade-jax-job ]] || continue
        n=$((n + 1))
        case $state in
            running) running=$((running + 1)) ;;
            none) none=$((none + 1)) ;;
            exited) case $code in 0) ;; 75) stopped=$((stopped + 1)) ;; *) CODE=${CODE:-$code} ;; esac ;;
            *) lost=$((lost + 1)) ;;
        esac
    done <<<"$out"
    WORKERS=$n
    if [[ $status != 0 || $n == 0 ]]; then
        JOB=unreachable CODE=$status
        DETAIL=$(grep -v '^spade-jax-job ' <<<"$out" | tail -n 1 || true)
    elif [[ -n $CODE ]]; then JOB=failed  # one worker's failure is the job's
    elif ((running > 0)); then JOB=running
    elif ((none == n)); then JOB=none
    elif ((none + lost > 0)); then JOB=lost
    elif ((stopped > 0)); then JOB=stopped CODE=75
    else JOB=finished CODE=0
    fi
}

watch_job() {  # poll until the job has ended or the slice is lost: OUTCOME (a JOB, or preempted)
    local last=""
    while :; do
        job_state
        case $JOB in
            running)
                [[ $last == running ]] ||
                    echo "# running on $WORKERS worker(s); polling every ${POLL}s (logs: launch/tpu_vm.sh --logs=$NAME)" ;;
            finished) OUTCOME=finished; return 0 ;;
            *)
                vm_state
                if vm_lost; then OUTCOME=preempted; return 0; fi
                if [[ $JOB != unreachable && $STATE == READY ]]; then OUTCOME=$JOB; return 0; fi
                if [[ $JOB == unreachable ]]; then
                    echo "# no answer from the workers (ssh exit status $CODE${DETAIL:+: $DETAIL}); $NAME is $STATE: polling again in ${POLL}s (the job runs on, detached)" >&2
                else
                    echo "# the job reads '$JOB' but $NAME is $STATE: polling again in ${POLL}s" >&2
                fi ;;
        esac
        last=$JOB
        pause "$POLL"
    done
}

queue_state() {  # QUEUE_STATE: the queued resource's (ACTIVE, WAITING_FOR_RESOURCES, ...), GONE, UNKNOWN
    if [[ $DRY_RUN == 1 ]]; then
        run "${GCLOUD_QUEUED[@]}" describe "$NAME" "${LOCATION[@]}" --format='value(state.state)'
        QUEUE_STATE=ACTIVE
    else
        QUEUE_STATE=$(read_state "${GCLOUD_QUEUED[@]}" describe "$NAME" "${LOCATION[@]}" --format='value(state.state)')
    fi
}

# --- the slice's life -------------------------------------------------------------------------
acquire_vm() {  # create the slice; with --queued, wait until the queued resource is ACTIVE
    local spot=() last=""
    [[ $SPOT == 1 ]] && spot=(--spot)
    if [[ $QUEUED == 0 ]]; then
        run "${GCLOUD_TPU[@]}" create "$NAME" "${LOCATION[@]}" --accelerator-type="$ACCELERATOR" \
            --version="$VERSION" "${spot[@]}"
        return
    fi
    run "${GCLOUD_QUEUED[@]}" create "$NAME" --node-id="$NAME" "${LOCATION[@]}" \
        --accelerator-type="$ACCELERATOR" --runtime-version="$VERSION" "${spot[@]}" || return
    while :; do
        queue_state
        case $QUEUE_STATE in
            ACTIVE) echo "# queued resource $NAME is ACTIVE"; return 0 ;;
            FAILED | SUSPENDING | SUSPENDED | GONE) echo "# queued resource $NAME is $QUEUE_STATE" >&2; return 1 ;;
        esac
        [[ $QUEUE_STATE == "$last" ]] ||
            echo "# queued resource $NAME: ${QUEUE_STATE:-UNKNOWN} (waiting for capacity; polling every ${POLL}s)"
        last=$QUEUE_STATE
        pause "$POLL"
    done
}

release_vm() {  # delete the slice (and its queued resource); release_vm show: print the command
    local how=${1:-run}
    if [[ $QUEUED == 1 ]]; then
        "$how" "${GCLOUD_QUEUED[@]}" delete "$NAME" "${LOCATION[@]}" --force --quiet
    else
        "$how" "${GCLOUD_TPU[@]}" delete "$NAME" "${LOCATION[@]}" --quiet
    fi
}

prepare_vm() {  # the code and the job wrapper on every worker, then the installation
    local root tree stage files=()
    root=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
    stage=${TMPDIR:-/tmp}/spade-jax-$NAME
    run mkdir -p "$stage"
    run cp "$root/launch/tpu_job.sh" "$stage/spade-jax-job.sh"
    if [[ -z $REPO ]]; then
        # HEAD plus uncommitted changes to tracked files (git stash create prints nothing when clean)
        tree=$(git -C "$root" stash create 2>/dev/null || true)
        run git -C "$root" archive --format=tar.gz --output="$stage/spade-jax.tar.gz" "${tree:-HEAD}"
        files+=("$stage/spade-jax.tar.gz")
    fi
    run "${GCLOUD_TPU[@]}" scp "${files[@]}" "$stage/spade-jax-job.sh" "$NAME:." "${LOCATION[@]}" \
        --worker=all && on_workers "$SETUP"
}

start_job() {  # the command, detached, on every worker (a retried start starts nothing twice)
    local run_id
    run_id=$(date -u +%Y%m%dT%H%M%S)-$$-$ATTEMPT
    on_workers "$START_ENV && $WRAPPER start $JOB_DIR $run_id $RUN_WORKDIR/logs -- $(join_command "${COMMAND[@]}")$RUN_ARGS"
}

results_written() {  # results.json is the engine's last write: the run is complete
    local tries
    if [[ $DRY_RUN == 1 ]]; then
        run gcloud storage ls "$WORKDIR/results.json"
        return 0
    fi
    for tries in 1 2 3; do  # three looks: a failed one may be the network's
        gcloud storage ls "$WORKDIR/results.json" >/dev/null 2>&1 && return 0
        ((tries == 3)) || pause "$POLL"
    done
    return 1
}

show_logs() {  # the last lines of every worker's log (best effort)
    echo "# the last lines of the workers' logs:" >&2
    run "${SSH[@]}" --command="$WRAPPER logs $JOB_DIR 30" >&2 || true
}

# --- preflight: the job compiled for the accelerator here, before anything is created --------
preflight() {  # spade_jax.aot on the command's config; dies (exit 3) when the job does not fit
    local root python=${PYTHON:-python3} config=() word next=0 status=0
    root=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
    for word in "${COMMAND[@]}"; do  # --config=FILE[:ARG] and --config.FIELD=VALUE
        if [[ $next == 1 ]]; then config+=("--config=$word"); next=0
        elif [[ $word == --config ]]; then next=1
        elif [[ $word == --config=* || $word == --config.* ]]; then config+=("$word")
        fi
    done
    if [[ ${#config[@]} == 0 ]]; then
        echo "# preflight: the command names no --config; nothing compiled" >&2
        return 0
    fi
    if [[ $DRY_RUN == 1 ]]; then
        echo "# preflight (not run in a dry run): $(show "$python" -m spade_jax.aot "${config[@]}" --accelerator="$ACCELERATOR")"
        return 0
    fi
    if ! (cd "$root" && "$python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("libtpu") is None or importlib.util.find_spec("spade_jax") is None)') 2>/dev/null; then
        echo "# preflight skipped: $python here has no libtpu (pip install -e '.[test]' or 'jax[tpu]'); nothing compiled for $ACCELERATOR" >&2
        return 0
    fi
    echo "# preflight: the job compiled for $ACCELERATOR on this machine (python -m spade_jax.aot; minutes for a full recipe; --no-preflight skips)"
    (cd "$root" && run "$python" -m spade_jax.aot "${config[@]}" --accelerator="$ACCELERATOR") || status=$?
    case $status in
        0) ;;
        3) echo "$(basename "$0"): the job does not fit on $ACCELERATOR (the report above): change the config or the accelerator; nothing was created" >&2
           exit 3 ;;
        *) die "the preflight compile for $ACCELERATOR failed (exit status $status, above); nothing was created (--no-preflight launches anyway)" ;;
    esac
}
if [[ -z $ATTACH && $PREFLIGHT == 1 ]]; then
    preflight
fi

echo "# $NAME: $ACCELERATOR ($VERSION) in $ZONE$([[ $SPOT == 1 ]] && echo ', spot')$([[ $QUEUED == 1 ]] && echo ', queued'), at most $MAX_ATTEMPTS attempt(s)$([[ $DRY_RUN == 1 ]] && echo '; dry run')"

# A new launch must not take over an existing slice (nor, later, delete it and its job).
if [[ -z $ATTACH ]]; then
    if [[ $DRY_RUN == 1 ]]; then
        run "${GCLOUD_TPU[@]}" describe "$NAME" "${LOCATION[@]}" --format='value(state)'
    else
        vm_state
        QUEUE_STATE=GONE
        [[ $QUEUED == 0 ]] || queue_state
        [[ $STATE != UNKNOWN && $QUEUE_STATE != UNKNOWN ]] ||
            die "gcloud cannot say whether $NAME exists in $ZONE (gcloud auth login? gcloud config set project?)"
        [[ $STATE == GONE && $QUEUE_STATE == GONE ]] ||
            die "$NAME already exists in $ZONE ($([[ $STATE != GONE ]] && echo "$STATE" || echo "queued: $QUEUE_STATE")): launch/tpu_vm.sh --attach=$NAME manages its job; or delete it, or pick another --name"
        mkdir -p "$STATE_DIR"  # what --attach=NAME reads back
        printf '%s\0' "${ARGS[@]}" >"$STATE_DIR/$NAME.args"
    fi
fi

# What the EXIT trap does with the slice: PHASE=none (there is none), delete (no job runs on it,
# or the job has ended: delete unless --keep), job (the job may be running: keep it).
PHASE=none
# shellcheck disable=SC2329  # run by the EXIT trap
cleanup() {
    local status=$?
    trap - EXIT
    trap '' PIPE HUP INT TERM  # a second signal must not cut the clean-up short either
    set +e  # a closed terminal must not stop the clean-up half-way
    case $PHASE in
        job)
            echo "# $NAME: the job may still be running, detached on the workers; nothing deleted."
            echo "#   reattach: launch/tpu_vm.sh --attach=$NAME   logs: launch/tpu_vm.sh --logs=$NAME"
            echo "#   delete:   $(release_vm show)" ;;
        delete)
            if [[ $KEEP == 1 ]]; then
                echo "# keeping $NAME (--keep); delete it with:"
                release_vm show
            else
                echo "# deleting $NAME"
                release_vm || true
            fi ;;
    esac
    [[ $PHASE == none ]] || echo "# per-worker logs: $WORKDIR/logs/"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

ATTEMPT=0 FRESH=1 START=1 STARTED=0
if [[ -n $ATTACH ]]; then
    vm_state
    [[ $STATE != GONE ]] || { echo "# there is no TPU VM $NAME in $ZONE" >&2; exit 1; }
    echo "# attaching to $NAME ($STATE): nothing created, copied or started"
    PHASE=job FRESH=0 START=0
fi
while :; do
    if [[ $START == 1 ]]; then
        if ((ATTEMPT >= MAX_ATTEMPTS)); then
            echo "# gave up after $ATTEMPT attempt(s); the same launch resumes from $WORKDIR" >&2
            exit 1
        fi
        ATTEMPT=$((ATTEMPT + 1))
        echo "# attempt $ATTEMPT of $MAX_ATTEMPTS"
        PHASE=delete
        if [[ $FRESH == 1 ]]; then
            if ! acquire_vm; then
                echo "# could not get $NAME (no capacity?); trying again in ${RETRY_WAIT}s" >&2
                release_vm >/dev/null 2>&1 || true
                pause "$RETRY_WAIT"
                continue
            fi
            FRESH=0
            if ! prepare_vm; then
                vm_state
                if vm_lost; then
                    echo "# $NAME is $STATE while being set up; recreating it" >&2
                    release_vm || true
                    FRESH=1
                    pause "$RETRY_WAIT"
                    continue
                fi
                echo "# setting up $NAME failed ($STATE); not retrying" >&2
                exit 1
            fi
        fi
        PHASE=job
        start_job || echo "# starting the job did not answer cleanly; asking the workers" >&2
        STARTED=1
    fi
    watch_job
    case $OUTCOME in
        finished)
            PHASE=delete
            if results_written; then
                echo "# finished: $WORKDIR/results.json"
                exit 0
            fi
            echo "# the command exited 0 but $WORKDIR/results.json is missing; not retrying" >&2
            show_logs
            exit 1 ;;
        failed)
            PHASE=delete
            echo "# the command failed (exit status $CODE) on a healthy slice; not retrying" >&2
            show_logs
            exit 1 ;;
        none)
            if [[ $STARTED == 0 ]]; then  # --attach to a slice where no job was ever started
                echo "# no job was started on $NAME; delete it ($(release_vm show)) and launch again" >&2
                PHASE=none
                exit 1
            fi
            echo "# the job is missing on a worker; starting it again on $NAME" >&2
            PHASE=delete START=1 ;;
        stopped | lost)
            echo "# the job $([[ $OUTCOME == stopped ]] && echo 'stopped after saving (exit status 75)' || echo 'is gone (the slice restarted?)') on the healthy slice $NAME: rerunning it there (it resumes from $WORKDIR)"
            PHASE=delete START=1 ;;
        preempted)
            echo "# $NAME is $STATE: deleting it, then recreating it and rerunning the same command (it resumes from $WORKDIR)"
            PHASE=none
            release_vm || true
            FRESH=1 START=1
            pause "$RETRY_WAIT" ;;
    esac
done
