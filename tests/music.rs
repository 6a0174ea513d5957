//! Tests that listen: they render audio through the real composer and renderer and assert on the
//! samples (onsets, pitch content, energy, slopes, loudness), not on the code path.

use auralis::stream::protocol::f32_to_s16;
use auralis::synth::params::{Key, Layers, Mode, MusicParams, Preset};
use auralis::synth::{ControlEntry, Synth, Timeline, CHANNELS};

const SR: u32 = 48_000;
const BLOCK: usize = 4800;

/// Renders `frames` frames from `start` in 100 ms blocks, as the synthesis thread does.
fn render(timeline: &Timeline, start: u64, frames: usize) -> Vec<f32> {
    let mut synth = Synth::new(timeline.clone(), BLOCK);
    let mut out = vec![0.0; frames * CHANNELS];
    for (i, block) in out.chunks_mut(BLOCK * CHANNELS).enumerate() {
        synth
            .render(start + (i * BLOCK) as u64, block)
            .expect("render");
    }
    out
}

fn mono(stereo: &[f32]) -> Vec<f32> {
    stereo
        .chunks_exact(2)
        .map(|f| 0.5 * (f[0] + f[1]))
        .collect()
}

fn rms_dbfs(samples: &[f32]) -> f64 {
    let mean_square =
        samples.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / samples.len() as f64;
    10.0 * mean_square.log10()
}

/// Frames where a percussive onset starts: after at least 30 ms with the 1 ms peak envelope below
/// a tenth of the loudest peak, the first frame above that tenth, provided the envelope then
/// reaches half the loudest peak.
fn onsets(mono: &[f32]) -> Vec<u64> {
    let hop = (SR / 1000) as usize;
    let envelope: Vec<f32> = mono
        .chunks(hop)
        .map(|c| c.iter().fold(0.0f32, |m, s| m.max(s.abs())))
        .collect();
    let loudest = envelope.iter().fold(0.0f32, |m, e| m.max(*e));
    let mut found = Vec::new();
    let mut quiet_hops = 0;
    let mut armed = false;
    let mut rise: Option<usize> = None;
    for (i, &e) in envelope.iter().enumerate() {
        if e < 0.1 * loudest {
            quiet_hops += 1;
            if quiet_hops >= 30 {
                armed = true;
                rise = None;
            }
            continue;
        }
        quiet_hops = 0;
        if armed && rise.is_none() {
            rise = Some(i);
        }
        if armed && e >= 0.5 * loudest {
            let hop_start = rise.unwrap_or(i) * hop;
            let first = mono[hop_start..]
                .iter()
                .position(|s| s.abs() >= 0.1 * loudest)
                .unwrap_or(0);
            found.push((hop_start + first) as u64);
            armed = false;
        }
    }
    found
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

fn only(layers: &[&str]) -> Layers {
    Layers {
        pads: layers.contains(&"pads"),
        melody: layers.contains(&"melody"),
        kicks: layers.contains(&"kicks"),
        hats: layers.contains(&"hats"),
        swells: layers.contains(&"swells"),
    }
}

#[test]
fn a_bpm_change_moves_the_kick_period_at_the_acked_position() {
    let params = MusicParams {
        bpm: 90.0,
        intensity: 1.0, // four on the floor
        layers: only(&["kicks"]),
        ..MusicParams::from_preset(3, Preset::Pulse)
    };
    let mut timeline = Timeline::new(3, SR, params);
    let requested = 600 * SR as u64 + 12_345;
    let ack = timeline
        .schedule(
            MusicParams {
                bpm: 150.0,
                ..params
            },
            requested,
        )
        .expect("schedule");
    assert!(ack.position >= requested);
    let start = ack.position - 15 * SR as u64;
    let audio = mono(&render(&timeline, start, 30 * SR as usize));
    let found: Vec<u64> = onsets(&audio).into_iter().map(|o| o + start).collect();
    let before: Vec<u64> = found
        .iter()
        .copied()
        .filter(|&o| o < ack.position)
        .collect();
    let after: Vec<u64> = found
        .iter()
        .copied()
        .filter(|&o| o >= ack.position)
        .collect();
    let intervals = |o: &[u64]| o.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>();
    let quarter = |bpm: f64| (60.0 / bpm * SR as f64) as u64;
    let (old, new) = (median(intervals(&before)), median(intervals(&after)));
    assert!(old.abs_diff(quarter(90.0)) < 100, "old period {old}");
    assert!(new.abs_diff(quarter(150.0)) < 100, "new period {new}");
    // The first kick in the new tempo is on the acked bar line (or the bar after, when the acked
    // bar is the kick-less last bar of a section).
    let bar_frames = 8 * (SR as f64 * 30.0 / 150.0).round() as u64;
    let expected = if ack.bar % 8 == 7 {
        ack.position + bar_frames
    } else {
        ack.position
    };
    let first_new = after[0];
    assert!(
        first_new.abs_diff(expected) < (SR / 500) as u64,
        "first new kick at {first_new}, expected {expected}"
    );
}

/// Energy per pitch class (0 = C), from Goertzel filters at every note between C3 and B6 over
/// Hann-windowed half-second frames. A dozen lines, where an FFT crate would add a dependency.
fn chroma(mono: &[f32]) -> [f64; 12] {
    let window = SR as usize / 2;
    let hann: Vec<f64> = (0..window)
        .map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / window as f64).cos())
        .collect();
    let mut energy = [0.0; 12];
    for frame in mono.chunks_exact(window) {
        for midi in 48..96 {
            let freq = 440.0 * 2f64.powf((midi as f64 - 69.0) / 12.0);
            let coeff = 2.0 * (std::f64::consts::TAU * freq / SR as f64).cos();
            let (mut s1, mut s2) = (0.0, 0.0);
            for (x, w) in frame.iter().zip(&hann) {
                let s0 = *x as f64 * w + coeff * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            energy[midi % 12] += s1 * s1 + s2 * s2 - coeff * s1 * s2;
        }
    }
    energy
}

