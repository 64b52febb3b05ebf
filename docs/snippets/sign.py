# A signed debit from Python 3, standard library only. Sign the exact bytes sent.
import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
import uuid


def debit(hub_url: str, secret: str) -> None:
    body = json.dumps(
        {"playerId": "player-001", "amountCents": 100, "currency": "USD", "refId": f"py-{uuid.uuid4()}"},
        separators=(",", ":"),
    ).encode()
    timestamp = str(int(time.time()))
    signature = hmac.new(secret.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{hub_url}/wallet/debit",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": str(uuid.uuid4()),
            "X-Timestamp": timestamp,
            "X-Signature": signature,
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
