#!/usr/bin/env bash
# A signed debit with curl and openssl. HUB_URL and HUB_SECRET come from the environment.
set -euo pipefail
body='{"playerId":"player-001","amountCents":100,"currency":"USD","refId":"curl-'"$(date +%s%N)"'"}'
timestamp=$(date +%s)
signature=$(printf '%s%s' "$body" "$timestamp" | openssl dgst -sha256 -hmac "$HUB_SECRET" | sed 's/^.* //')
curl -sS -w '\n%{http_code}\n' "$HUB_URL/wallet/debit" \
  -H 'Content-Type: application/json' \
  -H "Idempotency-Key: curl-$(date +%s%N)" \
  -H "X-Timestamp: $timestamp" \
  -H "X-Signature: $signature" \
  --data-raw "$body"
