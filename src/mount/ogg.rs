//! Ogg pages (RFC 3533), written once per chunk for every listener of a mount.
//!
//! Hand-written because the page sequence number must follow the stream position (so that every
//! listener, whenever it joined, gets the same bytes for a chunk and a skip shows as a gap);
//! the `ogg` crate's writer numbers pages from its own counter. The tests read the pages back
//! with that crate, which checks the CRC and the framing independently.

/// Header-type flag: the first page of a logical stream.
pub const BEGINNING_OF_STREAM: u8 = 0x02;

/// CRC-32 of Ogg: polynomial 0x04c11db7, not reflected, initial value 0, no final xor.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04c1_1db7
            } else {
                r << 1
            };
            bit += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
};

fn crc(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |crc, &b| {
        (crc << 8) ^ CRC_TABLE[(((crc >> 24) as u8) ^ b) as usize]
    })
}

/// Where a page sits in its logical stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageInfo {
    /// [`BEGINNING_OF_STREAM`] or 0.
    pub header_type: u8,
    pub granule: u64,
    pub serial: u32,
    pub sequence: u32,
}

/// A page would not hold the packets (more than 255 lacing values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} bytes of packets do not fit one Ogg page")]
pub struct PageOverflow(pub usize);

/// Appends one page holding `packets`, each complete (none continues on the next page).
///
/// # Errors
/// [`PageOverflow`] when the packets need more than 255 lacing values.
pub fn write_page(
    out: &mut Vec<u8>,
    info: PageInfo,
    packets: &[&[u8]],
) -> Result<(), PageOverflow> {
    let lacing: usize = packets.iter().map(|p| p.len() / 255 + 1).sum();
    let body: usize = packets.iter().map(|p| p.len()).sum();
    if lacing > 255 {
        return Err(PageOverflow(body));
    }
    let start = out.len();
    out.reserve(27 + lacing + body);
    out.extend_from_slice(b"OggS");
    out.push(0); // version
    out.push(info.header_type);
    out.extend_from_slice(&info.granule.to_le_bytes());
    out.extend_from_slice(&info.serial.to_le_bytes());
    out.extend_from_slice(&info.sequence.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled in below
    out.push(lacing as u8);
    for packet in packets {
        out.extend(std::iter::repeat_n(255u8, packet.len() / 255));
        out.push((packet.len() % 255) as u8);
    }
    for packet in packets {
        out.extend_from_slice(packet);
    }
    let checksum = crc(&out[start..]);
    out[start + 22..start + 26].copy_from_slice(&checksum.to_le_bytes());
    Ok(())
}

/// A page read back: its header fields, its packets (none continued), and its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadPage<'a> {
    pub info: PageInfo,
    pub packets: Vec<&'a [u8]>,
    pub len: usize,
}

/// Bytes that are not an Ogg page (lost sync, or a checksum that does not match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("no Ogg capture pattern where a page should start")]
    NoSync,
    #[error("Ogg page checksum mismatch")]
    Checksum,
}

/// Reads the page at the start of `bytes`: `Ok(None)` while it is not all there yet. A packet
/// continued on the next page is returned as its part on this one (mounts never continue one).
///
/// # Errors
/// [`PageError`] when `bytes` does not start with a valid page.
pub fn read_page(bytes: &[u8]) -> Result<Option<ReadPage<'_>>, PageError> {
    if bytes.iter().zip(b"OggS").any(|(a, b)| a != b) {
        return Err(PageError::NoSync);
    }
    if bytes.len() < 27 {
        return Ok(None);
    }
    let segments = bytes[26] as usize;
    let Some(lacing) = bytes.get(27..27 + segments) else {
        return Ok(None);
    };
    let len = 27 + segments + lacing.iter().map(|&l| l as usize).sum::<usize>();
    if bytes.len() < len {
        return Ok(None);
    }
    let mut copy = bytes[..len].to_vec();
    copy[22..26].fill(0);
    if crc(&copy).to_le_bytes() != bytes[22..26] {
        return Err(PageError::Checksum);
    }
    let field = |range: std::ops::Range<usize>| &bytes[range];
    let info = PageInfo {
        header_type: bytes[5],
        granule: u64::from_le_bytes(field(6..14).try_into().unwrap_or_default()),
        serial: u32::from_le_bytes(field(14..18).try_into().unwrap_or_default()),
        sequence: u32::from_le_bytes(field(18..22).try_into().unwrap_or_default()),
    };
    let mut packets = Vec::new();
    let mut start = 27 + segments;
    let mut end = start;
    for &l in lacing {
        end += l as usize;
        if l < 255 {
            packets.push(&bytes[start..end]);
            start = end;
        }
    }
    if start < end {
        packets.push(&bytes[start..end]);
    }
    Ok(Some(ReadPage { info, packets, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_read_back_with_an_independent_reader() {
        let long = vec![7u8; 600];
        let packets: [&[u8]; 3] = [b"first", &long, &[]];
        let mut bytes = Vec::new();
        let info = PageInfo {
            header_type: BEGINNING_OF_STREAM,
            granule: 4800,
            serial: 0xfeed,
            sequence: 0,
        };
        write_page(&mut bytes, info, &packets).unwrap();
        let next = PageInfo {
            header_type: 0,
            granule: 9600,
            sequence: 1,
            ..info
        };
        write_page(&mut bytes, next, &[b"second"]).unwrap();
        let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes));
        let mut read = Vec::new();
        while let Some(packet) = reader.read_packet().unwrap() {
            read.push((
                packet.data.clone(),
                packet.absgp_page(),
                packet.stream_serial(),
            ));
        }
        assert_eq!(read.len(), 4);
        assert_eq!(read[0].0, b"first");
        assert_eq!(read[1].0, long);
        assert!(read[2].0.is_empty());
        assert_eq!(read[3], (b"second".to_vec(), 9600, 0xfeed));
    }

    #[test]
    fn pages_are_read_back_whole_or_not_at_all() {
        let mut bytes = Vec::new();
        let info = PageInfo {
            header_type: 0,
            granule: 960,
            serial: 7,
            sequence: 3,
        };
        write_page(&mut bytes, info, &[b"one", b"two"]).unwrap();
        assert_eq!(read_page(&bytes[..bytes.len() - 1]), Ok(None));
        let page = read_page(&bytes).unwrap().unwrap();
        assert_eq!(page.info, info);
        assert_eq!(page.packets, [&b"one"[..], &b"two"[..]]);
        assert_eq!(page.len, bytes.len());
        bytes[30] ^= 0x40;
        assert_eq!(read_page(&bytes), Err(PageError::Checksum));
        assert_eq!(
            read_page(b"not an ogg page at all, no"),
            Err(PageError::NoSync)
        );
    }

    #[test]
    fn a_damaged_page_fails_its_checksum() {
        let mut bytes = Vec::new();
        let info = PageInfo {
            header_type: BEGINNING_OF_STREAM,
            granule: 0,
            serial: 1,
            sequence: 0,
        };
        write_page(&mut bytes, info, &[b"payload"]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes));
        assert!(reader.read_packet().is_err());
    }

    #[test]
    fn too_many_packets_for_one_page_are_refused() {
        let packet = [0u8; 10];
        let packets = vec![&packet[..]; 256];
        let mut bytes = Vec::new();
        let info = PageInfo {
            header_type: 0,
            granule: 0,
            serial: 1,
            sequence: 0,
        };
        assert!(write_page(&mut bytes, info, &packets).is_err());
        assert!(bytes.is_empty());
    }
}
