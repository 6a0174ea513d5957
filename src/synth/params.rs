//! The musical parameters of a station, the named presets, and validated partial changes.
//!
//! A [`ParamChange`] is what a control message or `POST /api/stations/{name}/control` asks for.
//! Parsing checks every field before anything is applied, so a change is either applied whole or
//! refused with the name of the offending field: never half-applied.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::hash::hash;

/// Lowest and highest tempo a station accepts.
pub const BPM_RANGE: (f64, f64) = (40.0, 200.0);

/// Diatonic modes the composer can write in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Major,
    Minor,
    Dorian,
    Mixolydian,
    Lydian,
    Phrygian,
}

impl Mode {
    pub const ALL: [Mode; 6] = [
        Mode::Major,
        Mode::Minor,
        Mode::Dorian,
        Mode::Mixolydian,
        Mode::Lydian,
        Mode::Phrygian,
    ];

    /// Scale degrees in semitones above the key root.
    pub fn intervals(self) -> [i32; 7] {
        match self {
            Mode::Major => [0, 2, 4, 5, 7, 9, 11],
            Mode::Minor => [0, 2, 3, 5, 7, 8, 10],
            Mode::Dorian => [0, 2, 3, 5, 7, 9, 10],
            Mode::Mixolydian => [0, 2, 4, 5, 7, 9, 10],
            Mode::Lydian => [0, 2, 4, 6, 7, 9, 11],
            Mode::Phrygian => [0, 1, 3, 5, 7, 8, 10],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Major => "major",
            Mode::Minor => "minor",
            Mode::Dorian => "dorian",
            Mode::Mixolydian => "mixolydian",
            Mode::Lydian => "lydian",
            Mode::Phrygian => "phrygian",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// A key root as a pitch class (0 = C), written with sharps on the wire ("F#").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key(u8);

const KEY_NAMES: [&str; 12] = [
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
];

impl Key {
    /// The key with pitch class `pitch_class % 12`.
    pub fn new(pitch_class: u8) -> Self {
        Key(pitch_class % 12)
    }

    pub fn pitch_class(self) -> u8 {
        self.0
    }

    pub fn name(self) -> &'static str {
        KEY_NAMES[self.0 as usize]
    }

    /// Parses "C", "c#", "Db", "F♯" and friends.
    pub fn parse(text: &str) -> Option<Self> {
        let mut chars = text.trim().chars();
        let letter = chars.next()?.to_ascii_uppercase();
        let natural: i32 = match letter {
            'C' => 0,
            'D' => 2,
            'E' => 4,
            'F' => 5,
            'G' => 7,
            'A' => 9,
            'B' => 11,
            _ => return None,
        };
        let accidental = match chars.as_str() {
            "" => 0,
            "#" | "♯" | "s" | "sharp" => 1,
            "b" | "♭" | "flat" => -1,
            _ => return None,
        };
        Some(Key(((natural + accidental).rem_euclid(12)) as u8))
    }
}

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Key::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("unknown key {text:?}")))
    }
}

/// Which layers of the arrangement sound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layers {
    /// Sustained chords and the bass note.
    pub pads: bool,
    /// The lead melody.
    pub melody: bool,
    /// Kick drum.
    pub kicks: bool,
    /// Closed hi-hat.
    pub hats: bool,
    /// Noise swells rising into each section boundary.
    pub swells: bool,
}

impl Layers {
    pub const NAMES: [&'static str; 5] = ["pads", "melody", "kicks", "hats", "swells"];

    pub const ALL_ON: Layers = Layers {
        pads: true,
        melody: true,
        kicks: true,
        hats: true,
        swells: true,
    };

    fn get_mut(&mut self, name: &str) -> Option<&mut bool> {
        match name {
            "pads" => Some(&mut self.pads),
            "melody" => Some(&mut self.melody),
            "kicks" => Some(&mut self.kicks),
            "hats" => Some(&mut self.hats),
            "swells" => Some(&mut self.swells),
            _ => None,
        }
    }
}

/// Everything about a station's music that can change live. The seed stays fixed; these steer it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MusicParams {
    pub key: Key,
    pub mode: Mode,
    /// Tempo, 40..=200 beats per minute; the eighth note is rounded to whole frames.
    pub bpm: f64,
    /// 0..1: percussion density and drive (sparse pulse at 0, driving eighths at 1).
    pub intensity: f32,
    pub layers: Layers,
    /// 0..1: fewer rests, more movement and less literal repetition in the melody.
    pub melody_complexity: f32,
    /// 0..1: how freely the chord Markov chain leaves functional harmony, and how rarely sections
    /// repeat their progression.
    pub chord_variety: f32,
    /// 0..1: chord extensions (triads, sevenths, ninths) and harmonic rhythm.
    pub harmonic_density: f32,
    /// 0..1: output gain after the soft clipper.
    pub master_gain: f32,
}

