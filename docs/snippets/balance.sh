#!/usr/bin/env bash
# A signed balance read with curl and openssl. HUB_URL and HUB_SECRET come from the
# environment; PLAYER_ID and CURRENCY default to player-001 and USD. No Idempotency-Key (a
# read records nothing): it is the empty line of the signed string.
set -euo pipefail
path=/wallet/balance
body='{"playerId":"'"${PLAYER_ID:-player-001}"'","currency":"'"${CURRENCY:-USD}"'"}'
timestamp=$(date +%s)
signature=$(printf 'POST\n%s\n\n%s\n%s' "$path" "$timestamp" "$body" | openssl dgst -sha256 -hmac "$HUB_SECRET" | sed 's/^.* //')
curl -sS -w '\n%{http_code}\n' "$HUB_URL$path" \
  -H 'Content-Type: application/json' \
  -H "X-Timestamp: $timestamp" \
  -H 'X-Signature-Version: 2' \
  -H "X-Signature: $signature" \
  --data-raw "$body"
