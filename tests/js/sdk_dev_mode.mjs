// Drives the official TypeScript SDK in dev mode (QSTASH_DEV=true, QSTASH_DEV_PORT=<port>)
// against a server started by `manage.py qstash_dev`. It receives its own deliveries on a
// loopback HTTP server and verifies them with the SDK's Receiver. Prints one JSON line of
// what it observed; the pytest side asserts on it. Exits non-zero on any SDK error.
import http from "node:http";
import { Client, Receiver } from "@upstash/qstash";

const received = [];
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    received.push({
      method: req.method,
      path: req.url,
      headers: req.headers,
      body: Buffer.concat(chunks).toString(),
    });
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end("ok");
  });
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const base = `http://127.0.0.1:${server.address().port}`;

async function waitFor(predicate, what, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = predicate();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const client = new Client(); // dev mode: the dev server's token and URL
const receiver = new Receiver(); // dev mode: the dev server's signing keys
const out = {};

const url = `${base}/js-hook?x=1`;
const published = await client.publishJSON({
  url,
  body: { hello: "js" },
  headers: { "X-From-Js": "yes" },
});
out.messageId = published.messageId;
const delivery = await waitFor(() => received.find((r) => r.path === "/js-hook?x=1"), "delivery");
out.delivery = {
  method: delivery.method,
  body: delivery.body,
  forwarded: delivery.headers["x-from-js"] ?? null,
  telemetry: Object.keys(delivery.headers).filter((h) => h.startsWith("upstash-telemetry")),
  messageIdHeader: delivery.headers["upstash-message-id"],
};
out.verified = await receiver.verify({
  signature: delivery.headers["upstash-signature"],
  body: delivery.body,
  url,
});

const delayed = await client.publishJSON({ url: `${base}/later`, body: { n: 1 }, delay: 3600 });
const message = await client.messages.get(delayed.messageId);
out.delayed = { url: message.url, method: message.method, notBefore: message.notBefore };
out.cancel = await client.messages.cancel(delayed.messageId);

await client.urlGroups.addEndpoints({
  name: "js-group",
  endpoints: [{ url: `${base}/g1` }, { url: `${base}/g2`, name: "second" }],
});
out.group = await client.urlGroups.get("js-group");
const fanout = await client.publishJSON({ urlGroup: "js-group", body: { to: "all" } });
out.fanout = fanout.map((r) => r.url).sort();
await waitFor(() => received.filter((r) => r.path === "/g1" || r.path === "/g2").length >= 2, "fan-out");

const logs = await client.logs({ filter: { messageId: published.messageId } });
out.logStates = logs.logs.map((l) => l.state);
out.logCursor = logs.cursor ?? null;

// Queues: upsert, enqueue (FIFO with parallelism 1), pause, resume, get, list, delete.
const queue = client.queue({ queueName: "js-queue" });
await queue.upsert({ parallelism: 1, paused: true });
for (const n of [0, 1, 2]) {
  await queue.enqueueJSON({ url: `${base}/q/${n}`, body: { n } });
}
out.queuePaused = await queue.get();
await queue.resume();
await waitFor(() => received.filter((r) => r.path.startsWith("/q/")).length >= 3, "queue");
out.queueOrder = received.filter((r) => r.path.startsWith("/q/")).map((r) => r.path);
await queue.pause();
out.queueList = (await queue.list()).map((q) => [q.name, q.paused]);
await queue.delete();

// Flow control: publish with a key, then pause, pin, unpin, reset, read it back.
await client.publishJSON({
  url: `${base}/fc`,
  body: { fc: 1 },
  flowControl: { key: "js-key", parallelism: 2, rate: 10, period: "1s" },
});
await waitFor(() => received.find((r) => r.path === "/fc"), "flow-controlled delivery");
await client.flowControl.pause("js-key");
await client.flowControl.pin("js-key", { parallelism: 1 });
out.flowKey = await client.flowControl.get("js-key");
await client.flowControl.unpin("js-key", { parallelism: true });
await client.flowControl.resetRate("js-key");
await client.flowControl.resume("js-key");
out.flowKeyAfter = await client.flowControl.get("js-key");
out.globalParallelism = await client.flowControl.getGlobalParallelism();

// Schedules: create, get, list, pause, resume (PATCH), delete.
const scheduled = await client.schedules.create({
  destination: `${base}/cron`,
  cron: "CRON_TZ=Europe/Berlin 0 9 * * 1-5",
  body: JSON.stringify({ s: 1 }),
  scheduleId: "js-schedule",
  retries: 2,
});
out.scheduleId = scheduled.scheduleId;
await client.schedules.pause({ schedule: "js-schedule" });
out.schedulePaused = await client.schedules.get("js-schedule");
await client.schedules.resume({ schedule: "js-schedule" });
out.scheduleList = (await client.schedules.list()).map((s) => [s.scheduleId, s.isPaused]);
await client.schedules.delete("js-schedule");
out.schedulesAfterDelete = (await client.schedules.list()).length;

console.log(JSON.stringify(out));
server.close();
process.exit(0);
