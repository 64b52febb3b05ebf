#!/usr/bin/env bash
# A bounded fuzz pass: schemathesis against /openapi.json of hub demo (no input may earn a
# 5xx), then cargo fuzz on request parsing and signature verification (no input may panic).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v st >/dev/null 2>&1 || python3 -m pip install --quiet schemathesis
.ci/with_demo.sh st run http://127.0.0.1:3000/openapi.json \
  --checks not_a_server_error --max-examples 30 \
  -H "Authorization: Bearer postman-admin-token-0123456789"

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# The fuzz target exercises parsing, not TLS: where the system has OpenSSL's headers, link it
# instead of compiling the vendored copy a second time (the test build has already built it).
if pkg-config --exists openssl 2>/dev/null; then export OPENSSL_NO_VENDOR=1; fi
# `--sanitizer none` builds on the stable toolchain; libFuzzer still guides by coverage.
cargo fuzz run wallet_request --sanitizer none -- -max_total_time="${FUZZ_SECONDS:-30}"
