#!/usr/bin/env bash
# Runs a command against a fresh `hub demo` (ports 3000-3002, SQLite in a temporary
# directory, ADMIN_TOKEN postman-admin-token-0123456789, no operator rate limit), then stops
# the demo. Exits with the command's status. Used by postman/run.sh and the fuzz pass.
set -euo pipefail
cd "$(dirname "$0")/.."

for port in 3000 3001 3002; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "with_demo: FATAL: port $port is taken; hub demo needs 3000-3002" >&2
    exit 1
  fi
done

cargo build --quiet --bin hub
work=$(mktemp -d)
ADMIN_TOKEN=postman-admin-token-0123456789 MOCK_OPERATOR_RPM=0 OPERATOR_DEADLINE_MS=5000 OPERATOR_ATTEMPT_TIMEOUT_MS=4500 \
  DATABASE_URL="sqlite://$work/hub.db" RUST_LOG=warn \
  target/debug/hub demo >"$work/demo.log" 2>&1 &
demo=$!
trap 'kill $demo 2>/dev/null || true; wait $demo 2>/dev/null || true' EXIT

for _ in $(seq 1 120); do
  curl -sf http://127.0.0.1:3000/ready >/dev/null 2>&1 && break
  kill -0 $demo 2>/dev/null || { echo "with_demo: FATAL: hub demo exited" >&2; cat "$work/demo.log" >&2; exit 1; }
  sleep 0.25
done
curl -sf http://127.0.0.1:3000/ready >/dev/null || { echo "with_demo: FATAL: hub demo never became ready" >&2; exit 1; }

"$@"
