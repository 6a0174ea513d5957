//! HTTP mounts: a station as a plain live file that standard players open (VLC, mpv, ffplay,
//! an HTML `<audio>` element, smart speakers), the way Icecast serves them.
//!
//! - `/stations/{name}.opus`: Ogg Opus (RFC 7845), one page per chunk;
//! - `/stations/{name}.flac`: native FLAC (RFC 9639): `fLaC`, STREAMINFO, then frames. Native
//!   rather than Ogg FLAC because every FLAC decoder reads it (Ogg FLAC is an optional mapping
//!   that some players, browsers among them, do not support) and a FLAC frame already carries its
//!   own sync code, sample number and CRC, so a joiner needs no extra framing.
//!
//! The pacer builds each chunk's mount bytes once ([`MountPages::build`]) from the payloads it
//! already encoded; every listener of a mount gets the same bytes. Only the header a joiner gets
//! first ([`Mount::prelude`]) is made per listener, once.

pub mod ogg;
pub mod serve;

use bytes::Bytes;

use crate::codec::decode::packets;
use crate::codec::{Codec, CodecSetup};
use crate::stream::protocol::CodecFrames;

/// A mount's format, from the file extension a player asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mount {
    OggOpus,
    Flac,
}

impl Mount {
    pub const ALL: [Mount; 2] = [Mount::OggOpus, Mount::Flac];
    pub const COUNT: usize = 2;

    /// The mount for a file name's extension (`opus`, `flac`).
    pub fn from_extension(extension: &str) -> Option<Self> {
        match extension {
            "opus" => Some(Mount::OggOpus),
            "flac" => Some(Mount::Flac),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Mount::OggOpus => "opus",
            Mount::Flac => "flac",
        }
    }

    /// The station codec whose payloads the mount carries.
    pub fn codec(self) -> Codec {
        match self {
            Mount::OggOpus => Codec::Opus,
            Mount::Flac => Codec::Flac,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Mount::OggOpus => "audio/ogg; codecs=opus",
            Mount::Flac => "audio/flac",
        }
    }

    fn index(self) -> usize {
        match self {
            Mount::OggOpus => 0,
            Mount::Flac => 1,
        }
    }

    /// What a joiner gets before its first chunk: Opus's identification and comment header
    /// pages, numbered 0 and 1 as a stream's first pages are (libogg-based players, VLC among
    /// them, expect a beginning-of-stream page to be page 0; Icecast replays its headers the same
    /// way); FLAC's `fLaC` marker and STREAMINFO.
    pub fn prelude(self, stream: &MountStream, setup: &CodecSetup) -> Vec<u8> {
        match self {
            Mount::Flac => setup.setup.clone(),
            Mount::OggOpus => {
                let mut out = Vec::with_capacity(160);
                let head = ogg::PageInfo {
                    header_type: ogg::BEGINNING_OF_STREAM,
                    granule: 0,
                    serial: stream.serial,
                    sequence: 0,
                };
                let tags = ogg::PageInfo {
                    header_type: 0,
                    sequence: 1,
                    ..head
                };
                // Both headers are far below a page's limit.
                let _ = ogg::write_page(&mut out, head, &[&setup.setup]);
                let _ = ogg::write_page(&mut out, tags, &[&opus_tags(&stream.title)]);
                out
            }
        }
    }
}

/// The page sequence number of the chunk with this stream sequence: two after it, as the two
/// header pages come first (a joiner sees one jump, after the headers, as from Icecast). It wraps with the 32-bit field (after 13 years of 100 ms chunks).
fn page_sequence(sequence: u64) -> u32 {
    (sequence.wrapping_add(2) & u64::from(u32::MAX)) as u32
}

/// What every page of a station's Ogg stream shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountStream {
    /// The Ogg serial number: from the station and its epoch, so instances of one station with
    /// one history agree and a new history is a new logical stream.
    pub serial: u32,
    /// The station's name, as the `TITLE` comment.
    pub title: String,
    /// Opus granule positions count at 48 kHz whatever the input rate.
    pub granule_per_frame: u64,
    pub frames_per_chunk: u64,
}

impl MountStream {
    pub fn new(station: &str, epoch: &str, sample_rate: u32, frames_per_chunk: u32) -> Self {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(station.as_bytes());
        hasher.update(&[0]);
        hasher.update(epoch.as_bytes());
        Self {
            serial: hasher.finalize(),
            title: station.to_string(),
            granule_per_frame: u64::from(48_000 / sample_rate.clamp(1, 48_000)),
            frames_per_chunk: u64::from(frames_per_chunk),
        }
    }
}

/// The OpusTags comment header (RFC 7845, section 5.2).
fn opus_tags(title: &str) -> Vec<u8> {
    let vendor = concat!("auralis ", env!("CARGO_PKG_VERSION"));
    let comment = format!("TITLE={title}");
    let mut tags = Vec::with_capacity(24 + vendor.len() + comment.len());
    tags.extend_from_slice(b"OpusTags");
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor.as_bytes());
    tags.extend_from_slice(&1u32.to_le_bytes());
    tags.extend_from_slice(&(comment.len() as u32).to_le_bytes());
    tags.extend_from_slice(comment.as_bytes());
    tags
}

/// One chunk's bytes for each mount, shared by every listener of it.
#[derive(Clone, Debug, Default)]
pub struct MountPages([Option<Bytes>; Mount::COUNT]);

impl MountPages {
    /// The mounts' bytes for the chunk `sequence` at `position`, from the codec payloads of
    /// `frames` (each a frame header followed by length-prefixed packets). A mount whose codec
    /// the station does not offer, or whose payload is damaged, is left out: its listeners see a
    /// gap, as WebSocket listeners of that codec do.
    pub fn build(stream: &MountStream, sequence: u64, position: u64, frames: &CodecFrames) -> Self {
        let mut pages = MountPages::default();
        for mount in Mount::ALL {
            let Some(frame) = frames.get(mount.codec()) else {
                continue;
            };
            let Ok((_, payload)) = crate::stream::protocol::FrameHeader::decode(frame) else {
                continue;
            };
            let Ok(packets) = packets(payload) else {
                continue;
            };
            let mut out = Vec::with_capacity(payload.len() + 64);
            match mount {
                Mount::OggOpus => {
                    let info = ogg::PageInfo {
                        header_type: 0,
                        granule: (position + stream.frames_per_chunk) * stream.granule_per_frame,
                        serial: stream.serial,
                        sequence: page_sequence(sequence),
                    };
                    if ogg::write_page(&mut out, info, &packets).is_err() {
                        continue;
                    }
                }
                Mount::Flac => {
                    for packet in packets {
                        out.extend_from_slice(packet);
                    }
                }
            }
            pages.0[mount.index()] = Some(Bytes::from(out));
        }
        pages
    }

    /// The chunk's bytes for `mount`, if it was built.
    pub fn get(&self, mount: Mount) -> Option<&Bytes> {
        self.0[mount.index()].as_ref()
    }

    /// Bytes over all mounts (for memory accounting).
    pub fn total_len(&self) -> usize {
        self.0.iter().flatten().map(Bytes::len).sum()
    }
}
