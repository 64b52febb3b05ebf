#!/usr/bin/env bash
# A signed debit with curl and openssl, signature version 2. HUB_URL and HUB_SECRET come from
# the environment.
set -euo pipefail
path=/wallet/debit
key="curl-$(date +%s%N)"
body='{"playerId":"player-001","amountCents":100,"currency":"USD","refId":"curl-'"$(date +%s%N)"'"}'
timestamp=$(date +%s)
# METHOD, path, Idempotency-Key, X-Timestamp and the body, joined by newlines.
signature=$(printf 'POST\n%s\n%s\n%s\n%s' "$path" "$key" "$timestamp" "$body" | openssl dgst -sha256 -hmac "$HUB_SECRET" | sed 's/^.* //')
curl -sS -w '\n%{http_code}\n' "$HUB_URL$path" \
  -H 'Content-Type: application/json' \
  -H "Idempotency-Key: $key" \
  -H "X-Timestamp: $timestamp" \
  -H 'X-Signature-Version: 2' \
  -H "X-Signature: $signature" \
  --data-raw "$body"
