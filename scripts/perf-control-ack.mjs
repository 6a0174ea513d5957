// Control change -> durable -> acknowledged, timed from the client: sends N changes one at a
// time over WebSocket (spread over connections, each has its own rate budget) and prints the
// round-trip percentiles.
//
//   node scripts/perf-control-ack.mjs ws://127.0.0.1:8080/ws [N=100]
const url = process.argv[2];
const total = Number(process.argv[3] ?? 100);
const perConnection = 4; // within the per-connection burst of 5
const open = (u) =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(`${u}${u.includes("?") ? "&" : "?"}codec=opus`);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => resolve(ws);
    ws.onerror = (e) => reject(new Error(`cannot connect: ${e.message ?? e}`));
  });
const sockets = [];
for (let i = 0; i < Math.ceil(total / perConnection); i++) sockets.push(await open(url));
const times = [];
for (let i = 0; i < total; i++) {
  const ws = sockets[Math.floor(i / perConnection)];
  const bpm = 80 + (i % 60);
  const started = performance.now();
  const reply = await new Promise((resolve) => {
    ws.onmessage = (m) => {
      if (typeof m.data !== "string") return;
      const msg = JSON.parse(m.data);
      if (msg.type === "control_ack" || msg.type === "error") resolve(msg);
    };
    ws.send(JSON.stringify({ type: "control", id: i, bpm }));
  });
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
