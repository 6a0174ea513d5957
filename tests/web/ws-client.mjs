// A minimal WebSocket client (RFC 6455) for the tests that talk to tests/web/mock-server.mjs: Node
// 20 has no WebSocket of its own. Text messages come back parsed (JSON), binary ones as Buffers,
// and the close frame as {close: code}.

import http from "node:http";
import crypto from "node:crypto";
import { wsParser } from "./ws-frames.mjs";

/**
 * Opens `ws://127.0.0.1:PORT/PATH`. Resolves to `{ next(ms), send(message), close() }`: next()
 * is the next message (rejects after `ms` with none); send() sends a text message; close() ends
 * the connection. Rejects when the upgrade is
 * refused or the connection cannot be made.
 */
export function connect(port, path) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: "127.0.0.1", port, path,
      headers: { Connection: "Upgrade", Upgrade: "websocket", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": crypto.randomBytes(16).toString("base64") },
    });
    req.on("error", reject);
    req.on("response", (res) => reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)));
    req.on("upgrade", (_res, sock, head) => {
      const queue = [];
      const waiters = [];
      const push = (m) => {
        const w = waiters.shift();
        if (w) w.resolve(m);
        else queue.push(m);
      };
      let ended = false;
      const feed = wsParser((opcode, payload) => {
        if (opcode === 1) push(JSON.parse(payload.toString()));
        else if (opcode === 2) push(Buffer.from(payload));
        else if (opcode === 8) push({ close: payload.length >= 2 ? payload.readUInt16BE(0) : 1005 });
      });
      sock.on("data", feed);
      const gone = () => {
        if (ended) return;
        ended = true;
        push({ close: 1006 });
      };
      sock.on("close", gone);
      sock.on("error", gone);
      feed(head);
      resolve({
        next(ms = 2000) {
          if (queue.length) return Promise.resolve(queue.shift());
          return new Promise((res, rej) => {
            const w = { resolve: (m) => { clearTimeout(timer); res(m); } };
            const timer = setTimeout(() => {
              waiters.splice(waiters.indexOf(w), 1);
              rej(new Error(`no message in ${ms} ms`));
            }, ms);
            waiters.push(w);
          });
        },
        /** Sends a text message (an object is sent as JSON), masked as a client must. */
        send(message) {
          const payload = Buffer.from(typeof message === "string" ? message : JSON.stringify(message));
          const mask = crypto.randomBytes(4);
          let head;
          if (payload.length < 126) head = Buffer.from([0x81, 0x80 | payload.length]);
          else if (payload.length < 65536) {
            head = Buffer.alloc(4);
            head[0] = 0x81;
            head[1] = 0x80 | 126;
            head.writeUInt16BE(payload.length, 2);
          } else {
            head = Buffer.alloc(10);
            head[0] = 0x81;
            head[1] = 0x80 | 127;
            head.writeBigUInt64BE(BigInt(payload.length), 2);
          }
          const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
          sock.write(Buffer.concat([head, mask, masked]));
        },
        close() {
          ended = true;
          sock.destroy();
        },
      });
    });
    req.end();
  });
}
