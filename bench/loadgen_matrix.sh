#!/usr/bin/env bash
# Debit throughput and latency with loadgen, one markdown row per load: concurrency 1, 16,
# 64, 256 and fixed 1,000/s and 3,000/s. Every load gets a fresh database (Postgres: the
# database of DATABASE_URL dropped and created again; SQLite: the file removed) and fresh
# release processes started as in docs/BENCHMARKS.md: mock-operator (MOCK_OPERATOR_RPM=0),
# mock-rgs and `hub serve`. Each load runs a warm-up first, then the measured run with
# --metrics-url (hub overhead) and --webhooks-url (commit→delivery, every answered request
# checked for its webhook).
#
# Usage: DATABASE_URL=postgres://postgres@127.0.0.1:5432/hub_load bench/loadgen_matrix.sh [REQUESTS [WARMUP]]
#        DATABASE_URL=sqlite:///tmp/hub-load/hub.db bench/loadgen_matrix.sh [REQUESTS [WARMUP]]
# REQUESTS per measured run (default 20000), WARMUP requests before it (default 2000).
# Build first: cargo build --release -p hub -p mock-operator -p mock-rgs -p loadgen.
# Environment: LOADS (default "c1 c16 c64 c256 r1000 r3000": cN = concurrency N, rN = N per
# second with up to 256 in flight), LOADGEN_ARGS (extra loadgen arguments, e.g.
# "--debits-only"), BIN_DIR (default target/release), HUB_ADDR / OPERATOR_ADDR / RGS_ADDR
# (default 127.0.0.1:4320/4321/4322); anything else the hub reads (HTTP_WORKERS,
# DATABASE_POOL_SIZE, ...) is passed on. Logs of every process stay in a temp directory.
set -euo pipefail

: "${DATABASE_URL:?set DATABASE_URL to a postgres:// or sqlite:// database (it is recreated)}"
requests=${1:-20000}
warmup=${2:-2000}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN_DIR:-$root/target/release}
read -r -a loads <<<"${LOADS:-c1 c16 c64 c256 r1000 r3000}"
read -r -a extra <<<"${LOADGEN_ARGS:-}"
hub_addr=${HUB_ADDR:-127.0.0.1:4320}
operator_addr=${OPERATOR_ADDR:-127.0.0.1:4321}
rgs_addr=${RGS_ADDR:-127.0.0.1:4322}
secret=bench-webhook-secret-0123456789-abcdef
hmac=demo-secret-for-local-use-only-0123456789
logs=$(mktemp -d /tmp/loadgen-matrix.XXXXXX)
for b in hub mock-operator mock-rgs loadgen; do
    [ -x "$bin/$b" ] || { echo "missing $bin/$b: cargo build --release -p hub -p mock-operator -p mock-rgs -p loadgen" >&2; exit 2; }
done

case $DATABASE_URL in
postgres://* | postgresql://*)
    backend=Postgres
    db=${DATABASE_URL##*/}
    db=${db%%\?*}
    admin=${DATABASE_URL%/*}/postgres
    fresh_db() {
        psql -X -q -v ON_ERROR_STOP=1 "$admin" -c "DROP DATABASE IF EXISTS \"$db\"" \
            -c "CREATE DATABASE \"$db\""
    }
    ;;
sqlite:*)
    backend=SQLite
    file=${DATABASE_URL#sqlite://}
    file=${file#sqlite:}
    fresh_db() {
        mkdir -p "$(dirname "$file")"
        rm -f "$file" "$file-wal" "$file-shm"
    }
    ;;
*)
    echo "DATABASE_URL must start with postgres://, postgresql:// or sqlite:" >&2
    exit 2
    ;;
esac

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

start_all() { # tag
    fresh_db
    MOCK_OPERATOR_ADDR=$operator_addr MOCK_OPERATOR_RPM=0 "$bin/mock-operator" \
        >"$logs/$1.mock-operator.log" 2>&1 &
    pids+=($!)
    MOCK_RGS_ADDR=$rgs_addr WEBHOOK_SECRET=$secret "$bin/mock-rgs" >"$logs/$1.mock-rgs.log" 2>&1 &
    pids+=($!)
    wait_for "http://$operator_addr/health" 30
    wait_for "http://$rgs_addr/health" 30
    DATABASE_URL=$DATABASE_URL LISTEN_ADDR=$hub_addr HMAC_SECRETS=$hmac WEBHOOK_SECRET=$secret \
        OPERATOR_BASE_URL=http://$operator_addr RGS_WEBHOOK_URL=http://$rgs_addr/webhooks \
        RUST_LOG=${RUST_LOG:-warn} "$bin/hub" serve >"$logs/$1.hub.log" 2>&1 &
    pids+=($!)
    wait_for "http://$hub_addr/ready" 60
}

fmt() { # number or null -> "1.23 ms" / "–"
    awk -v v="$1" 'BEGIN { if (v == "" || v == "null") print "–"; else printf "%.2f ms", v }'
}

rows=()
failed=0
for load in "${loads[@]}"; do
    case $load in
    c[0-9]*) shape=(--concurrency "${load#c}") label="concurrency ${load#c} ($requests)" ;;
    r[0-9]*) shape=(--concurrency 256 --rate "${load#r}") label="fixed ${load#r}/s ($requests)" ;;
    *) echo "unknown load $load (cN or rN)" >&2; exit 2 ;;
    esac
    echo "$backend, $label: starting" >&2
    start_all "$load"
    "$bin/loadgen" --url "http://$hub_addr" --concurrency 16 --requests "$warmup" "${extra[@]}" \
        >"$logs/$load.warmup.log" 2>&1 || { echo "warm-up failed (logs in $logs)" >&2; failed=1; }
    status=0
    "$bin/loadgen" --url "http://$hub_addr" "${shape[@]}" --requests "$requests" "${extra[@]}" \
        --metrics-url "http://$hub_addr/metrics" --webhooks-url "http://$rgs_addr" \
        >"$logs/$load.log" 2>"$logs/$load.err" || status=$?
    stop_all
    cat "$logs/$load.err" >&2
    summary=$(grep '^{' "$logs/$load.log" | tail -n 1 || true)
    if [ -z "$summary" ]; then
        echo "loadgen gave no summary for $load (logs in $logs)" >&2
        failed=1
        continue
    fi
    [ "$status" = 0 ] || failed=1
    IFS=$'\t' read -r settled p50 p95 p99 max overhead cd50 cd99 delivered answered other < <(jq -r '[
        .answered_2xx_per_s, .latency_ms.p50, .latency_ms.p95, .latency_ms.p99, .latency_ms.max,
        .hub_overhead_ms.p99_at_most, .webhooks.commit_to_delivery_ms.p50,
        .webhooks.commit_to_delivery_ms.p99, .webhooks.delivered, .webhooks.answered,
        (.requests - .answered_2xx)] | map(tostring) | @tsv' <<<"$summary")
    [ "$other" = 0 ] || echo "note: $other requests of $load not answered 2xx (statuses in $logs/$load.log)" >&2
    rows+=("| $backend | $label | $(printf '%.0f' "$settled") | $(fmt "$p50") | $(fmt "$p95") | $(fmt "$p99") | $(fmt "$max") | ≤ $(fmt "$overhead") | $(fmt "$cd50") | $(fmt "$cd99") | $delivered / $answered |")
    echo "${rows[-1]}" >&2
done

echo
echo "| backend | load | settled/s | p50 | p95 | p99 | max | hub overhead p99 (bucket bound) | commit→delivery p50 | commit→delivery p99 | webhooks delivered / answered |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo "logs: $logs" >&2
exit "$failed"
