// Headless Chromium driven over the DevTools pipe (--remote-debugging-pipe): JSON messages separated
// by NUL bytes on file descriptors 3 (to the browser) and 4 (from it). Needs nothing beyond Node.
// Used by browser-check.mjs; not a test itself.

import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { sleep, withStateHelpers } from "./harness.mjs";

export async function launch({ chromium = "/usr/bin/chromium", autoplay = true, extraFlags = [] } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "auralis-chromium-"));
  const flags = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
    "--remote-debugging-pipe", `--user-data-dir=${profile}`,
    ...(autoplay ? ["--autoplay-policy=no-user-gesture-required"] : []),
    ...extraFlags, "about:blank",
  ];
  const chrome = spawn(chromium, flags, { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
  chrome.stderr.on("data", () => {});
  let nextId = 1;
  const waiting = new Map();
  const events = [];
  let inbuf = "";
  chrome.stdio[4].on("data", (d) => {
    inbuf += d.toString();
    let i;
    while ((i = inbuf.indexOf("\0")) >= 0) {
      const msg = JSON.parse(inbuf.slice(0, i));
      inbuf = inbuf.slice(i + 1);
      if (msg.id && waiting.has(msg.id)) {
        const { resolve, reject } = waiting.get(msg.id);
        waiting.delete(msg.id);
        if (msg.error) reject(new Error(msg.error.message));
        else resolve(msg.result);
      } else if (msg.method) events.push(msg);
    }
  });
  const send = (method, params = {}, sessionId) => {
    const id = nextId++;
    chrome.stdio[3].write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + "\0");
    return new Promise((resolve, reject) => waiting.set(id, { resolve, reject }));
  };

  const { targetId } = await send("Target.createTarget", { url: "about:blank" });
  const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
  const cdp = (method, params) => send(method, params, sessionId);
  await cdp("Runtime.enable");
  await cdp("Log.enable");

  const page = {
    events,
    cdp,
    async evaluate(expression) {
      const r = await cdp("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
      if (r.exceptionDetails) throw new Error(r.exceptionDetails.exception?.description || r.exceptionDetails.text);
      return r.result.value;
    },
    navigate: (url) => cdp("Page.navigate", { url }),
    async screenshot(file, width) {
      await cdp("Emulation.setDeviceMetricsOverride", { width, height: 900, deviceScaleFactor: 2, mobile: width < 600 });
      const shot = await cdp("Page.captureScreenshot", { format: "png", captureBeyondViewport: true });
      fs.writeFileSync(file, Buffer.from(shot.data, "base64"));
    },
    /** Script errors (exceptions and console errors), network failures left out. */
    errors() {
      return events.filter((e) => e.method === "Runtime.exceptionThrown" ||
        (e.method === "Log.entryAdded" && e.params.entry.level === "error" && e.params.entry.source !== "network"));
    },
    async close() {
      const exited = new Promise((r) => chrome.once("exit", r));
      chrome.kill();
      await Promise.race([exited, sleep(3000)]);
      try {
        fs.rmSync(profile, { recursive: true, force: true });
      } catch {
        // a straggling browser process still writing: leave the temporary profile
      }
    },
  };
  return withStateHelpers(page);
}