impl MusicParams {
    /// The parameters a seed implies when nobody has chosen any: the `focus` preset in a key,
    /// mode and tempo the seed picks.
    pub fn from_seed(seed: u64) -> Self {
        let h = hash(seed, SALT_PARAMS, 0);
        let mut params = Preset::Focus.params(Key::new((h % 12) as u8));
        params.mode =
            [Mode::Major, Mode::Minor, Mode::Dorian, Mode::Mixolydian][((h >> 8) % 4) as usize];
        params.bpm = 72.0 + ((h >> 16) % 21) as f64;
        params
    }

    /// The parameters of `preset` for a station with this seed (key from the seed).
    pub fn from_preset(seed: u64, preset: Preset) -> Self {
        let from_seed = Self::from_seed(seed);
        let mut params = preset.params(from_seed.key);
        if preset.mode().is_none() {
            params.mode = from_seed.mode;
        }
        params
    }
}

const SALT_PARAMS: u64 = 0x5041_5241;

/// Named starting points, selectable in config and by control messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Slow, open pads and a sparse melody; no drums.
    Ambient,
    /// Steady and unobtrusive: soft kick, light hats, a calm melody.
    Focus,
    /// Driving: four-on-the-floor kick, busy hats, an active melody.
    Pulse,
    /// Dark and warm: minor, rich chords, a slow heartbeat kick.
    Night,
}

impl Preset {
    pub const ALL: [Preset; 4] = [Preset::Ambient, Preset::Focus, Preset::Pulse, Preset::Night];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Ambient => "ambient",
            Preset::Focus => "focus",
            Preset::Pulse => "pulse",
            Preset::Night => "night",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// The mode this preset insists on, if any (otherwise the station keeps its own).
    pub fn mode(self) -> Option<Mode> {
        match self {
            Preset::Night => Some(Mode::Minor),
            _ => None,
        }
    }

    /// The preset's parameters in `key` (mode: its own, or major).
    pub fn params(self, key: Key) -> MusicParams {
        let mode = self.mode().unwrap_or(Mode::Major);
        match self {
            Preset::Ambient => MusicParams {
                key,
                mode,
                bpm: 64.0,
                intensity: 0.15,
                layers: Layers {
                    kicks: false,
                    hats: false,
                    ..Layers::ALL_ON
                },
                melody_complexity: 0.25,
                chord_variety: 0.3,
                harmonic_density: 0.8,
                master_gain: 0.95,
            },
            Preset::Focus => MusicParams {
                key,
                mode,
                bpm: 84.0,
                intensity: 0.4,
                layers: Layers::ALL_ON,
                melody_complexity: 0.45,
                chord_variety: 0.35,
                harmonic_density: 0.5,
                master_gain: 0.9,
            },
            Preset::Pulse => MusicParams {
                key,
                mode,
                bpm: 120.0,
                intensity: 0.9,
                layers: Layers::ALL_ON,
                melody_complexity: 0.65,
                chord_variety: 0.5,
                harmonic_density: 0.35,
                master_gain: 0.85,
            },
            Preset::Night => MusicParams {
                key,
                mode,
                bpm: 70.0,
                intensity: 0.3,
                layers: Layers {
                    hats: false,
                    ..Layers::ALL_ON
                },
                melody_complexity: 0.35,
                chord_variety: 0.25,
                harmonic_density: 0.9,
                master_gain: 0.9,
            },
        }
    }
}

/// A requested change is invalid; `field` names the offending field (dotted for layers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ParamError {
    pub field: String,
    pub message: String,
}

impl ParamError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A validated partial change: a preset to start from (optional) and fields to override.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamChange {
    pub preset: Option<Preset>,
    pub key: Option<Key>,
    pub mode: Option<Mode>,
    pub bpm: Option<f64>,
    pub intensity: Option<f32>,
    /// Per-layer overrides, in [`Layers::NAMES`] order.
    pub layers: [Option<bool>; 5],
    pub melody_complexity: Option<f32>,
    pub chord_variety: Option<f32>,
    pub harmonic_density: Option<f32>,
    pub master_gain: Option<f32>,
}

/// Fields a change may carry, for error messages.
pub const CHANGE_FIELDS: [&str; 10] = [
    "preset",
    "key",
    "mode",
    "bpm",
    "intensity",
    "layers",
    "melody_complexity",
    "chord_variety",
    "harmonic_density",
    "master_gain",
];

