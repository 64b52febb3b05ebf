#!/usr/bin/env python3
"""SQLite half of docs/plans/explain.sh: builds the data set and prints the query plans.

    sqlite_explain.py build   DB MIGRATIONS_DIR ROWS NOW
    sqlite_explain.py explain DB NOW [--no-stats]

The data set is the one docs/plans/pg_data.sql builds for Postgres (see the comment there).
Every query is sent as diesel sends it: values as bound parameters, `eq_any` as IN (?, ...),
timestamps as 'YYYY-MM-DD HH:MM:SS.fff' text. explain.sh runs this under the SQLite the hub
is built with (libsqlite3-sys' bundled copy, STAT4 on) when it can build that library.
"""

import datetime as dt
import glob
import os
import sqlite3
import sys
import time


def ts(text, **delta):
    at = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S") + dt.timedelta(**delta)
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


# Deterministic hex from an integer: three odd multipliers, bijective modulo 2**32.
def v7_floor(text):
    """The first 13 characters of a UUIDv7 minted at `text` (UTC)."""
    at = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
    ms = int(at.timestamp() * 1000)
    return f"{ms >> 16:08x}-{ms & 0xffff:04x}"


def hexes(expr, salt):
    return (
        f"printf('%08x%08x%08x', ({expr} * 2654435761 + {salt}) % 4294967296, "
        f"({expr} * 2246822519 + {salt * 7}) % 4294967296, "
        f"({expr} * 3266489917 + {salt * 13}) % 4294967296)"
    )


def v4(expr, salt):
    h = hexes(expr, salt)
    return (
        f"(SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 13, 3) || '-a' "
        f"|| substr(h, 16, 3) || '-' || substr(h, 19, 6) || substr(h, 1, 6) FROM (SELECT {h} AS h))"
    )


def v7(ms, expr, salt):
    h = hexes(expr, salt)
    return (
        f"(SELECT substr(t, 1, 8) || '-' || substr(t, 9, 4) || '-7' || substr(h, 1, 3) || '-' "
        f"|| substr('89ab', 1 + unicode(substr(h, 4, 1)) % 4, 1) || substr(h, 5, 3) || '-' "
        f"|| substr(h, 8, 12) FROM (SELECT printf('%012x', {ms}) AS t, {h} AS h))"
    )


