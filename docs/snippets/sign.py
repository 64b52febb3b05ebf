# A signed debit from Python 3, standard library only, signature version 2. Sign the exact
# bytes sent, together with where they are sent and under which key.
import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
import uuid


def sign(secret: str, path: str, idempotency_key: str, timestamp: str, body: bytes) -> str:
    canonical = "\n".join(["POST", path, idempotency_key, timestamp]).encode() + b"\n" + body
    return hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()


def debit(hub_url: str, secret: str) -> None:
    path = "/wallet/debit"
    idempotency_key = str(uuid.uuid4())
    body = json.dumps(
        {"playerId": "player-001", "amountCents": 100, "currency": "USD", "refId": f"py-{uuid.uuid4()}"},
        separators=(",", ":"),
    ).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        f"{hub_url}{path}",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            "X-Timestamp": timestamp,
            "X-Signature-Version": "2",
            "X-Signature": sign(secret, path, idempotency_key, timestamp, body),
        },
    )
    try:
        with urllib.request.urlopen(request) as response:
            print(response.read().decode())
            print(response.status)
    except urllib.error.HTTPError as refused:  # 4xx and 5xx carry a JSON body with a code
        print(refused.read().decode())
        print(refused.code)


debit(os.environ["HUB_URL"], os.environ["HUB_SECRET"])