impl ParamChange {
    /// Parses and validates a change from a JSON object. Every field is checked before the change
    /// exists, so a change that parses can always be applied whole.
    ///
    /// # Errors
    /// [`ParamError`] naming the first unknown, mistyped or out-of-range field, or `params` when
    /// the object asks for nothing.
    ///
    /// # Examples
    /// ```
    /// use auralis::synth::params::{MusicParams, ParamChange};
    ///
    /// let body = serde_json::json!({"bpm": 120, "key": "D", "layers": {"kicks": false}});
    /// let change = ParamChange::from_json(body.as_object().unwrap())?;
    /// let params = change.apply(&MusicParams::from_seed(1));
    /// assert_eq!((params.bpm, params.key.name(), params.layers.kicks), (120.0, "D", false));
    ///
    /// let bad = serde_json::json!({"bpm": 500});
    /// let error = ParamChange::from_json(bad.as_object().unwrap()).unwrap_err();
    /// assert_eq!(error.field, "bpm");
    /// # Ok::<(), auralis::synth::params::ParamError>(())
    /// ```
    pub fn from_json(object: &Map<String, Value>) -> Result<Self, ParamError> {
        let mut change = ParamChange::default();
        for (field, value) in object {
            match field.as_str() {
                "preset" => {
                    let name = value
                        .as_str()
                        .ok_or_else(|| ParamError::new(field, "expected a preset name"))?;
                    change.preset = Some(Preset::parse(name).ok_or_else(|| {
                        ParamError::new(
                            field,
                            format!(
                                "unknown preset {:?}; one of {}",
                                shorten(name),
                                Preset::ALL.map(Preset::name).join(", ")
                            ),
                        )
                    })?);
                }
                "key" => {
                    change.key = Some(match value {
                        Value::String(name) => Key::parse(name).ok_or_else(|| {
                            ParamError::new(
                                field,
                                format!("unknown key {:?}; use C, C#, Db ... B", shorten(name)),
                            )
                        })?,
                        Value::Number(n) => match n.as_u64() {
                            Some(pc) if pc < 12 => Key::new(pc as u8),
                            _ => return Err(ParamError::new(field, "pitch class must be 0..11")),
                        },
                        _ => return Err(ParamError::new(field, "expected a key name like \"F#\"")),
                    });
                }
                "mode" => {
                    let name = value
                        .as_str()
                        .ok_or_else(|| ParamError::new(field, "expected a mode name"))?;
                    change.mode = Some(Mode::parse(name).ok_or_else(|| {
                        ParamError::new(
                            field,
                            format!(
                                "unknown mode {:?}; one of {}",
                                shorten(name),
                                Mode::ALL.map(Mode::name).join(", ")
                            ),
                        )
                    })?);
                }
                "bpm" => change.bpm = Some(number_in(field, value, BPM_RANGE)?),
                "intensity" => change.intensity = Some(unit(field, value)?),
                "melody_complexity" => change.melody_complexity = Some(unit(field, value)?),
                "chord_variety" => change.chord_variety = Some(unit(field, value)?),
                "harmonic_density" => change.harmonic_density = Some(unit(field, value)?),
                "master_gain" => change.master_gain = Some(unit(field, value)?),
                "layers" => {
                    let layers = value.as_object().ok_or_else(|| {
                        ParamError::new(field, "expected an object like {\"kicks\": false}")
                    })?;
                    for (layer, on) in layers {
                        let index =
                            Layers::NAMES
                                .iter()
                                .position(|n| n == layer)
                                .ok_or_else(|| {
                                    ParamError::new(
                                        format!("layers.{}", shorten(layer)),
                                        format!(
                                            "unknown layer; one of {}",
                                            Layers::NAMES.join(", ")
                                        ),
                                    )
                                })?;
                        let on = on.as_bool().ok_or_else(|| {
                            ParamError::new(format!("layers.{layer}"), "expected true or false")
                        })?;
                        change.layers[index] = Some(on);
                    }
                }
                other => {
                    return Err(ParamError::new(
                        shorten(other),
                        format!("unknown parameter; one of {}", CHANGE_FIELDS.join(", ")),
                    ))
                }
            }
        }
        if change == ParamChange::default() {
            return Err(ParamError::new(
                "params",
                format!(
                    "no parameters given; use any of {}",
                    CHANGE_FIELDS.join(", ")
                ),
            ));
        }
        Ok(change)
    }

