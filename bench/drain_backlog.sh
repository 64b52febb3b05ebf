#!/usr/bin/env bash
# Webhook drain rate from a backlog: with the hub stopped, queue N PENDING events in
# webhook_outbox (all naming one transaction row inserted first), then start the release
# `hub serve` with the standalone mock operator and mock RGS and wait until the outbox has no
# PENDING row. Prints events/s first to last receipt at the mock RGS (its receive times are
# in microseconds), and the wall time from the hub's start to an empty outbox.
#
# Usage: DATABASE_URL=postgres://postgres@127.0.0.1:5432/hub_drain bench/drain_backlog.sh [N]
#        DATABASE_URL=sqlite:///tmp/hub-drain.db bench/drain_backlog.sh [N]
# N defaults to 100000. The database is migrated (`hub migrate`) and kept; the hub must not be
# running on it. Build first: cargo build --release -p hub -p mock-operator -p mock-rgs.
# Environment: BIN_DIR (default target/release), HUB_ADDR / OPERATOR_ADDR / RGS_ADDR (default
# 127.0.0.1:4310/4311/4312), DEADLINE seconds to wait for an empty outbox (default 600);
# anything else the hub reads (WEBHOOK_CONCURRENCY, WEBHOOK_BATCH_SIZE, ...) is passed on.
set -euo pipefail

n=${1:-100000}
: "${DATABASE_URL:?set DATABASE_URL to a postgres:// or sqlite:// database}"
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN_DIR:-$root/target/release}
hub_addr=${HUB_ADDR:-127.0.0.1:4310}
operator_addr=${OPERATOR_ADDR:-127.0.0.1:4311}
rgs_addr=${RGS_ADDR:-127.0.0.1:4312}
deadline=${DEADLINE:-600}
secret=bench-webhook-secret-0123456789-abcdef
logs=$(mktemp -d /tmp/drain-backlog.XXXXXX)
for b in hub mock-operator mock-rgs; do
    [ -x "$bin/$b" ] || { echo "missing $bin/$b: cargo build --release -p hub -p mock-operator -p mock-rgs" >&2; exit 2; }
done

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

run=$(date +%s)
case $DATABASE_URL in
postgres://* | postgresql://*)
    backend=postgres
    sql() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "$1"; }
    now="now() AT TIME ZONE 'utc'"
    series="generate_series(1, $n) AS s(g)"
    ;;
sqlite:*)
    backend=sqlite
    file=${DATABASE_URL#sqlite://}
    file=${file#sqlite:}
    sql() { sqlite3 -bail "$file" "$1"; }
    # diesel's text form of a timestamp; a minute back so that every event is due at once.
    now="strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 minute')"
    series="(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < $n) SELECT g FROM s) AS s"
    ;;
*)
    echo "DATABASE_URL must start with postgres://, postgresql:// or sqlite:" >&2
    exit 2
    ;;
esac

echo "migrating $backend" >&2
DATABASE_URL=$DATABASE_URL "$bin/hub" migrate >"$logs/migrate.log" 2>&1 ||
    { cat "$logs/migrate.log" >&2; exit 1; }
pending_before=$(sql "SELECT count(*) FROM webhook_outbox WHERE status = 'PENDING'")
[ "$pending_before" = 0 ] || echo "note: the outbox already holds $pending_before PENDING events; they drain too" >&2

tx="bench-drain-$run"
echo "queueing $n events" >&2
sql "INSERT INTO transactions (id, idempotency_key, ref_id, player_id, kind, amount_cents,
        currency, status, balance_cents, operator_reference, created_at, updated_at)
     VALUES ('$tx', '$tx', '$tx', 'player-005', 'DEBIT', 1, 'USD', 'COMPLETED', 24999, 'op-$tx',
        $now, $now)"
# The payload has the size and shape of a real event (wallet/event.rs).
sql "INSERT INTO webhook_outbox (id, transaction_id, event_type, payload, status, attempts,
        next_attempt_at, created_at, updated_at)
     SELECT '$tx-' || g, '$tx', 'transaction.completed',
        '{\"eventType\":\"transaction.completed\",\"eventId\":\"$tx-' || g || '\",\"timestamp\":\"2026-11-24T10:20:30.123Z\",\"data\":{\"transactionId\":\"$tx\",\"refId\":\"$tx-' || g || '\",\"playerId\":\"player-005\",\"type\":\"DEBIT\",\"amountCents\":1,\"currency\":\"USD\",\"status\":\"COMPLETED\",\"balanceCents\":24999,\"reason\":null,\"meta\":null}}',
        'PENDING', 0, $now, $now, $now
     FROM $series"

