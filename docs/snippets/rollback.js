// A signed rollback from Node.js 18+: cancels the debit whose refId is ORIGINAL_REF_ID. Its own
// refId and Idempotency-Key derive from the debit's refId, so a retry is the same rollback.
const crypto = require("node:crypto");

async function rollback(hubUrl, secret, playerId, originalRefId) {
  const path = "/wallet/rollback";
  const key = `rollback-${originalRefId}`;
  const body = JSON.stringify({ playerId, refId: key, originalRefId });
  const timestamp = Math.floor(Date.now() / 1000).toString();
  const canonical = ["POST", path, key, timestamp, body].join("\n");
  const signature = crypto.createHmac("sha256", secret).update(canonical).digest("hex");
  const response = await fetch(`${hubUrl}${path}`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "Idempotency-Key": key,
      "X-Timestamp": timestamp,
      "X-Signature-Version": "2",
      "X-Signature": signature,
    },
    body,
  });
  console.log(await response.text());
  console.log(response.status);
}

const { HUB_URL, HUB_SECRET, PLAYER_ID = "player-001", ORIGINAL_REF_ID } = process.env;
rollback(HUB_URL, HUB_SECRET, PLAYER_ID, ORIGINAL_REF_ID);
