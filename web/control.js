// Music control: the panel that shows a station's parameters and sends changes with
// POST /api/stations/{name}/control, plus the pure helpers it uses (importable from Node).

export const KEYS = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
export const MODES = ["major", "minor", "dorian", "mixolydian", "lydian", "phrygian"];
export const LAYERS = ["pads", "melody", "kicks", "hats", "swells"];
export const PRESETS = ["ambient", "focus", "pulse", "night"];
/** Numeric parameters: [field, label, min, max, step]. */
export const SLIDERS = [
  ["bpm", "Tempo", 40, 200, 1],
  ["intensity", "Intensity", 0, 1, 0.01],
  ["melody_complexity", "Melody complexity", 0, 1, 0.01],
  ["chord_variety", "Chord variety", 0, 1, 0.01],
  ["harmonic_density", "Harmonic density", 0, 1, 0.01],
  ["master_gain", "Master gain", 0, 1, 0.01],
];
export const TOKEN_STORAGE_KEY = "auralis.controlToken";

const LETTERS = { C: 0, D: 2, E: 4, F: 5, G: 7, A: 9, B: 11 };

/** A key as the server accepts it (name with # or b, or pitch class) to its sharp spelling. */
export function normalizeKey(key) {
  if (typeof key === "number" && Number.isInteger(key) && key >= 0 && key < 12) return KEYS[key];
  if (typeof key !== "string") return null;
  const m = /^\s*([A-Ga-g])\s*([#♯b♭]?)\s*$/.exec(key);
  if (!m) return null;
  let pc = LETTERS[m[1].toUpperCase()];
  if (m[2] === "#" || m[2] === "♯") pc += 1;
  if (m[2] === "b" || m[2] === "♭") pc += 11;
  return KEYS[pc % 12];
}

/** Short human text for a change request: `bpm 96`, `preset night`, `kicks off`. */
export function describeChange(change) {
  const parts = [];
  for (const [k, v] of Object.entries(change)) {
    if (k === "layers" && v && typeof v === "object") {
      for (const [name, on] of Object.entries(v)) parts.push(`${name} ${on ? "on" : "off"}`);
    } else if (k === "preset") {
      parts.push(`preset ${v}`);
    } else {
      parts.push(`${k.replace(/_/g, " ")} ${typeof v === "number" ? +v.toFixed(2) : v}`);
    }
  }
  return parts.join(", ");
}

/**
 * When an acknowledged change lands. `effective_unix_ms` is on the server's wall clock; `offsetMs`
 * (server minus client, from ping/pong) maps it onto ours. `hearDelayMs`, when known, is how long
 * released audio takes to reach this listener's speakers.
 */
export function ackSummary(ack, { nowMs, offsetMs = 0, hearDelayMs = null }) {
  const inS = (ack.effective_unix_ms - (nowMs + (offsetMs ?? 0))) / 1000;
  let text = inS >= 0 ? `lands at bar ${ack.bar} in ${inS.toFixed(1)} s` : `landed at bar ${ack.bar} ${(-inS).toFixed(1)} s ago`;
  if (Number.isFinite(hearDelayMs) && hearDelayMs > 0 && inS + hearDelayMs / 1000 > 0) {
    text += ` (heard here in ${(inS + hearDelayMs / 1000).toFixed(1)} s)`;
  }
  return { bar: ack.bar, inS, text };
}

/**
 * Why a control request failed, for people. `body` is the parsed JSON error body (or null),
 * `tokenSent` whether the request carried a token, `retryAfter` the Retry-After header.
 */
export function controlErrorText(status, body, { tokenRequired = false, tokenSent = false, retryAfter = null } = {}) {
  const err = body && typeof body === "object" && body.error && typeof body.error === "object" ? body.error : {};
  const message = typeof err.message === "string" ? err.message : "";
  const field = typeof err.field === "string" ? err.field : null;
  let text;
  if (status === 401) {
    text = tokenSent ? "control token rejected: check the token" : "control needs a token: enter the server's control token";
  } else if (status === 403) {
    text = tokenRequired
      ? "control refused: the token was not accepted"
      : "control only from the server's machine unless a token is set (start the server with --control-token)";
  } else if (status === 429) {
    const s = Number(retryAfter);
    text = `too many changes: try again in ${Number.isFinite(s) && s > 0 ? s : 1} s`;
  } else if (status === 413) {
    text = "change refused: request too large";
  } else if (message) {
    text = field && !message.includes(field) ? `${field}: ${message}` : message;
  } else {
    text = `change refused (HTTP ${status})`;
  }
  return { text, field, code: typeof err.code === "string" ? err.code : null };
}

/** Client-side range check, so an out-of-range value never leaves the page. Returns null or text. */
export function checkChange(change) {
  for (const [field, , min, max] of SLIDERS) {
    if (field in change) {
      const v = change[field];
      if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max) return `${field}: must be between ${min} and ${max}`;
    }
  }
  if ("key" in change && normalizeKey(change.key) === null) return "key: not a note name";
  if ("mode" in change && !MODES.includes(String(change.mode).toLowerCase())) return "mode: unknown mode";
  return null;
}

/** Merges change `b` into `a` (layers merge by name). */
export function mergeChange(a, b) {
  const out = { ...a, ...b };
  if (a.layers || b.layers) out.layers = { ...(a.layers || {}), ...(b.layers || {}) };
  if ("preset" in b) {
    // A preset resets everything; earlier field edits in the same batch would be lost anyway.
    for (const k of Object.keys(a)) if (!(k in b)) delete out[k];
  }
  return out;
}

/**
 * The DOM panel. `deps`: { now(): client wall ms, offsetMs(): server offset or null,
 * hearDelayMs(): release-to-speaker delay or null }.
 */
export class ControlPanel {
  constructor(root, deps) {
    this.root = root;
    this.deps = deps;
    this.station = null; // {name, control}
    this.params = null;
    this.tokenRequired = false;
    this.pending = null;
    this.inflight = false;
    this.generation = 0;
    this.el = {
      station: root.querySelector("#c-station"),
      presets: root.querySelector("#c-presets"),
      key: root.querySelector("#c-key"),
      mode: root.querySelector("#c-mode"),
      sliders: root.querySelector("#c-sliders"),
      layers: root.querySelector("#c-layers"),
      token: root.querySelector("#c-token"),
      tokenHint: root.querySelector("#c-token-hint"),
      status: root.querySelector("#c-status"),
    };
    this.build();
  }

  build() {
    const { el } = this;
    el.key.replaceChildren(...KEYS.map((k) => new Option(k, k)));
    el.mode.replaceChildren(...MODES.map((m) => new Option(m, m)));
    el.key.addEventListener("change", () => this.send({ key: el.key.value }));
    el.mode.addEventListener("change", () => this.send({ mode: el.mode.value }));
    this.setPresets(PRESETS);

    this.inputs = {};
    for (const [field, label, min, max, step] of SLIDERS) {
      const wrap = document.createElement("div");
      wrap.className = "ctl slider";
      wrap.dataset.field = field;
      const id = `c-${field}`;
      const lab = document.createElement("label");
      lab.htmlFor = id;
      lab.textContent = label;
      const out = document.createElement("output");
      out.htmlFor = id;
      const input = document.createElement("input");
      Object.assign(input, { type: "range", id, min, max, step });
      const show = () => (out.textContent = field === "bpm" ? `${input.value} bpm` : Number(input.value).toFixed(2));
      input.addEventListener("input", show);
      input.addEventListener("change", () => this.send({ [field]: Number(input.value) }));
      wrap.append(lab, out, input);
      el.sliders.append(wrap);
      this.inputs[field] = { input, show };
    }

    this.toggles = {};
    for (const name of LAYERS) {
      const lab = document.createElement("label");
      lab.className = "ctl toggle";
      lab.dataset.field = `layers.${name}`;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.addEventListener("change", () => this.send({ layers: { [name]: box.checked } }));
      lab.append(box, document.createTextNode(name));
      el.layers.append(lab);
      this.toggles[name] = box;
    }

    let stored = "";
    try {
      stored = sessionStorage.getItem(TOKEN_STORAGE_KEY) || "";
    } catch {
      // storage disabled: the token just is not remembered
    }
    el.token.value = stored;
    el.token.addEventListener("input", () => {
      try {
        if (el.token.value) sessionStorage.setItem(TOKEN_STORAGE_KEY, el.token.value);
        else sessionStorage.removeItem(TOKEN_STORAGE_KEY);
      } catch {
        // ignore
      }
    });
    this.setEnabled(false);
  }

  setPresets(presets) {
    const names = Array.isArray(presets) && presets.length ? presets : PRESETS;
    const current = [...this.el.presets.children].map((b) => b.dataset.preset).join();
    if (current === names.join()) return;
    this.el.presets.replaceChildren(
      ...names.map((p) => {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "preset";
        b.dataset.preset = p;
        b.textContent = p;
        b.addEventListener("click", () => this.send({ preset: p }));
        return b;
      }),
    );
  }

  setTokenRequired(required) {
    this.tokenRequired = Boolean(required);
    this.el.tokenHint.textContent = this.tokenRequired
      ? "required by this server"
      : "not required here: without a token the server takes changes only from its own machine";
    this.root.classList.toggle("token-required", this.tokenRequired);
  }

  setEnabled(on) {
    for (const e of this.root.querySelectorAll("button, select, input:not(#c-token)")) e.disabled = !on;
  }

  status(text, kind = "") {
    this.el.status.textContent = text;
    this.el.status.dataset.kind = kind;
  }

  /** Switches to `station` ({name, control, params}) and loads its current state. */
  async select(station) {
    const gen = ++this.generation;
    this.station = station;
    this.pending = null;
    this.el.station.textContent = station ? station.name : "";
    if (!station) {
      this.setEnabled(false);
      return;
    }
    if (station.params) this.show(station.params);
    this.setEnabled(true);
    try {
      const res = await fetch(station.control, { cache: "no-store" });
      const body = await res.json().catch(() => null);
      if (gen !== this.generation) return;
      if (!res.ok || !body) throw new Error(controlErrorText(res.status, body).text);
      this.show(body.params, true);
      const effMs = (body.effective_position / body.sample_rate) * 1000;
      const inS = (effMs - (this.deps.now() + (this.deps.offsetMs() ?? 0))) / 1000;
      if (Number.isFinite(inS) && inS > 0) this.status(`a change is pending: lands in ${inS.toFixed(1)} s`);
      else this.status("");
    } catch (e) {
      if (gen === this.generation) this.status(`cannot read the station's parameters: ${e.message}`, "bad");
    }
  }

  /** Newer parameters from the station list; ignored while a change is on its way. */
  refresh(station) {
    if (!this.station || !station || station.name !== this.station.name) return;
    this.station = station;
    if (!this.inflight && !this.pending && station.params) this.show(station.params);
  }

  show(params, force = false) {
    if (!params) return;
    this.params = params;
    const active = document.activeElement;
    const key = normalizeKey(params.key);
    if (key && (force || active !== this.el.key)) this.el.key.value = key;
    if (params.mode && (force || active !== this.el.mode)) this.el.mode.value = String(params.mode).toLowerCase();
    for (const [field] of SLIDERS) {
      const { input, show } = this.inputs[field];
      if (typeof params[field] === "number" && (force || active !== input)) {
        input.value = String(params[field]);
        show();
      }
    }
    const layers = params.layers || {};
    for (const name of LAYERS) if (typeof layers[name] === "boolean") this.toggles[name].checked = layers[name];
  }

  token() {
    return this.el.token.value.trim();
  }

  /** Queues a change; changes made while one is in flight are merged and sent next. */
  send(change) {
    if (!this.station) return;
    const problem = checkChange(change);
    if (problem) {
      this.fail(problem, Object.keys(change)[0]);
      return;
    }
    this.pending = this.pending ? mergeChange(this.pending, change) : change;
    if (!this.inflight) this.flush();
  }

  async flush() {
    while (this.pending && this.station) {
      const change = this.pending;
      const station = this.station;
      const gen = this.generation;
      this.pending = null;
      this.inflight = true;
      this.clearInvalid();
      this.status(`sending ${describeChange(change)}…`);
      const token = this.token();
      const headers = { "content-type": "application/json" };
      if (token) headers.authorization = `Bearer ${token}`;
      try {
        const res = await fetch(station.control, { method: "POST", headers, body: JSON.stringify(change), cache: "no-store" });
        const text = await res.text();
        let body = null;
        try {
          body = JSON.parse(text);
        } catch {
          // plain-text answers (413) have no JSON body
        }
        if (gen !== this.generation) continue;
        if (res.ok && body) {
          const s = ackSummary(body, { nowMs: this.deps.now(), offsetMs: this.deps.offsetMs(), hearDelayMs: this.deps.hearDelayMs() });
          this.show(body.params, true);
          this.status(`${describeChange(change)}: ${s.text}`, "ok");
          this.lastAck = { change, ack: body, ...s };
        } else {
          const e = controlErrorText(res.status, body, {
            tokenRequired: this.tokenRequired,
            tokenSent: Boolean(token),
            retryAfter: res.headers.get("retry-after"),
          });
          this.fail(e.text, e.field || Object.keys(change)[0]);
        }
      } catch (e) {
        if (gen === this.generation) this.fail(`cannot reach the server: ${e.message}`);
      } finally {
        this.inflight = false;
      }
    }
  }

  fail(text, field = null) {
    this.status(text, "bad");
    this.lastError = { text, field };
    if (field) {
      const q = (f) => this.root.querySelector(`[data-field="${CSS.escape(f)}"]`);
      const target = q(field) || q(field.split(".")[0]);
      if (target) target.classList.add("invalid");
    }
    if (this.params) this.show(this.params, true); // the station did not change: show what it plays
  }

  clearInvalid() {
    for (const e of this.root.querySelectorAll(".invalid")) e.classList.remove("invalid");
  }
}
