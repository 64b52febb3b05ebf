#!/usr/bin/env bash
# A signed balance read with curl and openssl. HUB_URL and HUB_SECRET come from the
# environment; PLAYER_ID and CURRENCY default to player-001 and USD. No Idempotency-Key: a
# read records nothing.
set -euo pipefail
body='{"playerId":"'"${PLAYER_ID:-player-001}"'","currency":"'"${CURRENCY:-USD}"'"}'
timestamp=$(date +%s)
signature=$(printf '%s%s' "$body" "$timestamp" | openssl dgst -sha256 -hmac "$HUB_SECRET" | sed 's/^.* //')
curl -sS -w '\n%{http_code}\n' "$HUB_URL/wallet/balance" \
  -H 'Content-Type: application/json' \
  -H "X-Timestamp: $timestamp" \
  -H "X-Signature: $signature" \
  --data-raw "$body"
