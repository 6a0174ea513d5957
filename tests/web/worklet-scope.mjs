// A stand-in for the AudioWorkletGlobalScope, so web/worklet.js runs in Node: the globals it
// expects, and the class it registers.

/** Installs the scope's globals, loads web/worklet.js and returns `{ name, Processor }`. */
export async function loadWorklet() {
  globalThis.sampleRate = 48000;
  globalThis.currentFrame = 0;
  globalThis.AudioWorkletProcessor = class {
    constructor() {
      this.port = { sent: [], onmessage: null };
      this.port.postMessage = (m) => this.port.sent.push(m);
    }
  };
  let registered = null;
  globalThis.registerProcessor = (name, Processor) => {
    registered = { name, Processor };
  };
  await import("../../web/worklet.js");
  return registered;
}
