// A signed balance read from Node.js 18+. Signed like every call, but with no Idempotency-Key:
// it is the empty string in the signed text.
const crypto = require("node:crypto");

async function balance(hubUrl, secret, playerId, currency) {
  const path = "/wallet/balance";
  const body = JSON.stringify({ playerId, currency });
  const timestamp = Math.floor(Date.now() / 1000).toString();
  const canonical = ["POST", path, "", timestamp, body].join("\n");
  const signature = crypto.createHmac("sha256", secret).update(canonical).digest("hex");
  const response = await fetch(`${hubUrl}${path}`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "X-Timestamp": timestamp,
      "X-Signature-Version": "2",
      "X-Signature": signature,
    },
    body,
  });
  console.log(await response.text());
  console.log(response.status);
}

const { HUB_URL, HUB_SECRET, PLAYER_ID = "player-001", CURRENCY = "USD" } = process.env;
balance(HUB_URL, HUB_SECRET, PLAYER_ID, CURRENCY);
