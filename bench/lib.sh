# shellcheck shell=bash
# Shared by the bench scripts (sourced): the processes a script started, stopped on exit,
# and waiting for a URL to answer. Expects `logs` to name the script's log directory.

pids=()
stop_all() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap stop_all EXIT

wait_for() { # url seconds
    local until=$((SECONDS + $2))
    until curl -fsS -o /dev/null "$1" 2>/dev/null; do
        [ $SECONDS -lt "$until" ] || { echo "no answer from $1 (logs in ${logs:?})" >&2; return 1; }
        sleep 0.1
    done
}
