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