def build(path, migrations, rows, now):
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    db = sqlite3.connect(path, isolation_level=None)
    for up in sorted(glob.glob(os.path.join(migrations, "sqlite", "*", "up.sql"))):
        db.executescript(open(up).read())
    db.executescript(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000;"
        "PRAGMA temp_store = MEMORY; PRAGMA foreign_keys = OFF;"
    )
    t0ms = int(dt.datetime.strptime(now, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc).timestamp() * 1000) - 7 * 86_400_000
    fmt = "'%Y-%m-%d %H:%M:%f'"
    ms = f"({t0ms} + i * 604800000 / {rows})"
    at = f"strftime({fmt}, {ms} / 1000.0, 'unixepoch')"
    at_o = f"strftime({fmt}, ({ms} + 150) / 1000.0, 'unixepoch')"
    st = ("CASE WHEN i % 1000 = 500 THEN 'PENDING' WHEN i % 1000 BETWEEN 1 AND 29 THEN 'REJECTED' "
          "ELSE 'COMPLETED' END")
    series = f"WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < {rows}) "
    started = time.time()
    db.execute("BEGIN")
    db.execute(
        series
        + f"""INSERT INTO transactions (id, idempotency_key, ref_id, player_id, kind, amount_cents,
                currency, status, reason, balance_cents, operator_reference, meta, correlation_id,
                created_at, updated_at, recovery_attempts, next_recovery_at, review_since)
        SELECT id, key, ref, player, kind, amount, 'EUR', st,
               CASE st WHEN 'REJECTED' THEN 'INSUFFICIENT_FUNDS' END,
               CASE st WHEN 'COMPLETED' THEN 100000 + (i * 31) % 900000 END,
               CASE st WHEN 'COMPLETED' THEN 'op-' || i END,
               NULL, corr, at,
               CASE st WHEN 'PENDING' THEN at ELSE strftime({fmt}, at, '+0.150 seconds') END,
               CASE st WHEN 'PENDING' THEN k % 11 ELSE 0 END,
               CASE WHEN st <> 'PENDING' THEN NULL
                    WHEN k % 10 < 3 AND i % 3 <> 0 THEN NULL
                    WHEN k % 7 = 0 THEN strftime({fmt}, '{now}', '+' || (k % 60) || ' minutes')
                    ELSE min(strftime({fmt}, at, '+' || (1 << (k % 11)) || ' minutes'), '{now}.000')
               END,
               CASE WHEN st = 'PENDING' AND k % 10 < 3
                    THEN min(strftime({fmt}, at, '+1 hour'), '{now}.000') END
        FROM (SELECT i, i / 1000 AS k, {st} AS st, {at} AS at,
                     {v7(ms, 'i', 11)} AS id, {v4('i', 23)} AS key,
                     'ref-' || {hexes('i', 37)} AS ref,
                     'player-' || printf('%05d', i % 50000) AS player,
                     CASE WHEN i % 3 = 0 THEN 'CREDIT' ELSE 'DEBIT' END AS kind,
                     1 + (i * 7919) % 100000 AS amount, {v4('i', 41)} AS corr
              FROM g)"""
    )
    db.execute(
        """INSERT INTO idempotency_keys (idempotency_key, fingerprint, state, transaction_id,
                lease_token, locked_until, response_status, response_body, created_at, updated_at)
        SELECT idempotency_key, 'fp-' || id,
               CASE status WHEN 'PENDING' THEN 'IN_PROGRESS' ELSE 'COMPLETED' END, id,
               CASE status WHEN 'PENDING' THEN 'lease-' || id END,
               CASE status WHEN 'PENDING' THEN strftime('%Y-%m-%d %H:%M:%f', created_at, '+30 seconds') END,
               CASE status WHEN 'COMPLETED' THEN 200 WHEN 'REJECTED' THEN 402 END,
               CASE WHEN status <> 'PENDING' THEN
                   '{"transactionId":"' || id || '","refId":"' || ref_id || '","status":"' || status
                   || '","balance":{"amountMinor":' || coalesce(balance_cents, 0)
                   || ',"currency":"EUR"},"operatorReference":"' || coalesce(operator_reference, '')
                   || '"}' END,
               created_at, updated_at
        FROM transactions ORDER BY rowid"""
    )
    ost = ("CASE WHEN i % 200 = 7 THEN 'PENDING' WHEN i % 200 = 13 THEN 'DEAD_LETTER' "
           "ELSE 'DELIVERED' END")
    db.execute(
        f"""INSERT INTO webhook_outbox (id, transaction_id, event_type, payload, status, attempts,
                next_attempt_at, locked_until, last_error, correlation_id, created_at, updated_at,
                delivered_at, locked_by)
        SELECT oid, tx,
               CASE WHEN i % 1000 BETWEEN 1 AND 29 THEN 'transaction.rejected'
                    ELSE 'transaction.completed' END,
               '{{"eventId":"' || oid || '","eventType":"transaction.completed","transaction":'
               || '{{"transactionId":"' || tx || '","refId":"' || ref || '","playerId":"' || player
               || '","type":"' || kind || '","amountMinor":' || amount
               || ',"currency":"EUR","status":"COMPLETED","balanceMinor":' || (100000 + (i * 31) % 900000)
               || ',"createdAt":"' || at || '"}},"occurredAt":"' || at || '"}}',
               st,
               CASE st WHEN 'PENDING' THEN 10 WHEN 'DEAD_LETTER' THEN 12
                       ELSE CASE WHEN i % 10 = 2 THEN 2 ELSE 1 END END,
               CASE st
                   WHEN 'PENDING' THEN
                       CASE WHEN (i / 200) % 2 = 0
                            THEN max(at, strftime({fmt}, '{now}', '-' || (i % 3600) || ' seconds'))
                            ELSE strftime({fmt}, '{now}', '+' || (i % 3600) || ' seconds') END
                   WHEN 'DEAD_LETTER' THEN strftime({fmt}, at, '+1 day')
                   ELSE CASE WHEN i % 10 = 2 THEN strftime({fmt}, at, '+1 minute') ELSE at END
               END,
               CASE WHEN st = 'PENDING' AND (i / 200) % 10 = 1 THEN strftime({fmt}, '{now}', '+30 seconds') END,
               CASE WHEN st <> 'DELIVERED' THEN 'HTTP 503 from the RGS' END,
               {v4('i', 53)}, at, at,
               CASE WHEN st = 'DELIVERED' THEN
                   strftime({fmt}, at, CASE WHEN i % 10 = 2 THEN '+1 minute' ELSE '+0.200 seconds' END) END,
               CASE WHEN st = 'PENDING' AND (i / 200) % 10 = 1 THEN 'worker-1' END
        FROM (SELECT t.rowid AS i, t.id AS tx, t.ref_id AS ref, t.player_id AS player, t.kind,
                     t.amount_cents AS amount, {ost.replace('i %', 't.rowid %')} AS st,
                     {at_o.replace('i *', 't.rowid *')} AS at,
                     {v7(f"({ms.replace('i *', 't.rowid *')} + 150)", 't.rowid', 59)} AS oid
              FROM transactions AS t ORDER BY t.rowid)"""
    )
    db.execute(
        """WITH RECURSIVE n(a) AS (SELECT 1 UNION ALL SELECT a + 1 FROM n WHERE a < 12)
        INSERT INTO webhook_attempts (outbox_id, attempt, attempted_at, status_code, error,
                duration_ms, worker)
        SELECT o.id, n.a,
               strftime('%Y-%m-%d %H:%M:%f', o.created_at, '+' || ((n.a - 1) * 120 + 0.1) || ' seconds'),
               CASE WHEN o.status = 'DELIVERED' AND n.a = o.attempts THEN 200 ELSE 503 END,
               CASE WHEN o.status = 'DELIVERED' AND n.a = o.attempts THEN NULL ELSE 'HTTP 503' END,
               20 + (n.a * 7 + o.rowid) % 300, 'worker-' || (n.a % 4)
        FROM webhook_outbox AS o JOIN n ON n.a <= o.attempts
        ORDER BY o.rowid, n.a"""
    )
    db.execute("COMMIT")
    loaded = time.time()
    db.execute("ANALYZE")
    print(f"sqlite {sqlite3.sqlite_version}: loaded in {loaded - started:.0f} s, "
          f"ANALYZE in {time.time() - loaded:.0f} s")
    for table in ("transactions", "idempotency_keys", "webhook_outbox", "webhook_attempts"):
        print(f"  {table}: {db.execute(f'SELECT count(*) FROM {table}').fetchone()[0]} rows")
    db.close()


