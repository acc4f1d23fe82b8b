#!/usr/bin/env bash
# The job wrapper launch/tpu_vm.sh copies to every TPU VM worker (as ~/spade-jax-job.sh) and runs
# there over ssh. It starts the training command DETACHED from the ssh session (setsid + nohup:
# a dropped connection, or the user's laptop going to sleep, does not stop it), keeps its output
# in JOBDIR/log and its state in JOBDIR/status, and copies the log to LOGDEST/<hostname>.log
# every SPADE_JAX_LOG_SYNC seconds (default 60) and at the end (gs://... with
# `gcloud storage cp`, a local or gcsfuse path with cp).
#
#   tpu_job.sh start JOBDIR RUN_ID LOGDEST -- COMMAND...   start COMMAND in the background, return
#   tpu_job.sh status JOBDIR        one line: "spade-jax-job HOST STATE", STATE one of
#                                   running | exited N | lost | none
#   tpu_job.sh logs JOBDIR [LINES] [--follow]   the last LINES of the log, prefixed [HOST]
#
# `start` is idempotent: a second `start` with the same RUN_ID (a retry after a dropped ssh) or
# while a job is running starts nothing. `lost` means the job's wrapper is gone without having
# written an exit status (the VM restarted, or the wrapper was killed). The wrapper ignores
# SIGTERM / SIGHUP / SIGINT itself: a preemption notice reaches the training process directly
# (it saves a checkpoint and exits 75), and the wrapper stays to record that exit status.
# Needs only bash, coreutils and setsid (util-linux).
set -uo pipefail

host=$(hostname)
boot_id() { cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown; }

write_status() {  # atomically: a poll never reads half a line
    printf '%s\n' "$1" >"$jobdir/status.tmp" && mv -f "$jobdir/status.tmp" "$jobdir/status"
}

state() {  # running | exited N | lost | none
    local status pid boot
    [[ -f $jobdir/status ]] || { echo none; return; }
    status=$(cat "$jobdir/status")
    if [[ $status != running ]]; then
        echo "$status"
        return
    fi
    pid=$(cat "$jobdir/pid" 2>/dev/null || true)
    boot=$(cat "$jobdir/boot" 2>/dev/null || true)
    if [[ -n $pid && $boot == "$(boot_id)" ]] && kill -0 "$pid" 2>/dev/null; then
        echo running
    else
        echo lost
    fi
}

copy_log() {  # copy_log LOGDEST: the log as LOGDEST/HOST.log (best effort)
    local dest=$1/$host.log
    [[ -f $jobdir/log ]] || return 0
    if [[ $1 == gs://* ]]; then
        gcloud storage cp "$jobdir/log" "$dest" >/dev/null 2>&1
    else
        mkdir -p "$1" && cp "$jobdir/log" "$dest.tmp" && mv -f "$dest.tmp" "$dest"
    fi
}

run_job() {  # the detached part: run COMMAND, record its exit status
    local logdest=$1 child syncer code
    shift 2  # LOGDEST --
    echo $$ >"$jobdir/pid"
    boot_id >"$jobdir/boot"
    write_status running
    (
        trap 'kill "$nap" 2>/dev/null; exit 0' TERM
        while :; do
            sleep "${SPADE_JAX_LOG_SYNC:-60}" &
            nap=$!
            wait "$nap"
            copy_log "$logdest"
        done
    ) &
    syncer=$!
    "$@" >>"$jobdir/log" 2>&1 </dev/null &
    child=$!
    trap '' TERM HUP INT  # after the fork: the command keeps the default dispositions
    code=0
    wait "$child" || code=$?
    echo "=== $(date -u +%FT%TZ) exited $code" >>"$jobdir/log"
    write_status "exited $code"
    kill "$syncer" 2>/dev/null
    copy_log "$logdest"
}

start() {  # start RUN_ID LOGDEST -- COMMAND...
    local run_id=$1 logdest=$2 current waited
    shift 2
    [[ ${1:-} == -- && $# -gt 1 ]] || { echo "usage: $0 start JOBDIR RUN_ID LOGDEST -- COMMAND..." >&2; exit 2; }
    mkdir -p "$jobdir"
    current=$(state)
    if [[ $(cat "$jobdir/run_id" 2>/dev/null) == "$run_id" || $current == running ]]; then
        echo "spade-jax-job $host $current (already started: $(cat "$jobdir/run_id" 2>/dev/null))"
        return 0
    fi
    rm -f "$jobdir/status" "$jobdir/pid" "$jobdir/boot" "$jobdir/run_id"
    echo "=== $(date -u +%FT%TZ) run $run_id on $host: ${*:2}" >>"$jobdir/log"
    setsid nohup bash "${BASH_SOURCE[0]}" _run "$jobdir" "$logdest" "$@" </dev/null >/dev/null 2>&1 &
    echo "$run_id" >"$jobdir/run_id"
    for ((waited = 0; waited < 100; waited++)); do  # until the wrapper has written its state
        [[ -f $jobdir/status ]] && break
        sleep 0.1
    done
    if [[ ! -f $jobdir/status ]]; then
        rm -f "$jobdir/run_id"
        echo "spade-jax-job $host none (the wrapper did not start)"
        exit 1
    fi
    echo "spade-jax-job $host started"
}

logs() {  # logs [LINES] [--follow]
    local lines=${1:-100} follow=()
    [[ ${2:-} == --follow ]] && follow=(-F)
    if [[ ! -f $jobdir/log ]]; then
        echo "[$host] (no log: no job was started here)"
        return 0
    fi
    tail -n "$lines" "${follow[@]}" "$jobdir/log" | sed -u "s/^/[$host] /"
}

verb=${1:-} jobdir=${2:-}
[[ -n $verb && -n $jobdir ]] || { echo "usage: $0 start|status|logs JOBDIR ..." >&2; exit 2; }
shift 2
case $verb in
    start) start "$@" ;;
    status) echo "spade-jax-job $host $(state)" ;;
    logs) logs "$@" ;;
    _run) run_job "$@" ;;
    *) echo "$0: unknown verb '$verb'" >&2; exit 2 ;;
esac