/// The seven loudest pitch classes, sorted.
fn strongest_seven(chroma: [f64; 12]) -> Vec<u8> {
    let mut order: Vec<u8> = (0..12).collect();
    order.sort_by(|a, b| chroma[*b as usize].total_cmp(&chroma[*a as usize]));
    let mut top: Vec<u8> = order[..7].to_vec();
    top.sort_unstable();
    top
}

fn scale(key: Key, mode: Mode) -> Vec<u8> {
    let mut pcs: Vec<u8> = mode
        .intervals()
        .iter()
        .map(|i| ((key.pitch_class() as i32 + i) % 12) as u8)
        .collect();
    pcs.sort_unstable();
    pcs
}

#[test]
fn a_key_change_moves_the_pitch_class_histogram() {
    let c_major = MusicParams {
        key: Key::new(0),
        mode: Mode::Major,
        layers: only(&["pads", "melody"]),
        ..MusicParams::from_preset(12, Preset::Focus)
    };
    let f_sharp = MusicParams {
        key: Key::new(6),
        ..c_major
    };
    let mut timeline = Timeline::new(12, SR, c_major);
    let ack = timeline
        .schedule(f_sharp, 900 * SR as u64)
        .expect("schedule");
    let seconds = |s: u64| s * SR as u64;
    let before = mono(&render(
        &timeline,
        ack.position - seconds(12),
        12 * SR as usize,
    ));
    // Skip the two-second crossfade while the old chords release.
    let after = mono(&render(
        &timeline,
        ack.position + seconds(2),
        12 * SR as usize,
    ));
    assert_eq!(
        strongest_seven(chroma(&before)),
        scale(Key::new(0), Mode::Major)
    );
    assert_eq!(
        strongest_seven(chroma(&after)),
        scale(Key::new(6), Mode::Major)
    );
}

#[test]
fn turning_a_layer_off_removes_exactly_that_layer() {
    let all_on = MusicParams {
        intensity: 0.8,
        layers: Layers::ALL_ON,
        ..MusicParams::from_preset(21, Preset::Focus)
    };
    for (index, name) in Layers::NAMES.iter().enumerate() {
        let mut layers = [true; 5];
        layers[index] = false;
        let without = Layers {
            pads: layers[0],
            melody: layers[1],
            kicks: layers[2],
            hats: layers[3],
            swells: layers[4],
        };
        let off = MusicParams {
            layers: without,
            ..all_on
        };
        // Live: everything on, then this layer off. Reference: the layer never on.
        let mut live = Timeline::new(21, SR, all_on);
        let mut reference = Timeline::new(21, SR, off);
        let bar = live.latest().bar_frames();
        let not_before = 64 * bar + 1; // just after a section start
        let ack = live.schedule(off, not_before).expect("schedule");
        assert_eq!(reference.schedule(off, not_before).expect("schedule"), ack);
        // A section and a bar before the change (so the swell bar is in it), ten seconds after.
        let start = ack.position - 9 * bar;
        let frames = (ack.position - start) as usize + 10 * SR as usize;
        let live_audio = render(&live, start, frames);
        let reference_audio = render(&reference, start, frames);
        let change = 2 * (ack.position - start) as usize;
        let tail = 2 * live.segments()[0].longest_tail() as usize;
        let difference: Vec<f32> = live_audio[..change]
            .iter()
            .zip(&reference_audio[..change])
            .map(|(a, b)| a - b)
            .collect();
        assert!(
            rms_dbfs(&difference) > -50.0,
            "{name}: the layer was audible before the change ({:.1} dBFS)",
            rms_dbfs(&difference)
        );
        assert!(
            live_audio[change + tail..] == reference_audio[change + tail..],
            "{name}: once its tails end, the stream is exactly the stream without the layer"
        );
    }
}

