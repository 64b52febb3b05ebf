# A signed rollback from Python 3, standard library only: cancels the debit whose refId is
# ORIGINAL_REF_ID. Its own refId and Idempotency-Key derive from the debit's refId, so a retry
# is the same rollback.
import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request


def rollback(hub_url: str, secret: str, player_id: str, original_ref_id: str) -> None:
    path = "/wallet/rollback"
    key = f"rollback-{original_ref_id}"
    body = json.dumps(
        {"playerId": player_id, "refId": key, "originalRefId": original_ref_id},
        separators=(",", ":"),
    ).encode()
    timestamp = str(int(time.time()))
    canonical = "\n".join(["POST", path, key, timestamp]).encode() + b"\n" + body
    signature = hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{hub_url}{path}",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "X-Timestamp": timestamp,
            "X-Signature-Version": "2",
            "X-Signature": signature,
        },
    )
    try:
        with urllib.request.urlopen(request) as response:
            print(response.read().decode())
            print(response.status)
    except urllib.error.HTTPError as refused:  # 409, 422, 502, 503: a JSON body with a code
        print(refused.read().decode())
        print(refused.code)


rollback(
    os.environ["HUB_URL"],
    os.environ["HUB_SECRET"],
    os.environ.get("PLAYER_ID", "player-001"),
    os.environ["ORIGINAL_REF_ID"],
)
