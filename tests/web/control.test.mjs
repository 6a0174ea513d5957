// Music-control helpers (web/control.js): key spelling, ack and error texts, change merging.
import test from "node:test";
import assert from "node:assert/strict";
import {
  normalizeKey, ackSummary, controlErrorText, checkChange, mergeChange, describeChange, KEYS, MODES, LAYERS, SLIDERS,
} from "../../web/control.js";

test("keys are spelled with sharps like the server reports them", () => {
  assert.equal(normalizeKey("D"), "D");
  assert.equal(normalizeKey("f#"), "F#");
  assert.equal(normalizeKey("Db"), "C#");
  assert.equal(normalizeKey("C♭"), "B");
  assert.equal(normalizeKey("E♯"), "F");
  assert.equal(normalizeKey(0), "C");
  assert.equal(normalizeKey(11), "B");
  assert.equal(normalizeKey(12), null);
  assert.equal(normalizeKey("H"), null);
  assert.equal(KEYS.length, 12);
});

test("the parameter tables match docs/music.md", () => {
  assert.deepEqual(MODES, ["major", "minor", "dorian", "mixolydian", "lydian", "phrygian"]);
  assert.deepEqual(LAYERS, ["pads", "melody", "kicks", "hats", "swells"]);
  const bpm = SLIDERS.find(([f]) => f === "bpm");
  assert.deepEqual(bpm.slice(2, 4), [40, 200]);
  for (const [field, , min, max] of SLIDERS) if (field !== "bpm") assert.deepEqual([min, max], [0, 1], field);
});

test("the ack says at which bar and in how long, on the server's clock", () => {
  const ack = { bar: 617359856, effective_unix_ms: 1763900001901, position: 84667200091264 };
  // Client clock 500 ms behind the server: the change lands 2.3 s from now.
  const s = ackSummary(ack, { nowMs: 1763900000101, offsetMs: -500 });
  assert.equal(s.text, "lands at bar 617359856 in 2.3 s");
  assert.ok(Math.abs(s.inS - 2.3) < 1e-9);
  const heard = ackSummary(ack, { nowMs: 1763900000101, offsetMs: -500, hearDelayMs: 450 });
  assert.equal(heard.text, "lands at bar 617359856 in 2.3 s (heard here in 2.8 s)");
  const past = ackSummary(ack, { nowMs: 1763900003401, offsetMs: 0 });
  assert.equal(past.text, "landed at bar 617359856 1.5 s ago");
  assert.equal(ackSummary(ack, { nowMs: 1763900001901, offsetMs: null }).text, "lands at bar 617359856 in 0.0 s");
});

test("refusals say why", () => {
  const body = (code, message, field) => ({ error: { code, message, ...(field ? { field } : {}) } });
  assert.match(controlErrorText(401, body("unauthorized", "this server requires a control token"), { tokenRequired: true }).text, /needs a token/);
  assert.match(controlErrorText(401, body("unauthorized", "the control token is not valid"), { tokenRequired: true, tokenSent: true }).text, /token rejected/);
  assert.match(controlErrorText(403, body("unauthorized", "control is only accepted from this machine")).text, /only from the server's machine unless a token is set/);
  assert.equal(controlErrorText(429, body("rate_limited", "too many"), { retryAfter: "2" }).text, "too many changes: try again in 2 s");
  const invalid = controlErrorText(400, body("invalid_control", "invalid control: bpm: must be between 40 and 200 (got 500)", "bpm"));
  assert.equal(invalid.field, "bpm");
  assert.equal(invalid.text, "invalid control: bpm: must be between 40 and 200 (got 500)");
  const unnamed = controlErrorText(400, body("invalid_control", "unknown layer", "layers.cowbell"));
  assert.equal(unnamed.text, "layers.cowbell: unknown layer");
  assert.equal(controlErrorText(503, body("unavailable", "the station's synthesis is not answering")).text, "the station's synthesis is not answering");
  assert.equal(controlErrorText(413, null).text, "change refused: request too large");
  assert.equal(controlErrorText(500, null).text, "change refused (HTTP 500)");
});

test("out-of-range values are caught before sending", () => {
  assert.equal(checkChange({ bpm: 120 }), null);
  assert.match(checkChange({ bpm: 500 }), /^bpm/);
  assert.match(checkChange({ master_gain: -0.1 }), /^master_gain/);
  assert.match(checkChange({ intensity: NaN }), /^intensity/);
  assert.match(checkChange({ key: "X" }), /^key/);
  assert.match(checkChange({ mode: "locrian" }), /^mode/);
  assert.equal(checkChange({ layers: { hats: false } }), null);
});

test("queued changes merge, layers by name, a preset resets earlier edits", () => {
  assert.deepEqual(mergeChange({ bpm: 90, layers: { hats: false } }, { layers: { kicks: true }, key: "E" }), {
    bpm: 90, key: "E", layers: { hats: false, kicks: true },
  });
  assert.deepEqual(mergeChange({ bpm: 90 }, { preset: "night" }), { preset: "night" });
  assert.deepEqual(mergeChange({ preset: "night" }, { bpm: 70 }), { preset: "night", bpm: 70 });
});

test("changes read well", () => {
  assert.equal(describeChange({ bpm: 96 }), "bpm 96");
  assert.equal(describeChange({ layers: { kicks: false } }), "kicks off");
  assert.equal(describeChange({ preset: "night" }), "preset night");
  assert.equal(describeChange({ melody_complexity: 0.456 }), "melody complexity 0.46");
});