/// Largest sample-to-sample step on either channel in `frames`.
fn max_step(stereo: &[f32], frames: std::ops::Range<usize>) -> f32 {
    let mut most = 0.0f32;
    for k in frames.start.max(1)..frames.end {
        for ch in 0..2 {
            most = most.max((stereo[2 * k + ch] - stereo[2 * (k - 1) + ch]).abs());
        }
    }
    most
}

#[test]
fn control_boundaries_never_click() {
    let base = MusicParams::from_preset(31, Preset::Focus);
    let changes = [
        MusicParams {
            key: Key::new(5),
            mode: Mode::Minor,
            ..base
        },
        MusicParams {
            bpm: 190.0,
            master_gain: 0.3,
            ..base
        },
        MusicParams {
            bpm: 45.0,
            master_gain: 1.0,
            layers: only(&["pads", "kicks"]),
            ..base
        },
        Preset::Pulse.params(Key::new(9)),
        MusicParams {
            master_gain: 0.0,
            ..Preset::Ambient.params(Key::new(2))
        },
        Preset::Night.params(Key::new(11)),
    ];
    let mut timeline = Timeline::new(31, SR, base);
    let start = 3600 * SR as u64;
    let mut position = start + 5 * SR as u64;
    let mut boundaries = Vec::new();
    for params in changes {
        let ack = timeline.schedule(params, position).expect("schedule");
        boundaries.push((ack.position - start) as usize);
        position = ack.position + 4 * SR as u64;
    }
    let frames = (position - start) as usize;
    let audio = render(&timeline, start, frames);
    let near = SR as usize / 100; // 10 ms either side
    let mut elsewhere = 0.0f32;
    let mut from = 1;
    for &b in &boundaries {
        elsewhere = elsewhere.max(max_step(&audio, from..b - near));
        from = b + near;
    }
    elsewhere = elsewhere.max(max_step(&audio, from..frames));
    assert!(elsewhere > 0.01, "the signal moves: {elsewhere}");
    for &b in &boundaries {
        let at = max_step(&audio, b - near..b + near);
        assert!(
            at <= elsewhere,
            "step {at} at the change at frame {b} exceeds the signal's own maximum {elsewhere}"
        );
    }
}

#[test]
fn same_seed_and_control_log_give_bit_identical_audio() {
    let base = MusicParams::from_seed(40);
    // The live path: render a block, maybe take a change, render the next block...
    let mut synth = Synth::new(Timeline::new(40, SR, base), BLOCK);
    // The log as a server keeps it: the initial entry, then every acknowledged change.
    let mut log: Vec<ControlEntry> = synth.timeline().log().collect();
    let start = 1_000 * SR as u64;
    let blocks = 400;
    let mut live = vec![0.0; blocks * BLOCK * CHANNELS];
    for (i, block) in live.chunks_mut(BLOCK * CHANNELS).enumerate() {
        let position = start + (i * BLOCK) as u64;
        if i % 70 == 35 {
            let params = MusicParams {
                bpm: 60.0 + i as f64 / 4.0,
                key: Key::new(i as u8),
                ..base
            };
            log.push(synth.schedule(params, position).expect("schedule"));
        }
        synth.render(position, block).expect("render");
    }
    assert!(log.len() >= 6, "{} entries", log.len());

    // Replay: the same log, rebuilt from JSON, rendered in different block sizes.
    let json = serde_json::to_string(&log).expect("serialise");
    let replayed_log: Vec<ControlEntry> = serde_json::from_str(&json).expect("parse");
    let replay = Timeline::from_log(40, SR, &replayed_log).expect("valid log");
    let mut synth = Synth::new(replay, 7_000);
    let mut replayed = Vec::with_capacity(live.len());
    let mut position = start;
    let end = start + (blocks * BLOCK) as u64;
    for size in [1_000usize, 6_999, 37, 4_800].into_iter().cycle() {
        if position >= end {
            break;
        }
        let frames = size.min((end - position) as usize);
        let mut out = vec![0.0; frames * CHANNELS];
        synth.render(position, &mut out).expect("render");
        replayed.extend(out);
        position += frames as u64;
    }
    assert!(live == replayed, "replay differs from the live render");
}

#[test]
fn every_preset_sounds_at_a_sane_level_without_clipping() {
    let mut problems = Vec::new();
    for preset in Preset::ALL {
        for seed in [1u64, 7, 42] {
            let timeline = Timeline::new(seed, SR, MusicParams::from_preset(seed, preset));
            let audio = render(&timeline, 7_200 * SR as u64, 30 * SR as usize);
            let peak = audio.iter().map(|s| f32_to_s16(*s).unsigned_abs()).max();
            let level = rms_dbfs(&audio);
            println!(
                "{} seed {seed}: {level:.1} dBFS RMS, peak {peak:?}",
                preset.name()
            );
            if peak >= Some(32_767) || !(-20.0..=-12.0).contains(&level) {
                problems.push(format!("{} seed {seed}", preset.name()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "clipping or level out of -20..-12 dBFS: {problems:?}"
    );
}
