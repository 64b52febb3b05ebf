// A signed rollback from Node.js 18+: cancels the debit whose refId is ORIGINAL_REF_ID. Its own
// refId and Idempotency-Key derive from the debit's refId, so a retry is the same rollback.
const crypto = require("node:crypto");

async function rollback(hubUrl, secret, playerId, originalRefId) {
  const body = JSON.stringify({ playerId, refId: `rollback-${originalRefId}`, originalRefId });
  const timestamp = Math.floor(Date.now() / 1000).toString();
  const signature = crypto.createHmac("sha256", secret).update(body + timestamp).digest("hex");
  const response = await fetch(`${hubUrl}/wallet/rollback`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "Idempotency-Key": `rollback-${originalRefId}`,
      "X-Timestamp": timestamp,
      "X-Signature": signature,
    },
    body,
  });
  console.log(await response.text());
  console.log(response.status);
}

const { HUB_URL, HUB_SECRET, PLAYER_ID = "player-001", ORIGINAL_REF_ID } = process.env;
rollback(HUB_URL, HUB_SECRET, PLAYER_ID, ORIGINAL_REF_ID);
