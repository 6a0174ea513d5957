// Control change -> durable -> acknowledged, timed from the client: sends N changes one at a
// time over WebSocket (spread over connections, each has its own rate budget) and prints the
// round-trip percentiles.
//
//   node scripts/perf-control-ack.mjs PORT [N=100] [STATION=default]
import { connect } from "../tests/web/ws-client.mjs";

const port = Number(process.argv[2]);
const total = Number(process.argv[3] ?? 100);
const station = process.argv[4] ?? "default";
const perConnection = 4; // within the per-connection burst of 5
const sockets = [];
for (let i = 0; i < Math.ceil(total / perConnection); i++) {
  sockets.push(await connect(port, `/ws/${station}?codec=opus`));
}
const times = [];
for (let i = 0; i < total; i++) {
  const ws = sockets[Math.floor(i / perConnection)];
  const started = performance.now();
  ws.send({ type: "control", id: i, bpm: 80 + (i % 60) });
  let reply;
  for (;;) {
    reply = await ws.next(5000);
    if (!Buffer.isBuffer(reply) && (reply.type === "control_ack" || reply.type === "error")) break;
  }
  if (reply.type !== "control_ack") throw new Error(`change ${i} refused: ${JSON.stringify(reply)}`);
  times.push(performance.now() - started);
}
times.sort((a, b) => a - b);
const q = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
console.log(
  JSON.stringify({
    changes: times.length,
    p50_ms: +q(0.5).toFixed(2),
    p99_ms: +q(0.99).toFixed(2),
    max_ms: +times[times.length - 1].toFixed(2),
  }),
);
for (const ws of sockets) ws.close();
