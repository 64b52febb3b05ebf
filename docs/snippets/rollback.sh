#!/usr/bin/env bash
# A signed rollback with curl and openssl: cancels the debit whose refId is ORIGINAL_REF_ID.
# HUB_URL and HUB_SECRET come from the environment; PLAYER_ID defaults to player-001. The
# rollback's own refId and Idempotency-Key derive from the debit's refId, so running it again
# is a retry of the same rollback, never a second one.
set -euo pipefail
path=/wallet/rollback
key="rollback-$ORIGINAL_REF_ID"
body='{"playerId":"'"${PLAYER_ID:-player-001}"'","refId":"'"$key"'","originalRefId":"'"$ORIGINAL_REF_ID"'"}'
timestamp=$(date +%s)
signature=$(printf 'POST\n%s\n%s\n%s\n%s' "$path" "$key" "$timestamp" "$body" | openssl dgst -sha256 -hmac "$HUB_SECRET" | sed 's/^.* //')
curl -sS -w '\n%{http_code}\n' "$HUB_URL$path" \
  -H 'Content-Type: application/json' \
  -H "Idempotency-Key: $key" \
  -H "X-Timestamp: $timestamp" \
  -H 'X-Signature-Version: 2' \
  -H "X-Signature: $signature" \
  --data-raw "$body"