MOCK_OPERATOR_ADDR=$operator_addr MOCK_OPERATOR_RPM=0 "$bin/mock-operator" >"$logs/mock-operator.log" 2>&1 &
pids+=($!)
MOCK_RGS_ADDR=$rgs_addr WEBHOOK_SECRET=$secret "$bin/mock-rgs" >"$logs/mock-rgs.log" 2>&1 &
rgs_pid=$!
pids+=("$rgs_pid")
wait_for "http://$operator_addr/health" 30
wait_for "http://$rgs_addr/health" 30

started=$(date +%s.%N)
DATABASE_URL=$DATABASE_URL LISTEN_ADDR=$hub_addr HMAC_SECRETS=demo-secret-for-local-use-only-0123456789 \
    WEBHOOK_SECRET=$secret OPERATOR_BASE_URL=http://$operator_addr \
    RGS_WEBHOOK_URL=http://$rgs_addr/webhooks RUST_LOG=${RUST_LOG:-warn} \
    "$bin/hub" serve >"$logs/hub.log" 2>&1 &
pids+=($!)
wait_for "http://$hub_addr/health" 60

# The hub's own gauge (hub_outbox_rows{status="PENDING"}, counted at each scrape).
pending() {
    curl -fsS "http://$hub_addr/metrics" 2>/dev/null |
        sed -n 's/^hub_outbox_rows{status="PENDING"} \([0-9]*\)$/\1/p'
}
until=$(awk -v s="$started" -v d="$deadline" 'BEGIN { printf "%d", s + d }')
while :; do
    left=$(pending)
    [ "$left" = 0 ] && break
    if [ "$(date +%s)" -ge "$until" ]; then
        echo "error: ${left:-?} events still PENDING after ${deadline} s (logs in $logs)" >&2
        exit 1
    fi
    sleep 0.5
done
emptied=$(date +%s.%N)

# Read the mock's listing once, now that it is complete, and keep only this backlog's events.
curl -fsS "http://$rgs_addr/webhooks?limit=$((n * 2 + 1000))" -o "$logs/webhooks.json"
read -r received distinct first last < <(jq -r --arg p "$tx-" '
    [.webhooks[] | select(.status >= 200 and .status < 300)
        | select((.eventId // "") | startswith($p))] as $w
    | [($w | length), ($w | map(.eventId) | unique | length),
       ($w | map(.receivedAtUs // (.receivedAtMs * 1000)) | min // 0),
       ($w | map(.receivedAtUs // (.receivedAtMs * 1000)) | max // 0)] | @tsv' "$logs/webhooks.json")
# The mock's own cost: if it used most of a core, it, not the hub, set the pace.
read -r rgs_cpu rgs_rss < <(awk '{ printf "%.1f ", ($14 + $15) / 100 }' "/proc/$rgs_pid/stat"
    awk '/VmHWM/ { printf "%.0f\n", $2 / 1024 }' "/proc/$rgs_pid/status")
[ "$(getconf CLK_TCK)" = 100 ] || echo "note: CLK_TCK is not 100; mock CPU seconds are off" >&2

wall=$(awk -v a="$started" -v b="$emptied" 'BEGIN { printf "%.2f", b - a }')
span=$(awk -v a="$first" -v b="$last" 'BEGIN { printf "%.3f", (b - a) / 1e6 }')
echo
echo "| backend | events | delivered (distinct) | first → last receipt | events/s (receipts) | hub start → empty outbox | events/s (wall) | mock RGS CPU / peak RSS |"
echo "|---|---|---|---|---|---|---|---|"
awk -v b="$backend" -v n="$n" -v r="$received" -v d="$distinct" -v s="$span" -v w="$wall" \
    -v c="$rgs_cpu" -v m="$rgs_rss" 'BEGIN {
    printf "| %s | %d | %d (%d) | %.2f s | %.0f | %.2f s | %.0f | %s s / %s MiB |\n",
        b, n, r, d, s, (s > 0 ? (d - 1) / s : 0), w, (w > 0 ? d / w : 0), c, m }'
if [ "$distinct" != "$n" ]; then
    echo "error: $distinct of $n events reached the mock RGS" >&2
    exit 1
fi
[ "$received" = "$distinct" ] || echo "note: $((received - distinct)) duplicate deliveries" >&2
