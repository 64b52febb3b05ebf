# A signed balance read from Python 3, standard library only. Signed like every call, but with
# no Idempotency-Key (a read records nothing): it is the empty string in the signed text.
import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request


def balance(hub_url: str, secret: str, player_id: str, currency: str) -> None:
    path = "/wallet/balance"
    body = json.dumps({"playerId": player_id, "currency": currency}, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    canonical = "\n".join(["POST", path, "", timestamp]).encode() + b"\n" + body
    signature = hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{hub_url}{path}",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Timestamp": timestamp,
            "X-Signature-Version": "2",
            "X-Signature": signature,
        },
    )
    try:
        with urllib.request.urlopen(request) as response:
            print(response.read().decode())
            print(response.status)
    except urllib.error.HTTPError as refused:  # 404, 422, 502, 503: a JSON body with a code
        print(refused.read().decode())
        print(refused.code)


balance(
    os.environ["HUB_URL"],
    os.environ["HUB_SECRET"],
    os.environ.get("PLAYER_ID", "player-001"),
    os.environ.get("CURRENCY", "USD"),
)
