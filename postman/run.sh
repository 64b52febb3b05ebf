#!/usr/bin/env bash
# Runs the Postman collection with newman against a fresh `hub demo` (ports 3000-3002), then
# the in-flight pair: two newman runs at once on one Idempotency-Key. Exits non-zero on any
# failed assertion. Used by .ci/run; works by hand too.
set -euo pipefail
cd "$(dirname "$0")/.."

NEWMAN_DIR="${NEWMAN_DIR:-$HOME/.cache/hub-newman}"
if [ ! -x "$NEWMAN_DIR/node_modules/.bin/newman" ]; then
  echo "postman: installing newman 6 into $NEWMAN_DIR"
  npm install --prefix "$NEWMAN_DIR" --no-audit --no-fund --silent newman@6.2.2
fi
newman() { "$NEWMAN_DIR/node_modules/.bin/newman" "$@"; }

if [ "${1:-}" != "--inside-demo" ]; then
  exec .ci/with_demo.sh bash postman/run.sh --inside-demo
fi
work=$(mktemp -d)

collection=postman/hub.postman_collection.json
environment=postman/hub.postman_environment.json
newman run "$collection" -e "$environment" --bail failure --color off \
  --folder "1 Wallet contract" --folder "2 Operations" --folder "3 Mock operator" \
  --folder "4 Mock RGS" --folder "5 Admin" --folder "7 Rollback and balance"

# The in-flight case needs two clients at once: start the first, wait until the operator
# has its call (it answers 4 s later; newman alone takes about 1.5 s to start), then send
# the second with the same key.
key="inflight-$(date +%s%N)"
calls() { curl -sf http://127.0.0.1:3001/_mock/calls | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
before=$(calls)
newman run "$collection" -e "$environment" --color off --folder "In flight: first" \
  --env-var "inflightKey=$key" --env-var "inflightRefId=ref-$key" >"$work/first.log" 2>&1 &
first=$!
for _ in $(seq 1 200); do
  [ "$(calls)" -gt "$before" ] && break
  sleep 0.05
done
[ "$(calls)" -gt "$before" ] || { echo "postman: FATAL: the first in-flight request never reached the operator" >&2; cat "$work/first.log" >&2; exit 1; }
second_ok=0
newman run "$collection" -e "$environment" --color off --folder "In flight: second" \
  --env-var "inflightKey=$key" --env-var "inflightRefId=ref-$key" || second_ok=$?
first_ok=0
wait $first || first_ok=$?
cat "$work/first.log"
if [ "$first_ok" -ne 0 ] || [ "$second_ok" -ne 0 ]; then
  echo "postman: FATAL: the in-flight pair failed" >&2
  exit 1
fi
echo "postman: ok"
