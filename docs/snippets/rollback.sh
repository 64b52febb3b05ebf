#!/usr/bin/env bash
# A signed rollback with curl and openssl: cancels the debit whose refId is ORIGINAL_REF_ID.
# HUB_URL and HUB_SECRET come from the environment; PLAYER_ID defaults to player-001. The
# rollback's own refId and Idempotency-Key derive from the debit's refId, so running it again
# is a retry of the same rollback, never a second one.
set -euo pipefail
body='{"playerId":"'"${PLAYER_ID:-player-001}"'","refId":"rollback-'"$ORIGINAL_REF_ID"'","originalRefId":"'"$ORIGINAL_REF_ID"'"}'
timestamp=$(date +%s)
signature=$(printf '%s%s' "$body" "$timestamp" | openssl dgst -sha256 -hmac "$HUB_SECRET" | sed 's/^.* //')
curl -sS -w '\n%{http_code}\n' "$HUB_URL/wallet/rollback" \
  -H 'Content-Type: application/json' \
  -H "Idempotency-Key: rollback-$ORIGINAL_REF_ID" \
  -H "X-Timestamp: $timestamp" \
  -H "X-Signature: $signature" \
  --data-raw "$body"
