// Serves web/ from this checkout in front of a running Auralis server, and forwards everything
// else (the API, /metrics, WebSocket upgrades) to it. The server embeds web/ when it is built; this
// tries a change to web/ against a server binary built before it.
//
//   node tests/web/web-proxy.mjs --upstream http://127.0.0.1:8080 [--port 18772] [--no-isolation]
//
// Pages get the same cross-origin isolation headers as from the server (--no-isolation leaves them
// out: no SharedArrayBuffer, so the player posts its audio to the worklet). Requests from them reach
// the server as if from its own pages (Host and Origin rewritten: the server only lets its own
// origin open streams). Not part of `node --test`.

import http from "node:http";
import net from "node:net";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { cliOption } from "./harness.mjs";

const opt = cliOption();
const PORT = Number(opt("port", 18772));
const UPSTREAM = new URL(String(opt("upstream", "http://127.0.0.1:8080")));
const ISOLATED = !opt("no-isolation", false);
const WEB = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "web");
const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8" };
const ISOLATION = {
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-embedder-policy": "require-corp",
  "cross-origin-resource-policy": "same-origin",
};

/** The file in web/ a request path names (flat, as the server serves it), or null. */
function webFile(pathname) {
  const name = pathname === "/" ? "index.html" : pathname === "/dashboard" ? "dashboard.html" : pathname.slice(1);
  if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.(html|js|css)$/.test(name)) return null;
  const file = path.join(WEB, name);
  return fs.existsSync(file) ? file : null;
}

/** A request header as the server should see it. */
function rewrite(name, value) {
  const k = name.toLowerCase();
  if (k === "host") return UPSTREAM.host;
  if (k === "origin" && value === `http://127.0.0.1:${PORT}`) return UPSTREAM.origin;
  return value;
}

const upstreamOptions = (req) => ({
  host: UPSTREAM.hostname, port: UPSTREAM.port || 80, method: req.method, path: req.url,
  headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, rewrite(k, v)])),
});

const server = http.createServer((req, res) => {
  const file = webFile(new URL(req.url, "http://x").pathname);
  if (file && (req.method === "GET" || req.method === "HEAD")) {
    res.writeHead(200, { "content-type": TYPES[path.extname(file)], "cache-control": "no-cache", ...(ISOLATED ? ISOLATION : {}) });
    res.end(fs.readFileSync(file));
    return;
  }
  const up = http.request(upstreamOptions(req), (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  up.on("error", (e) => {
    res.writeHead(502, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { code: "upstream", message: e.message } }));
  });
  req.pipe(up);
});

// WebSocket upgrades: the request as it came, then bytes both ways.
server.on("upgrade", (req, sock, head) => {
  const up = net.connect(Number(UPSTREAM.port || 80), UPSTREAM.hostname, () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const [k, v] = [req.rawHeaders[i], req.rawHeaders[i + 1]];
      lines.push(`${k}: ${rewrite(k, v)}`);
    }
    up.write(lines.join("\r\n") + "\r\n\r\n");
    if (head && head.length) up.write(head);
    up.pipe(sock);
    sock.pipe(up);
  });
  up.setNoDelay(true);
  sock.setNoDelay(true);
  const end = () => {
    up.destroy();
    sock.destroy();
  };
  up.on("error", end);
  sock.on("error", end);
  up.on("close", end);
  sock.on("close", end);
});

server.listen(PORT, "127.0.0.1", () => console.log(`web/ on http://127.0.0.1:${PORT}/, the rest from ${UPSTREAM.origin}`));
