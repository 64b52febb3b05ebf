#!/usr/bin/env bash
# The database work of one debit, before and after group commit, measured with pgbench on a
# scratch database with the hub's real schema (migrations/postgres, applied in order).
#
#   before.sql              today: per debit a claim transaction (key IN_PROGRESS under a
#                           lease, transaction PENDING) and a settle transaction (key
#                           COMPLETED with its answer, transaction COMPLETED, outbox row,
#                           NOTIFY), each after the pool's `SELECT 1` checkout test.
#   before_with_drain       before.sql then drain_before.sql: the drainer's work for one event as today: claim
#                           (SELECT ... FOR UPDATE SKIP LOCKED, UPDATE lease, SELECT rows) and
#                           record (INSERT attempt, UPDATE DELIVERED under the claim), each
#                           after `SELECT 1`; one event per claim, the worst case.
#   after.sql               group commit: BATCH debits per claim transaction and per settle
#                           transaction, one multi-row statement per table, no checkout test.
#   after_with_drain        after.sql then drain_after.sql: the drain batched: one claim UPDATE of up to BATCH
#                           due events, one multi-row attempts INSERT and one UPDATE.
#
# One pgbench transaction is one script: 1 debit for before*, BATCH debits for after*, so
# debits/s = transactions/s x batch. The drain variants claim any client's due events, as
# drainers do. Ids: transaction and event ids grow with a per-client sequence (like the hub's
# UUIDv7, they land at the right edge of their indexes); keys, leases and refIds are md5
# uuids (random, like the loadgen's v4 keys), all derived from (run, client, seq, row) so the
# settle names exactly the rows its claim made. JSON bodies are bound parameters (-D), as
# the hub binds them: in the script text pgbench would take their colons for variables.
#
# After every run the tables are checked against pgbench's count of finished scripts: every
# key and transaction COMPLETED, one outbox row each, and for the drain variants one attempt
# per DELIVERED event and no DELIVERED event still leased. A mismatch is printed as such.
#
# Usage: bench/pgbench/run.sh [clients...]          (default: 16 64)
# Environment: DURATION seconds per run (default 20; not SECONDS, which bash owns),
#   BATCH (default 16), SCRIPTS (default: all four), ADMIN_URL (default
#   postgres://postgres@127.0.0.1:5432), PGBENCH_DB (default hub_pgbench; dropped and
#   created again).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
migrations=$(cd "$here/../../migrations/postgres" && pwd)
admin_url=${ADMIN_URL:-postgres://postgres@127.0.0.1:5432}
db=${PGBENCH_DB:-hub_pgbench}
db_url="$admin_url/$db"
duration=${DURATION:-20}
batch=${BATCH:-16}
read -r -a scripts <<<"${SCRIPTS:-before before_with_drain after after_with_drain}"
clients=("$@")
[ ${#clients[@]} -gt 0 ] || clients=(16 64)
threads=$(nproc 2>/dev/null || echo 2)

# What the hub stores and sends for a 1-cent debit (wallet/receipt.rs, wallet/event.rs).
body='{"status":"OK","balanceCents":24999,"transactionId":"019ab3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b","refId":"loadgen-5f0c2b1e-8d7a-4c3b-9e2f-1a0b9c8d7e6f"}'
payload='{"eventType":"transaction.completed","eventId":"019ab3c4-5d6f-7a01-8b2c-3d4e5f6a7b8c","timestamp":"2026-11-24T10:20:30.123Z","data":{"transactionId":"019ab3c4-5d6e-7f80-9a1b-2c3d4e5f6a7b","refId":"loadgen-5f0c2b1e-8d7a-4c3b-9e2f-1a0b9c8d7e6f","playerId":"player-005","type":"DEBIT","amountCents":1,"currency":"USD","status":"COMPLETED","balanceCents":24999,"reason":null,"meta":null}}'

q() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$db_url" -c "$1"; }

echo "creating $db with the hub's schema" >&2
psql -X -q -v ON_ERROR_STOP=1 "$admin_url/postgres" -c "DROP DATABASE IF EXISTS $db" \
    -c "CREATE DATABASE $db"
for up in "$migrations"/*/up.sql; do
    psql -X -q -1 -v ON_ERROR_STOP=1 "$db_url" -f "$up"
done

rows=()
failed=0
for script in "${scripts[@]}"; do
    # A *_with_drain script is the debit's script followed by the drainer's share of it.
    case $script in
    *_with_drain)
        base=${script%_with_drain}
        file=$(mktemp /tmp/pgbench-script.XXXXXX.sql)
        cat "$here/$base.sql" "$here/drain_$base.sql" >"$file"
        ;;
    *) file="$here/$script.sql" ;;
    esac
    [ -f "$file" ] || { echo "no such script: $file" >&2; exit 2; }
    per_script=1
    plan_cache=auto
    # A batch statement's VALUES vary in length, so the hub plans it at every call: with a
    # generic plan generate_series would be guessed at 1,000 rows and join by seq scan.
    case $script in after*) per_script=$batch plan_cache=force_custom_plan ;; esac
    for c in "${clients[@]}"; do
        q "TRUNCATE webhook_attempts, webhook_outbox, idempotency_keys, transactions" >/dev/null
        # Each run starts right after a checkpoint, so each pays the same full-page writes.
        q "CHECKPOINT" >/dev/null
        j=$((c < threads ? c : threads))
        echo "$script, $c clients, ${duration} s" >&2
        out=$(PGOPTIONS="-c plan_cache_mode=$plan_cache" pgbench -n -M prepared -c "$c" -j "$j" -T "$duration" \
            -D batch="$batch" -D run="$(date +%s)" -D seq=0 -D body="$body" -D payload="$payload" \
            -f "$file" "$db_url" 2>&1) || {
            echo "$out" >&2
            echo "pgbench failed: $script at $c clients" >&2
            failed=1
            continue
        }
        tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
        done_scripts=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
        expected=$((done_scripts * per_script))
        IFS='|' read -r keys keys_done txs txs_done events events_for delivered attempts \
            leased_delivered < <(q "
            SELECT (SELECT count(*) FROM idempotency_keys),
                   (SELECT count(*) FROM idempotency_keys WHERE state = 'COMPLETED' AND lease_token IS NULL),
                   (SELECT count(*) FROM transactions),
                   (SELECT count(*) FROM transactions WHERE status = 'COMPLETED' AND next_recovery_at IS NULL),
                   (SELECT count(*) FROM webhook_outbox),
                   (SELECT count(DISTINCT transaction_id) FROM webhook_outbox),
                   (SELECT count(*) FROM webhook_outbox WHERE status = 'DELIVERED'),
                   (SELECT count(*) FROM webhook_attempts),
                   (SELECT count(*) FROM webhook_outbox WHERE status = 'DELIVERED' AND locked_by IS NOT NULL)")
        check=ok
        for n in "$keys" "$keys_done" "$txs" "$txs_done" "$events" "$events_for"; do
            [ "$n" = "$expected" ] || check=MISMATCH
        done
        case $script in
        *with_drain) [ "$attempts" = "$delivered" ] && [ "$leased_delivered" = 0 ] &&
            [ "$delivered" -gt 0 ] || check=MISMATCH ;;
        *) [ "$delivered" = 0 ] || check=MISMATCH ;;
        esac
        echo "  $done_scripts scripts, $expected debits expected; keys $keys ($keys_done completed)," \
            "transactions $txs ($txs_done completed), events $events (for $events_for transactions)," \
            "delivered $delivered, attempts $attempts: $check" >&2
        [ "$check" = ok ] || failed=1
        debits=$(awk -v t="$tps" -v b="$per_script" 'BEGIN { printf "%.0f", t * b }')
        rows+=("| $script | $c | $per_script | $(printf '%.0f' "$tps") | $debits | $check |")
    done
done

echo
echo "| script | clients | batch | transactions/s | debits/s (= tps × batch) | rows check |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit "$failed"
