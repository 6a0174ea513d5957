// Renders voice tables into interleaved stereo blocks, many stations per dispatch, in two passes
// as the CPU reference renderer (src/synth/cpu.rs) works:
//
// 1. `segments`: one invocation per (voice, 64-frame segment of its age): the exact phase and
//    envelope at the segment's ends, which need exp() and 64-bit fixed point. Dispatch:
//    x = segment slots / 64 (rounded up), y = voices in the batch.
// 2. `render`: one invocation per frame of one station's block: it sums every voice at that frame
//    (oscillators interpolate within their segment, noise voices are computed directly), then
//    applies the pad tremolo, the tanh soft clipper and the master gain. Dispatch:
//    x = frames / 64 (rounded up), y = stations.
//
// Precision (see shaders/README.md): nothing here uses absolute f32 time. Oscillator
// phase is 0.32 fixed point from the voice's integer age times a 0.64 fixed-point increment, so
// it is exact modulo one turn at any stream position; noise is indexed by 64-bit integers
// emulated with two u32 words, bit for bit the CPU's splitmix64.

struct Block {
    start_lo: u32,
    start_hi: u32,
    frames: u32,
    voice_offset: u32,
    voice_count: u32,
    out_offset: u32,
    // fract(start * tremolo_increment), computed in f64 on the CPU.
    tremolo_base: f32,
    tremolo_increment: f32,
    tremolo_depth: f32,
    drive: f32,
    master_gain: f32,
    previous_gain: f32,
    ramp_onset: i32,
    ramp_frames: u32,
    _pad0: u32,
    _pad1: u32,
}

struct Voice {
    kind: u32,
    // The block (station) this voice belongs to.
    block: u32,
    onset: i32,
    gate: u32,
    release: u32,
    attack: u32,
    // Turns per frame as 0.64 fixed point (low and high word), and as f32 for in-segment steps.
    inc_lo: u32,
    inc_hi: u32,
    increment: f32,
    decay_frames: f32,
    sustain: f32,
    gain_left: f32,
    gain_right: f32,
    // Kick: pitch-sweep depth in turns and its time constant; swell: rise length in aux_frames.
    aux: f32,
    aux_frames: f32,
    // Swell and hat noise seed (64 bits).
    seed_lo: u32,
    seed_hi: u32,
    _pad: u32,
}

// An oscillator's segment: phase (turns, reduced) and its per-frame step, envelope and its step.
struct Segment {
    base: f32,
    step: f32,
    env_start: f32,
    env_step: f32,
}

const PAD: u32 = 0u;
const LEAD: u32 = 1u;
const KICK: u32 = 2u;
const SWELL: u32 = 3u;
const HAT: u32 = 4u;
const SEGMENT: u32 = 64u;
const TAU: f32 = 6.28318530717958647692;

@group(0) @binding(0) var<storage, read> blocks: array<Block>;
@group(0) @binding(1) var<storage, read> voices: array<Voice>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> segments_out: array<Segment>;

// Segment slots per voice: enough for the longest block (the renderer passes it in `Params`).
struct Params {
    segment_slots: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
@group(0) @binding(4) var<uniform> params: Params;

// ---- 64-bit integers as vec2<u32> (x: low word, y: high word)

fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn shr64(a: vec2<u32>, n: u32) -> vec2<u32> {
    // 0 < n < 32
    return vec2<u32>((a.x >> n) | (a.y << (32u - n)), a.y >> n);
}

// The full 64-bit product of two u32.
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let middle = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let lo = (p00 & 0xffffu) | (middle << 16u);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (middle >> 16u);
    return vec2<u32>(lo, hi);
}

fn mul64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let low = mul_wide(a.x, b.x);
    return vec2<u32>(low.x, low.y + a.x * b.y + a.y * b.x);
}

// splitmix64's finaliser, as score::mix64.
fn mix64(z0: vec2<u32>) -> vec2<u32> {
    var z = add64(z0, vec2<u32>(0x7F4A7C15u, 0x9E3779B9u));
    z = mul64(z ^ shr64(z, 30u), vec2<u32>(0x1CE4E5B9u, 0xBF58476Du));
    z = mul64(z ^ shr64(z, 27u), vec2<u32>(0x133111EBu, 0x94D049BBu));
    return z ^ shr64(z, 31u);
}

