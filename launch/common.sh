# Shared by the launch scripts (sourced, not run): printing and running commands, --dry-run.
# shellcheck shell=bash

DRY_RUN=${DRY_RUN:-0}

die() {
    echo "$(basename "$0"): $*" >&2
    exit 2
}

# One argument as a shell word: plain when it is safe, single-quoted otherwise.
quote_word() {
    if [[ $1 =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# A command line that can be pasted back into a shell.
show() {
    local word first=1
    for word in "$@"; do
        [[ $first == 1 ]] || printf ' '
        quote_word "$word"
        first=0
    done
    printf '\n'
}

# Prints a command about to run, on stderr, prefixed with '+ '.
announce() {
    printf '+ ' >&2
    show "$@" >&2
}

# Runs a command, or only prints it under --dry-run (prefixed with '+ ', on stdout).
run() {
    if [[ $DRY_RUN == 1 ]]; then
        printf '+ '
        show "$@"
        return 0
    fi
    announce "$@"
    "$@"
}

# Joins the arguments into one shell-quoted string (a remote command for ssh --command / srun).
join_command() {
    local out="" word
    for word in "$@"; do
        out+="${out:+ }$(quote_word "$word")"
    done
    printf '%s' "$out"
}

# The value of --workdir=DIR (or --workdir DIR) in a command; fails when there is none.
workdir_of() {
    while [[ $# -gt 0 ]]; do
        case $1 in
            --workdir=*) printf '%s' "${1#*=}"; return 0 ;;
            --workdir) [[ $# -gt 1 ]] && { printf '%s' "$2"; return 0; } ;;
        esac
        shift
    done
    return 1
}

# parse_args "$@": the options before --, each passed to the script's option NAME VALUE (which
# returns 1 for an unknown NAME), then COMMAND=(everything after --). --dry-run and --help are
# handled here. Options are --name=value or --flag.
# shellcheck disable=SC2034  # COMMAND is read by the script that sources this file
parse_args() {
    COMMAND=()
    while [[ $# -gt 0 ]]; do
        case $1 in
            --dry-run) DRY_RUN=1 ;;
            -h|--help) usage; exit 0 ;;
            --) shift; COMMAND=("$@"); return 0 ;;
            --*=*) option "${1%%=*}" "${1#*=}" || { usage >&2; die "unknown option '${1%%=*}'"; } ;;
            *) option "$1" "" || { usage >&2; die "unknown argument '$1' (the command goes after --)"; } ;;
        esac
        shift
    done
}
