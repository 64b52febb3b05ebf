// A signed debit from Node.js 18+ (built-in fetch and crypto), signature version 2. Sign the
// exact string sent, together with where it is sent and under which key.
const crypto = require("node:crypto");

function sign(secret, path, idempotencyKey, timestamp, body) {
  const canonical = ["POST", path, idempotencyKey, timestamp, body].join("\n");
  return crypto.createHmac("sha256", secret).update(canonical).digest("hex");
}

async function debit(hubUrl, secret) {
  const path = "/wallet/debit";
  const idempotencyKey = crypto.randomUUID();
  const body = JSON.stringify({
    playerId: "player-001",
    amountCents: 100,
    currency: "USD",
    refId: `node-${crypto.randomUUID()}`,
  });
  const timestamp = Math.floor(Date.now() / 1000).toString();
  const response = await fetch(`${hubUrl}${path}`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "Idempotency-Key": idempotencyKey,
      "X-Timestamp": timestamp,
      "X-Signature-Version": "2",
      "X-Signature": sign(secret, path, idempotencyKey, timestamp, body),
    },
    body,
  });
  console.log(await response.text());
  console.log(response.status);
}

debit(process.env.HUB_URL, process.env.HUB_SECRET);
