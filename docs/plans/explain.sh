#!/usr/bin/env bash
# Builds 1,000,000-row tables on Postgres and on SQLite from the migrations, then prints the
# plan of every background and admin query (EXPLAIN (ANALYZE, BUFFERS) on Postgres, EXPLAIN
# QUERY PLAN plus a timing on SQLite). docs/QUERY_PLANS.md was made with it.
#
#   docs/plans/explain.sh [POSTGRES_URL] [SQLITE_PATH] > plans.txt
#
#   POSTGRES_URL  default postgres://postgres@127.0.0.1:5432/hub_explain. The database is
#                 dropped and created again, so its name must contain "explain"; it is
#                 dropped at the end unless KEEP=1.
#   SQLITE_PATH   default ${TMPDIR:-/tmp}/hub-explain/hub_explain.sqlite3 (replaced; removed
#                 at the end unless KEEP=1).
#   ROWS          transactions, keys and outbox events (default 1000000).
#   MIGRATIONS    the migrations tree to apply (default: this repository's working tree).
#   MIGRATIONS_REV  or a git revision to take migrations/ from, to see the plans before a
#                 change (the "before" of docs/QUERY_PLANS.md: MIGRATIONS_REV=b5c6db1).
#   BACKENDS      "postgres sqlite" (default), or either one.
#   REUSE=1       skip building: explain the data set a KEEP=1 run left behind.
#
# It needs psql, python3 and, to plan with the SQLite the hub links (libsqlite3-sys'
# bundled copy, with STAT4), gcc and that crate's source in the cargo registry; without
# them it falls back to python3's own SQLite and says so. It never runs cargo.
# About 5 minutes on 2 cores for 1,000,000 rows; about 3 GB of disk.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
pg_url=${1:-postgres://postgres@127.0.0.1:5432/hub_explain}
sqlite_path=${2:-${TMPDIR:-/tmp}/hub-explain/hub_explain.sqlite3}
rows=${ROWS:-1000000}
migrations=${MIGRATIONS:-$repo/migrations}
if [[ -n ${MIGRATIONS_REV:-} ]]; then
    rev_dir=$(mktemp -d)
    trap 'rm -rf "$rev_dir"' EXIT
    git -C "$repo" archive "$MIGRATIONS_REV" migrations | tar -x -C "$rev_dir"
    migrations=$rev_dir/migrations
fi
backends=${BACKENDS:-postgres sqlite}
now='2026-12-01 12:00:00'   # the "now" of the data set and of every query

say() { echo "$*" >&2; }

# The first 13 characters of a UUIDv7 minted at a UTC time: every id the hub mints at or
# after that time sorts at or after them.
v7_floor() {
    python3 -c 'import datetime as d, sys
ms = int(d.datetime.strptime(sys.argv[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=d.timezone.utc).timestamp() * 1000)
print(f"{ms >> 16:08x}-{ms & 0xffff:04x}")' "$1"
}

# ---------------------------------------------------------------- Postgres
pg_db=${pg_url##*/}; pg_db=${pg_db%%\?*}
pg_admin=${pg_url%/*}/postgres
psql_() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

pg_build() {
    case $pg_db in *explain*) ;; *) say "refusing to recreate '$pg_db': its name must contain 'explain'"; exit 2 ;; esac
    psql_ "$pg_admin" -c "DROP DATABASE IF EXISTS \"$pg_db\"" -c "CREATE DATABASE \"$pg_db\""
    for up in "$migrations"/postgres/*/up.sql; do psql_ "$pg_url" -f "$up"; done
    local started=$SECONDS
    psql_ "$pg_url" -v rows="$rows" -v now="$now" -f "$here/pg_data.sql"
    say "postgres: loaded and analyzed in $((SECONDS - started)) s"
}

# The types of $1 repeated for $2 rows, comma-separated: a PREPARE's parameter list.
rows_of() { local i out=''; for ((i = 0; i < $1; i++)); do out+="${out:+, }$2"; done; echo "$out"; }

# $1 rows of $2 numbered parameters each, "($1, ..., $n), (...)": a VALUES list.
values_of() {
    local r c row out=''
    for ((r = 0; r < $1; r++)); do
        row=''
        for ((c = 1; c <= $2; c++)); do row+="${row:+, }\$$((r * $2 + c))"; done
        out+="${out:+, }($row)"
    done
    echo "$out"
}

# One plan: warm once, then EXPLAIN (ANALYZE, BUFFERS). $1 title, $2 the EXECUTE, $3 "write"
# to roll the statement back.
plan() {
    local begin='' end=''
    if [[ ${3:-} == write ]]; then begin='BEGIN;'; end='ROLLBACK;'; fi
    cat <<SQL
\\o /dev/null
$begin EXPLAIN (ANALYZE) $2; $end
\\o
\\echo '-- $1'
$begin EXPLAIN (ANALYZE, BUFFERS) $2; $end
\\echo
SQL
}

pg_explain() {
    {
        cat <<SQL
\\pset format unaligned
\\pset tuples_only on
SET statement_timeout = '120s';
SELECT '== ' || version();
\\set now '''$now'''
\\set day_from '''2026-11-28 00:00:00'''
\\set day_to '''2026-11-28 23:59:59.999999'''
\\set rec_from '''2026-11-27 23:00:00'''
\\set rec_to '''2026-11-29 00:59:59.999999'''

-- a. completer queue (new): due PENDING transactions, fewest attempts first
PREPARE a1(text, timestamp, bigint) AS
    SELECT * FROM transactions WHERE status = \$1 AND next_recovery_at <= \$2
    ORDER BY recovery_attempts, next_recovery_at LIMIT \$3 FOR UPDATE SKIP LOCKED;
SELECT '{' || string_agg(idempotency_key, ',') || '}' AS a_keys FROM (
    SELECT idempotency_key FROM transactions WHERE status = 'PENDING' AND next_recovery_at <= :now
    ORDER BY recovery_attempts, next_recovery_at LIMIT 32) AS q \\gset
PREPARE a2(text[]) AS SELECT * FROM idempotency_keys WHERE idempotency_key = ANY(\$1);
SQL
        plan "a1 completer queue" "EXECUTE a1('PENDING', :now, 32)"
        plan "a2 completer keys" "EXECUTE a2(:'a_keys')"
        cat <<SQL
-- b. review list and its gauge
PREPARE b1(text, bigint) AS SELECT * FROM transactions WHERE status = \$1
    AND review_since IS NOT NULL ORDER BY review_since LIMIT \$2;
PREPARE b2(text) AS SELECT count(*) FROM transactions WHERE status = \$1 AND review_since IS NOT NULL;
SQL
        plan "b1 review list" "EXECUTE b1('PENDING', 100)"
        plan "b2 review gauge" "EXECUTE b2('PENDING')"
        cat <<SQL
-- c. key reaper
PREPARE c1(text, timestamp, bigint) AS SELECT idempotency_key FROM idempotency_keys
    WHERE state = \$1 AND updated_at < \$2 ORDER BY updated_at ASC LIMIT \$3;
SELECT '{' || string_agg(idempotency_key, ',') || '}' AS c_keys FROM (
    SELECT idempotency_key FROM idempotency_keys WHERE state = 'COMPLETED'
    AND updated_at < TIMESTAMP :now - INTERVAL '24 hours' ORDER BY updated_at LIMIT 500) AS q \\gset
PREPARE c2(text[]) AS DELETE FROM idempotency_keys WHERE idempotency_key = ANY(\$1);
SQL
        plan "c1 key reaper select" "EXECUTE c1('COMPLETED', TIMESTAMP :now - INTERVAL '24 hours', 500)"
        plan "c2 key reaper delete" "EXECUTE c2(:'c_keys')" write
        cat <<SQL
-- d. outbox claim (claim_due): one statement. Sent through sql_query, which diesel never
-- caches, so it is always planned with its values.
PREPARE d1(timestamp, text, timestamp, bigint) AS
    WITH due (due_id) AS MATERIALIZED (SELECT id FROM webhook_outbox WHERE status = 'PENDING'
        AND next_attempt_at <= \$3 AND (locked_until IS NULL OR locked_until <= \$3)
        ORDER BY next_attempt_at LIMIT \$4 FOR UPDATE SKIP LOCKED)
    UPDATE webhook_outbox SET locked_until = \$1, locked_by = \$2, updated_at = \$3
    FROM due WHERE id = due_id
    RETURNING id, transaction_id, event_type, payload, status, attempts, next_attempt_at, locked_until, locked_by, last_error, correlation_id, created_at, updated_at, delivered_at;
SELECT '{' || string_agg(id, ',') || '}' AS d_ids FROM (
    SELECT id FROM webhook_outbox WHERE status = 'PENDING' AND next_attempt_at <= :now
    AND (locked_until IS NULL OR locked_until <= :now) ORDER BY next_attempt_at LIMIT 100) AS q \\gset
SQL
        plan "d1 claim_due" "EXECUTE d1(TIMESTAMP :now + INTERVAL '30 s', 'worker-9', :now, 100)" write
        cat <<SQL
-- d2, d3. record_attempts: a group of 100 outcomes (the events d1 claims, all delivered), as
-- one INSERT and one UPDATE of 7 bound values a row. The lease d1 would take is committed
-- first, so that the UPDATE finds its claim's rows; nothing after reads locked_by.
UPDATE webhook_outbox SET locked_until = TIMESTAMP :now + INTERVAL '30 s', locked_by = 'worker-9'
    WHERE id = ANY(:'d_ids');
PREPARE d2($(rows_of 100 "text, int, timestamp, int, text, bigint, text")) AS INSERT INTO webhook_attempts
    (outbox_id, attempt, attempted_at, status_code, error, duration_ms, worker) VALUES $(values_of 100 7);
PREPARE d3($(rows_of 100 "text, text, text, int, timestamp, text, timestamp"), timestamp) AS
    WITH v (v_id, v_claim, v_status, v_attempts, v_next, v_error, v_delivered) AS (VALUES $(values_of 100 7))
    UPDATE webhook_outbox SET status = v.v_status, attempts = v.v_attempts,
        next_attempt_at = v.v_next, last_error = v.v_error, delivered_at = v.v_delivered,
        locked_until = NULL, locked_by = NULL, updated_at = \$701
    FROM v WHERE webhook_outbox.id = v.v_id AND webhook_outbox.status = 'PENDING'
        AND webhook_outbox.locked_by = v.v_claim;
SELECT string_agg(format('%L, 1, %L, 200, NULL, 35, %L', id, :now, 'worker-9'), ', ') AS d2_args,
    string_agg(format('%L, %L, %L, 1, %L, NULL, %L', id, 'worker-9', 'DELIVERED', :now, :now), ', ')
        AS d3_args
    FROM unnest(:'d_ids'::text[]) AS id \\gset
SQL
        plan "d2 record_attempts insert" "EXECUTE d2(:d2_args)" write
        plan "d3 record_attempts move" "EXECUTE d3(:d3_args, :now)" write
        cat <<SQL
-- e. retention prune (prune_delivered), as if WEBHOOK_RETENTION_HOURS=144
PREPARE e1(text, timestamp, bigint) AS SELECT id FROM webhook_outbox
    WHERE status = \$1 AND delivered_at < \$2 ORDER BY delivered_at ASC LIMIT \$3;
SELECT '{' || string_agg(id, ',') || '}' AS e_ids FROM (
    SELECT id FROM webhook_outbox WHERE status = 'DELIVERED'
    AND delivered_at < TIMESTAMP :now - INTERVAL '6 days' ORDER BY delivered_at LIMIT 500) AS q \\gset
PREPARE e2(text[]) AS DELETE FROM webhook_attempts WHERE outbox_id = ANY(\$1);
PREPARE e3(text[]) AS DELETE FROM webhook_outbox WHERE id = ANY(\$1);
SQL
        plan "e1 prune_delivered select" "EXECUTE e1('DELIVERED', TIMESTAMP :now - INTERVAL '6 days', 500)"
        plan "e2 prune attempts delete" "EXECUTE e2(:'e_ids')" write
        plan "e3 prune outbox delete" "EXECUTE e3(:'e_ids')" write
        cat <<SQL
-- f. /metrics: the gauges as they should be, and stats() as it is
PREPARE f1(text) AS SELECT count(*) FROM webhook_outbox WHERE status = \$1;
PREPARE f3(text, timestamp) AS SELECT min(next_attempt_at) FROM webhook_outbox
    WHERE status = \$1 AND next_attempt_at <= \$2;
PREPARE f0 AS SELECT status, count(*) FROM webhook_outbox GROUP BY status;
SQL
        plan "f1 gauge PENDING" "EXECUTE f1('PENDING')"
        plan "f2 gauge DEAD_LETTER" "EXECUTE f1('DEAD_LETTER')"
        plan "f3 oldest due" "EXECUTE f3('PENDING', :now)"
        plan "f0 OLD stats group by" "EXECUTE f0"
        cat <<SQL
-- g. admin list. A boxed query, so diesel never caches its statement: each call is
-- planned with its values. One statement per variant keeps Postgres from going generic.
SQL
        local s
        echo 'PREPARE g1(bigint) AS SELECT * FROM webhook_outbox ORDER BY created_at DESC, id DESC LIMIT $1;'
        plan "g1 list, no filter" "EXECUTE g1(100)"
        for s in PENDING DEAD_LETTER DELIVERED; do
            echo "PREPARE g2_$s(text, bigint) AS SELECT * FROM webhook_outbox WHERE status = \$1
                  ORDER BY created_at DESC, id DESC LIMIT \$2;"
            plan "g2 list, status=$s" "EXECUTE g2_$s('$s', 100)"
        done
        echo 'PREPARE g3(timestamp, timestamp, bigint) AS SELECT * FROM webhook_outbox
              WHERE created_at >= $1 AND created_at <= $2 ORDER BY created_at DESC, id DESC LIMIT $3;'
        plan "g3 list, from/to" "EXECUTE g3(:day_from, :day_to, 100)"
        for s in PENDING DEAD_LETTER DELIVERED h; do
            echo "PREPARE g4_$s(text, timestamp, timestamp, bigint) AS SELECT * FROM webhook_outbox
                  WHERE status = \$1 AND created_at >= \$2 AND created_at <= \$3
                  ORDER BY created_at DESC, id DESC LIMIT \$4;"
        done
        for s in PENDING DEAD_LETTER DELIVERED; do
            plan "g4 list, status=$s + from/to" "EXECUTE g4_$s('$s', :day_from, :day_to, 100)"
        done
        cat <<SQL
-- h. replay dead letters in a window: list(DEAD_LETTER, from, to, 1000), then requeue
SELECT '{' || string_agg(id, ',') || '}' AS h_ids FROM (
    SELECT id FROM webhook_outbox WHERE status = 'DEAD_LETTER' AND created_at >= :day_from
    AND created_at <= :day_to ORDER BY created_at DESC, id DESC LIMIT 1000) AS q \\gset
PREPARE h2(text, timestamp, timestamp, text[], text[]) AS UPDATE webhook_outbox
    SET status = \$1, attempts = 0, next_attempt_at = \$2, locked_until = NULL, locked_by = NULL,
        delivered_at = NULL, updated_at = \$3
    WHERE id = ANY(\$4) AND status = ANY(\$5);
SQL
        plan "h1 replay window select" "EXECUTE g4_h('DEAD_LETTER', :day_from, :day_to, 1000)"
        plan "h2 replay requeue" "EXECUTE h2('PENDING', :now, :now, :'h_ids', '{DEAD_LETTER}')" write
        cat <<SQL
-- i. reconcile pages: 2026-11-28 with the 60-minute margin, 1000 a page
PREPARE i1(text, timestamp, timestamp, bigint) AS SELECT * FROM transactions
    WHERE id > \$1 AND created_at BETWEEN \$2 AND \$3 ORDER BY id ASC LIMIT \$4;
PREPARE i2(text, timestamp, timestamp, bigint) AS SELECT * FROM transactions
    WHERE id > \$1 AND created_at BETWEEN \$2 AND \$3 ORDER BY id ASC LIMIT \$4;
PREPARE i3(text, timestamp, timestamp, bigint) AS SELECT * FROM transactions
    WHERE id > \$1 AND created_at BETWEEN \$2 AND \$3 ORDER BY id ASC LIMIT \$4;
SELECT count(*) / 2 AS i_half, greatest(count(*) - 500, 0) AS i_tail FROM transactions
    WHERE created_at BETWEEN :rec_from AND :rec_to \\gset
SELECT id AS i_middle FROM transactions WHERE created_at BETWEEN :rec_from AND :rec_to
    ORDER BY id OFFSET :i_half LIMIT 1 \\gset
SELECT id AS i_last FROM transactions WHERE created_at BETWEEN :rec_from AND :rec_to
    ORDER BY id OFFSET :i_tail LIMIT 1 \\gset
SQL
        plan "i1 reconcile first page" "EXECUTE i1('', :rec_from, :rec_to, 1000)"
        plan "i2 reconcile middle page" "EXECUTE i2(:'i_middle', :rec_from, :rec_to, 1000)"
        plan "i3 reconcile last page" "EXECUTE i3(:'i_last', :rec_from, :rec_to, 1000)"
        cat <<SQL
-- The rewrite proposed in docs/QUERY_PLANS.md: the first cursor is the UUIDv7 prefix of
-- from - 1 h instead of '' (i4), and optionally an upper bound at to + 1 h (i5).
PREPARE i4(text, timestamp, timestamp, bigint) AS SELECT * FROM transactions
    WHERE id > \$1 AND created_at BETWEEN \$2 AND \$3 ORDER BY id ASC LIMIT \$4;
PREPARE i5(text, text, timestamp, timestamp, bigint) AS SELECT * FROM transactions
    WHERE id > \$1 AND id < \$2 AND created_at BETWEEN \$3 AND \$4 ORDER BY id ASC LIMIT \$5;
SQL
        plan "i4 reconcile first page, cursor from the v7 prefix" "EXECUTE i4('$(v7_floor '2026-11-27 22:00:00')', :rec_from, :rec_to, 1000)"
        plan "i5 reconcile last page, v7 upper bound" "EXECUTE i5(:'i_last', '$(v7_floor '2026-11-29 02:00:00')', :rec_from, :rec_to, 1000)"
        cat <<SQL
-- j. lookups
SELECT id AS j_tx, idempotency_key AS j_key FROM transactions
    ORDER BY created_at OFFSET (SELECT count(*) * 3 / 7 FROM transactions) LIMIT 1 \\gset
SELECT id AS j_event FROM webhook_outbox WHERE status = 'DEAD_LETTER' LIMIT 1 \\gset
PREPARE j1(text, bigint) AS SELECT * FROM transactions WHERE idempotency_key = \$1 LIMIT \$2;
PREPARE j2(text) AS SELECT * FROM webhook_outbox WHERE transaction_id = \$1 ORDER BY created_at ASC;
PREPARE j3(text) AS SELECT * FROM webhook_attempts WHERE outbox_id = \$1
    ORDER BY attempted_at ASC, id ASC;
SQL
        plan "j1 find_by_idempotency_key" "EXECUTE j1(:'j_key', 1)"
        plan "j2 outbox for_transaction" "EXECUTE j2(:'j_tx')"
        plan "j3 attempts_of" "EXECUTE j3(:'j_event')"
        cat <<SQL
-- Diesel caches the statements of a1..f3 and j1..j3 per connection, so from the sixth run
-- on Postgres may switch to a generic plan, which cannot use a partial index (status = \$1
-- proves nothing about its predicate). Run each a few times more and show what it settles on.
\\echo '-- cached statements after 7 runs: custom (values inlined) or generic (\$n)?'
SQL
        local run
        for run in 1 2 3 4 5; do
            cat <<SQL
\\o /dev/null
EXECUTE a1('PENDING', :now, 32); EXECUTE b1('PENDING', 100); EXECUTE b2('PENDING');
EXECUTE c1('COMPLETED', TIMESTAMP :now - INTERVAL '24 hours', 500);
EXECUTE e1('DELIVERED', TIMESTAMP :now - INTERVAL '6 days', 500);
EXECUTE f1('PENDING'); EXECUTE f1('DEAD_LETTER'); EXECUTE f3('PENDING', :now);
\\o
SQL
        done
        cat <<SQL
SELECT name || ': ' || CASE WHEN generic_plans > 0 THEN 'GENERIC' ELSE 'custom' END
    || ' (generic ' || generic_plans || ', custom ' || custom_plans || ')'
FROM pg_prepared_statements WHERE name IN ('a1', 'b1', 'b2', 'c1', 'e1', 'f1', 'f3')
ORDER BY name;
SQL
    } | psql -X -q -v ON_ERROR_STOP=1 "$pg_url" 2>&1 | sed -E "s/'\\{[^}]{100,}\\}'::text\\[\\]/'{...}'::text[]/g"
}

# ---------------------------------------------------------------- SQLite
# The SQLite the hub links: libsqlite3-sys' bundled amalgamation, with the flags of its
# build script that matter to the planner (STAT4 above all).
sqlite_lib() {
    local version src out
    version=$(awk '/^name = "libsqlite3-sys"/ { getline; gsub(/[version =",]/, ""); print; exit }' "$repo/Cargo.lock")
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"libsqlite3-sys-$version"/sqlite3 2>/dev/null | head -n 1 || true)
    out=${TMPDIR:-/tmp}/hub-explain/libsqlite3-sys-$version.so
    if [[ -f $out ]]; then echo "$out"; return; fi
    if [[ -z $src ]] || ! command -v gcc >/dev/null; then
        say "sqlite: libsqlite3-sys $version source or gcc not found; using python3's own SQLite"
        return
    fi
    say "sqlite: building the bundled SQLite of libsqlite3-sys $version (about a minute)"
    mkdir -p "$(dirname "$out")"
    nice gcc -O2 -shared -fPIC -DSQLITE_CORE -DSQLITE_DEFAULT_FOREIGN_KEYS=1 \
        -DSQLITE_ENABLE_API_ARMOR -DSQLITE_ENABLE_COLUMN_METADATA -DSQLITE_ENABLE_DBSTAT_VTAB \
        -DSQLITE_ENABLE_FTS3 -DSQLITE_ENABLE_FTS3_PARENTHESIS -DSQLITE_ENABLE_FTS5 \
        -DSQLITE_ENABLE_JSON1 -DSQLITE_ENABLE_LOAD_EXTENSION=1 -DSQLITE_ENABLE_MEMORY_MANAGEMENT \
        -DSQLITE_ENABLE_RTREE -DSQLITE_ENABLE_STAT4 -DSQLITE_SOUNDEX -DSQLITE_THREADSAFE=1 \
        -DSQLITE_USE_URI -o "$out.tmp" "$src/sqlite3.c" -lpthread -ldl -lm
    mv "$out.tmp" "$out"
    echo "$out"
}

sqlite_py() {
    local lib
    lib=$(sqlite_lib)
    if [[ -n $lib ]]; then LD_PRELOAD=$lib python3 "$here/sqlite_explain.py" "$@"
    else python3 "$here/sqlite_explain.py" "$@"; fi
}

# ---------------------------------------------------------------- main
for backend in $backends; do
    case $backend in
        postgres)
            [[ ${REUSE:-} == 1 ]] || pg_build
            pg_explain
            [[ ${KEEP:-} == 1 ]] || psql_ "$pg_admin" -c "DROP DATABASE \"$pg_db\""
            ;;
        sqlite)
            mkdir -p "$(dirname "$sqlite_path")"
            [[ ${REUSE:-} == 1 ]] || sqlite_py build "$sqlite_path" "$migrations" "$rows" "$now" >&2
            # The hub never runs ANALYZE, so its planner works without statistics: show both.
            sqlite_py explain "$sqlite_path" "$now" --no-stats
            sqlite_py explain "$sqlite_path" "$now"
            [[ ${KEEP:-} == 1 ]] || rm -f "$sqlite_path" "$sqlite_path-wal" "$sqlite_path-shm"
            ;;
        *) say "unknown backend $backend"; exit 2 ;;
    esac
done