// Deterministic noise in -1..1, as cpu::unit_noise (bit-exact: the top 24 bits of the hash).
fn unit_noise(seed: vec2<u32>, index: vec2<u32>) -> f32 {
    let hashed = mix64(seed ^ mul64(index, vec2<u32>(0x7F4A7C15u, 0x9E3779B9u)));
    return f32(hashed.y >> 8u) / 8388608.0 - 1.0;
}

// Smoothly interpolated noise at a 64-bit frame position, as cpu::value_noise.
fn value_noise(seed: vec2<u32>, position: vec2<u32>) -> f32 {
    let segment = shr64(position, 3u);
    let t0 = f32(position.x & 7u) / 8.0;
    let a = unit_noise(seed, segment);
    let b = unit_noise(seed, add64(segment, vec2<u32>(1u, 0u)));
    let t = t0 * t0 * (3.0 - 2.0 * t0);
    return a + (b - a) * t;
}

// ---- the shared approximations (same formulas as the CPU renderer)

fn sin_turns(t: f32) -> f32 {
    var x = t - 0.5;
    if (x >= 0.5) {
        x = x - 1.0;
    }
    if (x > 0.25) {
        x = 0.5 - x;
    } else if (x < -0.25) {
        x = -0.5 - x;
    }
    let z = x * TAU;
    let z2 = z * z;
    let p = 1.0 + z2 * (-1.0 / 6.0 + z2 * (1.0 / 120.0 + z2 * (-1.0 / 5040.0 + z2 / 362880.0)));
    return -(z * p);
}

fn cos_turns(t: f32) -> f32 {
    return sin_turns(t + 0.25);
}

fn soft_clip(x0: f32) -> f32 {
    let x = clamp(x0, -4.97, 4.97);
    let x2 = x * x;
    let numerator = x * (135135.0 + x2 * (17325.0 + x2 * (378.0 + x2)));
    let denominator = 135135.0 + x2 * (62370.0 + x2 * (3150.0 + x2 * 28.0));
    return clamp(numerator / denominator, -1.0, 1.0);
}

fn envelope(v: Voice, age: u32) -> f32 {
    let age_f = f32(age);
    let attack = min(age_f / f32(max(v.attack, 1u)), 1.0);
    var level = 1.0;
    if (v.decay_frames > 0.0) {
        level = v.sustain + (1.0 - v.sustain) * exp(-age_f / v.decay_frames);
    }
    var release = 1.0;
    if (age >= v.gate) {
        release = max(1.0 - f32(age - v.gate) / f32(max(v.release, 1u)), 0.0);
    }
    return attack * level * release;
}

// The fractional part of age * increment, in turns as 0.32 fixed point (exact but for the
// increment's 2^-64 rounding).
fn linear_phase(v: Voice, age: u32) -> u32 {
    return mul_wide(v.inc_lo, age).y + v.inc_hi * age;
}

// The kick's pitch sweep at `age`, in turns (0 for other voices).
fn sweep(v: Voice, age: u32) -> f32 {
    if (v.kind == KICK && v.aux_frames > 0.0) {
        return v.aux * (1.0 - exp(-f32(age) / v.aux_frames));
    }
    return 0.0;
}

fn harmonics(kind: u32) -> vec3<f32> {
    if (kind == PAD) {
        return vec3<f32>(1.0, 0.28, 0.1);
    }
    if (kind == LEAD) {
        return vec3<f32>(1.0, 0.45, 0.18);
    }
    return vec3<f32>(1.0, 0.0, 0.0);
}

fn is_tonal(kind: u32) -> bool {
    return kind == PAD || kind == LEAD || kind == KICK;
}

// The age at which the voice's first segment in this block starts (onset-aligned).
fn first_segment_age(v: Voice) -> u32 {
    let first_age = u32(max(0, -v.onset));
    return first_age - first_age % SEGMENT;
}

