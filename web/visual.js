// Spectrum and waveform view: an AnalyserNode drawn on a canvas. Log-frequency bars from 30 Hz to
// 16 kHz with the waveform traced over them. Draws only while attached and the page is visible.

const F_MIN = 30;
const F_MAX = 16000;

export class Scope {
  constructor(canvas) {
    this.canvas = canvas;
    this.g = canvas.getContext("2d");
    this.analyser = null;
    this.freq = null;
    this.wave = null;
    this.raf = 0;
    this.draw = this.draw.bind(this);
    const css = getComputedStyle(canvas);
    this.colors = {
      bar: css.getPropertyValue("--accent").trim() || "#5ec8a8",
      wave: css.getPropertyValue("--fg").trim() || "#e6e9ee",
      grid: css.getPropertyValue("--line").trim() || "#2c333d",
      dim: css.getPropertyValue("--dim").trim() || "#8a94a3",
    };
    this.resize();
    if (typeof ResizeObserver === "function") new ResizeObserver(() => this.resize()).observe(canvas);
    this.paintIdle();
  }

  resize() {
    const dpr = Math.min(window.devicePixelRatio || 1, 3);
    const w = Math.max(1, Math.round(this.canvas.clientWidth * dpr));
    const h = Math.max(1, Math.round(this.canvas.clientHeight * dpr));
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
      this.dpr = dpr;
      if (!this.analyser) this.paintIdle();
    }
  }

  /** Shows `analyser` (or nothing when null). */
  attach(analyser) {
    this.analyser = analyser;
    cancelAnimationFrame(this.raf);
    this.raf = 0;
    if (!analyser) {
      this.paintIdle();
      return;
    }
    this.freq = new Uint8Array(analyser.frequencyBinCount);
    this.wave = new Float32Array(analyser.fftSize);
    this.raf = requestAnimationFrame(this.draw);
  }

  paintIdle() {
    const { g, canvas } = this;
    g.clearRect(0, 0, canvas.width, canvas.height);
    g.strokeStyle = this.colors.grid;
    g.lineWidth = Math.max(1, this.dpr || 1);
    g.beginPath();
    g.moveTo(0, canvas.height / 2);
    g.lineTo(canvas.width, canvas.height / 2);
    g.stroke();
  }

  draw() {
    const a = this.analyser;
    if (!a) return;
    this.raf = requestAnimationFrame(this.draw);
    const { g, canvas } = this;
    const W = canvas.width;
    const H = canvas.height;
    const dpr = this.dpr || 1;
    g.clearRect(0, 0, W, H);

    // Spectrum: one bar per few CSS pixels, each the loudest FFT bin in its log-frequency band.
    a.getByteFrequencyData(this.freq);
    const bins = this.freq.length;
    const hzPerBin = a.context.sampleRate / a.fftSize;
    const bars = Math.max(16, Math.floor(W / (5 * dpr)));
    const bw = W / bars;
    const ratio = Math.log(F_MAX / F_MIN);
    g.fillStyle = this.colors.bar;
    g.globalAlpha = 0.55;
    for (let b = 0; b < bars; b++) {
      const lo = Math.min(bins - 1, Math.floor((F_MIN * Math.exp((ratio * b) / bars)) / hzPerBin));
      const hi = Math.min(bins, Math.max(lo + 1, Math.floor((F_MIN * Math.exp((ratio * (b + 1)) / bars)) / hzPerBin)));
      let m = 0;
      for (let k = lo; k < hi; k++) if (this.freq[k] > m) m = this.freq[k];
      const h = (m / 255) * H;
      g.fillRect(b * bw + dpr * 0.5, H - h, Math.max(1, bw - dpr), h);
    }
    g.globalAlpha = 1;

    // Waveform on top.
    a.getFloatTimeDomainData(this.wave);
    const n = this.wave.length;
    g.strokeStyle = this.colors.wave;
    g.lineWidth = 1.25 * dpr;
    g.beginPath();
    for (let x = 0; x < W; x++) {
      const v = this.wave[Math.floor((x / W) * n)];
      const y = H / 2 - v * (H / 2) * 0.9;
      if (x === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    }
    g.stroke();
  }
}
