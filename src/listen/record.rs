//! Writes what the device played to a WAV file, off the audio thread: the callback copies
//! samples into a ring (never blocking), and this thread drains it to disk.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rtrb::{Consumer, Producer, RingBuffer};

use super::ListenError;

/// A running recorder; [`Recorder::finish`] flushes and closes the file.
pub struct Recorder {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<u64, String>>,
}

impl Recorder {
    /// Creates `path` (16-bit WAV, `rate` Hz, `channels`) and returns the ring the callback
    /// writes played samples into (`seconds` of slack before samples are dropped).
    pub fn start(
        path: &Path,
        rate: u32,
        channels: u16,
        seconds: u32,
    ) -> Result<(Self, Producer<f32>), ListenError> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| ListenError::Record {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let capacity = rate as usize * usize::from(channels) * seconds.max(1) as usize;
        let (producer, consumer) = RingBuffer::new(capacity);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("auralis-record".into())
            .spawn(move || drain(writer, consumer, &thread_stop))
            .map_err(|e| ListenError::Record {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok((Self { stop, thread }, producer))
    }

    /// Writes what is left and closes the file; returns the samples written.
    pub fn finish(self) -> Result<u64, String> {
        self.stop.store(true, Ordering::Release);
        self.thread
            .join()
            .map_err(|_| "the recorder thread panicked".to_string())?
    }
}

fn drain(
    mut writer: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
    mut consumer: Consumer<f32>,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let mut written = 0u64;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let available = consumer.slots();
        if available > 0 {
            let chunk = consumer.read_chunk(available).map_err(|e| e.to_string())?;
            let (first, second) = chunk.as_slices();
            for &sample in first.iter().chain(second) {
                writer
                    .write_sample(to_i16(sample))
                    .map_err(|e| e.to_string())?;
            }
            chunk.commit_all();
            written += available as u64;
        } else if stopping {
            break;
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    writer.finalize().map_err(|e| e.to_string())?;
    Ok(written)
}

/// f32 in −1..1 to i16; exact for samples that came from i16 (x / 32768).
pub fn to_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_samples_round_trip_exactly() {
        let dir = std::env::temp_dir().join(format!("auralis-record-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("played.wav");
        let (recorder, mut ring) = Recorder::start(&path, 48_000, 2, 1).unwrap();
        let samples: Vec<i16> = (0..9600)
            .map(|i| (i * 7 % 65_536 - 32_768) as i16)
            .collect();
        for &s in &samples {
            ring.push(f32::from(s) / 32768.0).unwrap();
        }
        assert_eq!(recorder.finish().unwrap(), 9600);
        let read: Vec<i16> = hound::WavReader::open(&path)
            .unwrap()
            .into_samples::<i16>()
            .map(Result::unwrap)
            .collect();
        assert_eq!(read, samples);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
