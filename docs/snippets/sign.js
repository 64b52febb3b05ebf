// A signed debit from Node.js 18+ (built-in fetch and crypto). Sign the exact string sent.
const crypto = require("node:crypto");

async function debit(hubUrl, secret) {
  const body = JSON.stringify({
    playerId: "player-001",
    amountCents: 100,
    currency: "USD",
    refId: `node-${crypto.randomUUID()}`,
  });
  const timestamp = Math.floor(Date.now() / 1000).toString();
  const signature = crypto.createHmac("sha256", secret).update(body + timestamp).digest("hex");
  const response = await fetch(`${hubUrl}/wallet/debit`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      "Idempotency-Key": crypto.randomUUID(),
      "X-Timestamp": timestamp,
      "X-Signature": signature,
    },
    body,
  });
  console.log(await response.text());
  console.log(response.status);
}

debit(process.env.HUB_URL, process.env.HUB_SECRET);