OUTBOX_COLUMNS = ("id, transaction_id, event_type, payload, status, attempts, next_attempt_at, "
                  "locked_until, locked_by, last_error, correlation_id, created_at, updated_at, "
                  "delivered_at")


def explain(path, now, stats):
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript("PRAGMA foreign_keys = ON; PRAGMA cache_size = -64000;")
    if not stats:
        # The hub never runs ANALYZE: this is what its planner sees.
        db.execute("BEGIN")
        db.execute("DELETE FROM sqlite_stat1")
        if db.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_stat4'").fetchone()[0]:
            db.execute("DELETE FROM sqlite_stat4")
        db.execute("ANALYZE sqlite_schema")

    def one(sql, *params):
        return db.execute(sql, params).fetchone()

    def plan(title, sql, params=(), write=False):
        rows = db.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        depth = {0: 0}
        lines = []
        for node, parent, _, detail in rows:
            depth[node] = depth.get(parent, 0) + 1
            lines.append("  " * depth[node] + detail)
        # Time the statement itself: the best of three, writes rolled back.
        best = None
        for _ in range(3):
            if write:
                db.execute("SAVEPOINT probe")
            started = time.perf_counter()
            cursor = db.execute(sql, params)
            cursor.fetchall()
            elapsed = (time.perf_counter() - started) * 1000
            count = cursor.rowcount if write else None
            if write:
                db.execute("ROLLBACK TO probe")
                db.execute("RELEASE probe")
            best = elapsed if best is None else min(best, elapsed)
        print(f"-- {title}  [{best:.2f} ms]")
        print("\n".join(lines))
        print()

    def marks(values):
        return ", ".join("?" for _ in values)

    later = lambda **d: ts(now, **d)
    n = later()
    print(f"== SQLite {sqlite3.sqlite_version}, {'with' if stats else 'without'} ANALYZE statistics\n")

    # a. completer queue
    queue_sql = ("SELECT * FROM transactions WHERE status = ? "
                 "AND next_recovery_at <= ? ORDER BY recovery_attempts, next_recovery_at LIMIT ?")
    plan("a1 completer queue", queue_sql, ("PENDING", n, 32))
    keys = [r[0] for r in db.execute(queue_sql.replace("SELECT *", "SELECT idempotency_key"),
                                     ("PENDING", n, 32))]
    plan("a2 completer keys", f"SELECT * FROM idempotency_keys WHERE idempotency_key IN ({marks(keys)})", keys)
    # b. review list and its gauge
    plan("b1 review list", "SELECT * FROM transactions WHERE status = ? AND review_since IS NOT NULL "
         "ORDER BY review_since LIMIT ?", ("PENDING", 100))
    plan("b2 review gauge", "SELECT count(*) FROM transactions WHERE status = ? AND review_since IS NOT NULL",
         ("PENDING",))
    # c. key reaper
    reap_sql = ("SELECT idempotency_key FROM idempotency_keys WHERE state = ? AND updated_at < ? "
                "ORDER BY updated_at ASC LIMIT ?")
    reap_params = ("COMPLETED", later(hours=-24), 500)
    plan("c1 key reaper select", reap_sql, reap_params)
    doomed = [r[0] for r in db.execute(reap_sql, reap_params)]
    plan("c2 key reaper delete", f"DELETE FROM idempotency_keys WHERE idempotency_key IN ({marks(doomed)})",
         doomed, write=True)
    # d1. outbox claim: one statement, RETURNING the claimed rows
    claim_sql = ("WITH due (due_id) AS MATERIALIZED (SELECT id FROM webhook_outbox WHERE status = 'PENDING' "
                 "AND next_attempt_at <= ?3 AND (locked_until IS NULL OR locked_until <= ?3) "
                 "ORDER BY next_attempt_at LIMIT ?4) "
                 "UPDATE webhook_outbox SET locked_until = ?1, locked_by = ?2, updated_at = ?3 "
                 "FROM due WHERE id = due_id RETURNING " + OUTBOX_COLUMNS)
    plan("d1 claim_due", claim_sql, (later(seconds=30), "worker-9", n, 100), write=True)
    # d2, d3. record_attempts for the 100 events d1 claims, all delivered: one INSERT, one
    # UPDATE of 7 bound values a row. The lease is taken (and rolled back after) first, so
    # that the UPDATE finds its claim's rows.
    db.execute("SAVEPOINT leased")
    ids = [r[0] for r in db.execute(claim_sql, (later(seconds=30), "worker-9", n, 100))]
    rows = ", ".join("(?, ?, ?, ?, ?, ?, ?)" for _ in ids)
    plan("d2 record_attempts insert", "INSERT INTO webhook_attempts (outbox_id, attempt, attempted_at, "
         f"status_code, error, duration_ms, worker) VALUES {rows}",
         [v for i in ids for v in (i, 1, n, 200, None, 35, "worker-9")], write=True)
    plan("d3 record_attempts move",
         f"WITH v (v_id, v_claim, v_status, v_attempts, v_next, v_error, v_delivered) AS (VALUES {rows}) "
         "UPDATE webhook_outbox SET status = v.v_status, attempts = v.v_attempts, "
         "next_attempt_at = v.v_next, last_error = v.v_error, delivered_at = v.v_delivered, "
         "locked_until = NULL, locked_by = NULL, updated_at = ? FROM v "
         "WHERE webhook_outbox.id = v.v_id AND webhook_outbox.status = 'PENDING' "
         "AND webhook_outbox.locked_by = v.v_claim",
         [v for i in ids for v in (i, "worker-9", "DELIVERED", 1, n, None, n)] + [n], write=True)
    db.execute("ROLLBACK TO leased")
    db.execute("RELEASE leased")
    # e. retention prune
    prune_sql = ("SELECT id FROM webhook_outbox WHERE status = ? AND delivered_at < ? "
                 "ORDER BY delivered_at ASC LIMIT ?")
    prune_params = ("DELIVERED", later(days=-6), 500)
    plan("e1 prune_delivered select", prune_sql, prune_params)
    gone = [r[0] for r in db.execute(prune_sql, prune_params)]
    plan("e2 prune attempts delete", f"DELETE FROM webhook_attempts WHERE outbox_id IN ({marks(gone)})",
         gone, write=True)
    plan("e3 prune outbox delete", f"DELETE FROM webhook_outbox WHERE id IN ({marks(gone)})",
         gone, write=True)
    # f. /metrics
    plan("f1 gauge PENDING", "SELECT count(*) FROM webhook_outbox WHERE status = ?", ("PENDING",))
    plan("f2 gauge DEAD_LETTER", "SELECT count(*) FROM webhook_outbox WHERE status = ?", ("DEAD_LETTER",))
    plan("f3 oldest due", "SELECT min(next_attempt_at) FROM webhook_outbox WHERE status = ? "
         "AND next_attempt_at <= ?", ("PENDING", n))
    plan("f0 OLD stats group by", "SELECT status, count(*) FROM webhook_outbox GROUP BY status")
    # g. admin list
    day = ("2026-11-28 00:00:00.000", "2026-11-28 23:59:59.999")
    order = " ORDER BY created_at DESC, id DESC LIMIT ?"
    plan("g1 list, no filter", "SELECT * FROM webhook_outbox" + order, (100,))
    for status in ("PENDING", "DEAD_LETTER", "DELIVERED"):
        plan(f"g2 list, status={status}", "SELECT * FROM webhook_outbox WHERE status = ?" + order,
             (status, 100))
    plan("g3 list, from/to", "SELECT * FROM webhook_outbox WHERE created_at >= ? AND created_at <= ?"
         + order, (*day, 100))
    for status in ("PENDING", "DEAD_LETTER", "DELIVERED"):
        plan(f"g4 list, status={status} + from/to", "SELECT * FROM webhook_outbox WHERE status = ? "
             "AND created_at >= ? AND created_at <= ?" + order, (status, *day, 100))
    # h. replay dead letters in a window: list(DEAD_LETTER, from, to, 1000), then requeue
    replay_sql = ("SELECT * FROM webhook_outbox WHERE status = ? AND created_at >= ? AND created_at <= ?"
                  + order)
    plan("h1 replay window select", replay_sql, ("DEAD_LETTER", *day, 1000))
    dead = [r[0] for r in db.execute(replay_sql, ("DEAD_LETTER", *day, 1000))]
    plan("h2 replay requeue", "UPDATE webhook_outbox SET status = ?, attempts = 0, next_attempt_at = ?, "
         "locked_until = NULL, locked_by = NULL, delivered_at = NULL, updated_at = ? "
         f"WHERE id IN ({marks(dead)}) AND status IN (?)", ("PENDING", n, n, *dead, "DEAD_LETTER"),
         write=True)
    # i. reconcile pages: 2026-11-28 with the 60-minute margin, 1000 a page
    window = ("2026-11-27 23:00:00.000", "2026-11-29 00:59:59.999")
    page_sql = ("SELECT * FROM transactions WHERE id > ? AND created_at BETWEEN ? AND ? "
                "ORDER BY id ASC LIMIT ?")
    in_window = "SELECT id FROM transactions WHERE created_at BETWEEN ? AND ? ORDER BY id LIMIT 1 OFFSET ?"
    total = one("SELECT count(*) FROM transactions WHERE created_at BETWEEN ? AND ?", *window)[0]
    middle = one(in_window, *window, total // 2)[0]
    last = one(in_window, *window, max(total - 500, 0))[0]
    plan("i1 reconcile first page", page_sql, ("", *window, 1000))
    plan("i2 reconcile middle page", page_sql, (middle, *window, 1000))
    plan("i3 reconcile last page", page_sql, (last, *window, 1000))
    # The rewrite proposed in docs/QUERY_PLANS.md: the first cursor is the UUIDv7 prefix of
    # from - 1 h instead of '' (i4), and optionally an upper bound at to + 1 h (i5).
    plan("i4 reconcile first page, cursor from the v7 prefix", page_sql,
         (v7_floor("2026-11-27 22:00:00"), *window, 1000))
    plan("i5 reconcile last page, v7 upper bound", "SELECT * FROM transactions WHERE id > ? AND id < ? "
         "AND created_at BETWEEN ? AND ? ORDER BY id ASC LIMIT ?",
         (last, v7_floor("2026-11-29 02:00:00"), *window, 1000))
    # j. lookups
    tx, key = one("SELECT id, idempotency_key FROM transactions WHERE rowid = (SELECT max(rowid) * 3 / 7 FROM transactions)")
    event = one("SELECT id FROM webhook_outbox WHERE status = 'DEAD_LETTER' LIMIT 1")[0]
    plan("j1 find_by_idempotency_key", "SELECT * FROM transactions WHERE idempotency_key = ? LIMIT ?", (key, 1))
    plan("j2 outbox for_transaction", "SELECT * FROM webhook_outbox WHERE transaction_id = ? "
         "ORDER BY created_at ASC", (tx,))
    plan("j3 attempts_of", "SELECT * FROM webhook_attempts WHERE outbox_id = ? "
         "ORDER BY attempted_at ASC, id ASC", (event,))
    if not stats:
        db.execute("ROLLBACK")
    db.close()


if __name__ == "__main__":
    if sys.argv[1] == "build":
        build(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        explain(sys.argv[2], sys.argv[3], "--no-stats" not in sys.argv)