// Pass 1: exact phase and envelope at both ends of one segment, as the CPU's add_tonal.
@compute @workgroup_size(64)
fn segments(@builtin(global_invocation_id) id: vec3<u32>) {
    let slot = id.x;
    let g = id.y;
    if (slot >= params.segment_slots || g >= arrayLength(&voices)) {
        return;
    }
    let v = voices[g];
    if (!is_tonal(v.kind)) {
        return;
    }
    let segment_age = first_segment_age(v) + slot * SEGMENT;
    let sweep_start = sweep(v, segment_age);
    let sweep_end = sweep(v, segment_age + SEGMENT);
    let linear = f32(linear_phase(v, segment_age)) / 4294967296.0;
    let start = linear + fract(sweep_start);
    let env_start = envelope(v, segment_age);
    var segment: Segment;
    segment.base = start - floor(start);
    segment.step = v.increment + (sweep_end - sweep_start) / f32(SEGMENT);
    segment.env_start = env_start;
    segment.env_step = (envelope(v, segment_age + SEGMENT) - env_start) / f32(SEGMENT);
    segments_out[g * params.segment_slots + slot] = segment;
}

// An oscillator voice at `age`: its segment's exact ends, linear in between.
fn tonal(v: Voice, g: u32, age: u32) -> f32 {
    let offset = age % SEGMENT;
    let slot = (age - offset - first_segment_age(v)) / SEGMENT;
    let segment = segments_out[g * params.segment_slots + slot];
    let j = f32(offset);
    var turns = segment.base + j * segment.step;
    turns = turns - f32(i32(turns));
    let s = sin_turns(turns);
    let c = cos_turns(turns);
    let h = harmonics(v.kind);
    let wave = h.x * s + h.y * (2.0 * s * c) + h.z * (s * (3.0 - 4.0 * s * s));
    return wave * (segment.env_start + j * segment.env_step);
}

@compute @workgroup_size(64)
fn render(@builtin(global_invocation_id) id: vec3<u32>) {
    let block = blocks[id.y];
    let k = id.x;
    if (k >= block.frames) {
        return;
    }
    let start = vec2<u32>(block.start_lo, block.start_hi);
    let position = add64(start, vec2<u32>(k, 0u));
    var dry = vec2<f32>(0.0, 0.0);
    var pad = vec2<f32>(0.0, 0.0);
    for (var i = 0u; i < block.voice_count; i = i + 1u) {
        let g = block.voice_offset + i;
        let v = voices[g];
        let age_signed = i32(k) - v.onset;
        if (age_signed < 0) {
            continue;
        }
        let age = u32(age_signed);
        if (age >= v.gate + v.release) {
            continue;
        }
        let gains = vec2<f32>(v.gain_left, v.gain_right);
        if (v.kind == PAD) {
            pad = pad + tonal(v, g, age) * gains;
        } else if (v.kind == SWELL) {
            let rise = min(f32(age) / max(v.aux_frames, 1.0), 1.0);
            let env = envelope(v, age) * rise * rise;
            let pan = 0.5 + 0.4 * sin_turns(f32(age % 96000u) / 96000.0);
            let seed = vec2<u32>(v.seed_lo, v.seed_hi);
            let left = value_noise(seed, position) * env * (1.0 - pan) * 2.0;
            let right = value_noise(seed ^ vec2<u32>(0xA5A5u, 0u), position) * env * pan * 2.0;
            dry = dry + vec2<f32>(left, right) * gains;
        } else if (v.kind == HAT) {
            let env = envelope(v, age);
            let seed = vec2<u32>(v.seed_lo, v.seed_hi);
            let noise = 0.5 * (unit_noise(seed, vec2<u32>(age + 1u, 0u)) - unit_noise(seed, vec2<u32>(age, 0u)));
            dry = dry + noise * env * gains;
        } else {
            dry = dry + tonal(v, g, age) * gains;
        }
    }
    var tremolo_turns = block.tremolo_base + f32(k) * block.tremolo_increment;
    tremolo_turns = tremolo_turns - floor(tremolo_turns);
    let tremolo = 1.0 + block.tremolo_depth * sin_turns(tremolo_turns);
    var gain = block.master_gain;
    if (block.ramp_frames > 0u) {
        let t = clamp(f32(i32(k) - block.ramp_onset) / f32(block.ramp_frames), 0.0, 1.0);
        gain = block.previous_gain + (block.master_gain - block.previous_gain) * t;
    }
    let index = block.out_offset + 2u * k;
    out[index] = soft_clip(block.drive * (dry.x + pad.x * tremolo)) * gain;
    out[index + 1u] = soft_clip(block.drive * (dry.y + pad.y * tremolo)) * gain;
}