    /// The parameters after this change: the preset (if any) in the current key, then each field.
    pub fn apply(&self, current: &MusicParams) -> MusicParams {
        let mut next = match self.preset {
            Some(preset) => {
                let mut params = preset.params(current.key);
                params.mode = preset.mode().unwrap_or(current.mode);
                params
            }
            None => *current,
        };
        if let Some(key) = self.key {
            next.key = key;
        }
        if let Some(mode) = self.mode {
            next.mode = mode;
        }
        if let Some(bpm) = self.bpm {
            next.bpm = bpm;
        }
        if let Some(v) = self.intensity {
            next.intensity = v;
        }
        for (name, on) in Layers::NAMES.iter().zip(self.layers) {
            if let (Some(on), Some(slot)) = (on, next.layers.get_mut(name)) {
                *slot = on;
            }
        }
        if let Some(v) = self.melody_complexity {
            next.melody_complexity = v;
        }
        if let Some(v) = self.chord_variety {
            next.chord_variety = v;
        }
        if let Some(v) = self.harmonic_density {
            next.harmonic_density = v;
        }
        if let Some(v) = self.master_gain {
            next.master_gain = v;
        }
        next
    }
}

/// At most 32 characters of client-supplied text, for error messages.
fn shorten(text: &str) -> String {
    let mut shown: String = text.chars().take(32).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

fn number_in(field: &str, value: &Value, (low, high): (f64, f64)) -> Result<f64, ParamError> {
    let n = value
        .as_f64()
        .ok_or_else(|| ParamError::new(field, "expected a number"))?;
    if !(low..=high).contains(&n) {
        return Err(ParamError::new(
            field,
            format!("must be between {low} and {high} (got {n})"),
        ));
    }
    Ok(n)
}

fn unit(field: &str, value: &Value) -> Result<f32, ParamError> {
    number_in(field, value, (0.0, 1.0)).map(|v| v as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<ParamChange, ParamError> {
        ParamChange::from_json(value.as_object().unwrap())
    }

    #[test]
    fn keys_parse_in_every_spelling() {
        assert_eq!(Key::parse("C").unwrap().pitch_class(), 0);
        assert_eq!(Key::parse("f#").unwrap().name(), "F#");
        assert_eq!(Key::parse("Gb").unwrap().name(), "F#");
        assert_eq!(Key::parse("Cb").unwrap().name(), "B");
        assert_eq!(Key::parse("H"), None);
        assert_eq!(Key::parse("C##"), None);
        assert_eq!(Key::parse(""), None);
    }

    #[test]
    fn every_error_names_its_field() {
        let cases = [
            (json!({"bpm": 39}), "bpm"),
            (json!({"bpm": "fast"}), "bpm"),
            (json!({"intensity": 1.5}), "intensity"),
            (json!({"master_gain": -0.1}), "master_gain"),
            (json!({"key": "H"}), "key"),
            (json!({"key": 12}), "key"),
            (json!({"mode": "locrian"}), "mode"),
            (json!({"preset": "disco"}), "preset"),
            (json!({"layers": {"cowbell": true}}), "layers.cowbell"),
            (json!({"layers": {"kicks": "off"}}), "layers.kicks"),
            (json!({"layers": []}), "layers"),
            (json!({"tempo": 100}), "tempo"),
            (json!({}), "params"),
        ];
        for (body, field) in cases {
            let error = parse(body.clone()).unwrap_err();
            assert_eq!(error.field, field, "{body}: {error}");
        }
    }

    #[test]
    fn a_change_with_one_bad_field_is_refused_whole() {
        // The valid bpm must not sneak through next to the invalid key.
        assert!(parse(json!({"bpm": 120, "key": "X"})).is_err());
    }

    #[test]
    fn presets_apply_then_fields_override() {
        let current = MusicParams::from_seed(3);
        let change = parse(json!({"preset": "pulse", "bpm": 128})).unwrap();
        let next = change.apply(&current);
        assert_eq!(next.bpm, 128.0);
        assert_eq!(next.intensity, Preset::Pulse.params(current.key).intensity);
        assert_eq!(next.key, current.key, "a preset keeps the station's key");
        assert_eq!(next.mode, current.mode, "pulse keeps the station's mode");
        let night = parse(json!({"preset": "night"})).unwrap().apply(&current);
        assert_eq!(night.mode, Mode::Minor);
    }

    #[test]
    fn params_round_trip_through_json() {
        let params = MusicParams::from_preset(9, Preset::Ambient);
        let text = serde_json::to_string(&params).unwrap();
        let back: MusicParams = serde_json::from_str(&text).unwrap();
        assert_eq!(back, params);
        assert!(text.contains("\"key\":\""));
    }
}
