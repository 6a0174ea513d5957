// Headless Firefox driven over Marionette (a TCP socket carrying `length:json` packets), with the
// same page interface as cdp.mjs, so browser-check.mjs runs on both engines. Needs nothing beyond
// Node and the browser. Not a test itself.
//
// Unlike Chromium, Firefox has no fake audio output: without a sound device its AudioContext stays
// suspended. On a headless machine run a PulseAudio null sink first, for example:
//   export XDG_RUNTIME_DIR=/tmp/pa-run; mkdir -p -m 700 $XDG_RUNTIME_DIR
//   pulseaudio -D -n --exit-idle-time=-1 --load="module-null-sink" --load="module-native-protocol-unix"

import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

import { sleep, withStateHelpers } from "./harness.mjs";

export async function launch({ firefox = "/usr/bin/firefox", autoplay = true, port = 28000 + Math.floor(Math.random() * 1000) } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "auralis-firefox-"));
  const prefs = {
    "marionette.port": port,
    "media.autoplay.default": autoplay ? 0 : 5, // 0 allows audible autoplay, 5 blocks all
    "media.autoplay.blocking_policy": autoplay ? 0 : 2,
    "browser.shell.checkDefaultBrowser": false,
    "datareporting.policy.dataSubmissionEnabled": false,
    "toolkit.telemetry.reportingpolicy.firstRun": false,
    "browser.startup.homepage_override.mstone": "ignore",
  };
  fs.writeFileSync(path.join(profile, "user.js"), Object.entries(prefs).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});`).join("\n"));
  const env = { ...process.env, MOZ_HEADLESS: "1" };
  const ff = spawn(firefox, ["--headless", "--marionette", "--no-remote", "--profile", profile, "about:blank"], { stdio: ["ignore", "ignore", "pipe"], env });
  ff.stderr.on("data", (d) => { if (process.env.FIREFOX_LOG) process.stderr.write(d); });

  let sock = null;
  for (let i = 0; i < 100 && !sock; i++) {
    await sleep(200);
    sock = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => resolve(s));
      s.on("error", () => resolve(null));
    });
  }
  if (!sock) throw new Error("Firefox did not open its Marionette port");

  let buf = Buffer.alloc(0);
  const packets = [];
  let wake = null;
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const colon = buf.indexOf(":");
      if (colon < 0) return;
      const len = Number(buf.subarray(0, colon).toString());
      if (buf.length < colon + 1 + len) return;
      packets.push(JSON.parse(buf.subarray(colon + 1, colon + 1 + len).toString()));
      buf = buf.subarray(colon + 1 + len);
      if (wake) wake();
    }
  });
  const next = async () => {
    while (!packets.length) await new Promise((r) => (wake = r));
    return packets.shift();
  };
  await next(); // the greeting
  let nextId = 1;
  const pending = new Map();
  (async () => {
    for (;;) {
      const p = await next();
      const [, id, error, result] = p;
      const w = pending.get(id);
      if (!w) continue;
      pending.delete(id);
      if (error) w.reject(new Error(`${error.error}: ${error.message}`));
      else w.resolve(result);
    }
  })();
  const command = (name, params = {}) => {
    const id = nextId++;
    const body = JSON.stringify([0, id, name, params]);
    sock.write(`${Buffer.byteLength(body)}:${body}`);
    return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
  };
  await command("WebDriver:NewSession", { capabilities: { alwaysMatch: { acceptInsecureCerts: true } } });

  const page = {
    async evaluate(expression) {
      const r = await command("WebDriver:ExecuteScript", { script: `return (${expression});`, args: [] });
      return r.value;
    },
    navigate: (url) => command("WebDriver:Navigate", { url }),
    async screenshot(file, width) {
      await command("WebDriver:SetWindowRect", { width, height: 900 });
      const r = await command("WebDriver:TakeScreenshot", { full: true });
      fs.writeFileSync(file, Buffer.from(r.value, "base64"));
    },
    errors: () => [], // Marionette does not stream console messages
    async close() {
      try {
        await Promise.race([command("Marionette:Quit", { flags: ["eForceQuit"] }), sleep(2000)]);
      } catch {
        // already gone
      }
      sock.destroy();
      const exited = new Promise((r) => ff.once("exit", r));
      ff.kill();
      await Promise.race([exited, sleep(3000)]);
      try {
        fs.rmSync(profile, { recursive: true, force: true });
      } catch {
        // leave the temporary profile
      }
    },
  };
  return withStateHelpers(page);
}
