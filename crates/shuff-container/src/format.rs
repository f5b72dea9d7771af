//! The container's wire format (docs/FORMAT.md, "Container files"): preamble, segment headers,
//! index entries and trailer, and the checks every reader applies before it trusts a size.

use crate::ContainerError;

/// First 8 bytes of every container file.
pub const MAGIC: [u8; 8] = *b"SHUFFILE";
/// Format version written, and the only one read.
pub const VERSION: u32 = 1;
/// Magic of the index, which follows the last segment (a segment header never starts with it:
/// its first byte is a kind, and `S` is not one).
pub const INDEX_MAGIC: [u8; 8] = *b"SHUFIDX1";
/// Last 8 bytes of every container file.
pub const END_MAGIC: [u8; 8] = *b"SHUFFEND";
/// Magics of the two file formats this one replaced (shuff 0.1 `encode` and `compress`).
pub const OLD_MAGICS: [&[u8; 8]; 2] = [b"SHUFFST1", b"SHUFFMD1"];

/// Preamble: magic, version, flags.
pub const PREAMBLE_BYTES: u64 = 16;
/// Segment header: kind, 3 zero bytes, CRC-32 of the restored bytes, stored length, restored length.
pub const SEGMENT_HEADER_BYTES: u64 = 24;
/// Index entry: the segment header's offset, then a copy of the header.
pub const INDEX_ENTRY_BYTES: u64 = 8 + SEGMENT_HEADER_BYTES;
/// Trailer: index offset, segment count, restored length, restored CRC-32, index CRC-32, version,
/// flags, end magic.
pub const TRAILER_BYTES: u64 = 48;

/// The most bytes one data segment restores to. Writers cut tensors into segments of at most
/// this, so a reader's memory is bounded by it whatever a file claims.
pub const MAX_SEGMENT_BYTES: u64 = 64 << 20;
/// The most bytes of a stored safetensors header (safetensors' own limit is 100 MB).
pub const MAX_HEADER_SEGMENT_BYTES: u64 = 100 << 20;
/// The most bytes of an embedded codebook set (a set of 65,535 four-stream classes is ~34 MB).
pub const MAX_SET_SEGMENT_BYTES: u64 = 64 << 20;
/// A frame restores to at most this many times its size: every 64 KiB chunk costs at least 2
/// bytes (a mode byte and a constant symbol; see `FrameInfo::min_frame_len`).
pub const MAX_FRAME_EXPANSION: u64 = (shuff::frame::CHUNK_BYTES / 2) as u64;

/// A frame of [`MAX_SEGMENT_BYTES`] of data is at most this much larger than the data (header,
/// chunk table and per-chunk lane offsets: under 4 MiB even with 255 lanes).
pub const MAX_FRAME_OVERHEAD: u64 = MAX_SEGMENT_BYTES / 8;

/// Flag: the file embeds the codebook set its frames were coded with (`shuff compress`).
pub const FLAG_EMBEDDED_SET: u32 = 1;
/// Flags this version knows.
pub const KNOWN_FLAGS: u32 = FLAG_EMBEDDED_SET;

/// What a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentKind {
    /// Data bytes stored as they are.
    Raw,
    /// Data coded as one shuff frame (with its CRC-32).
    Frame,
    /// The original safetensors header (length prefix + JSON), stored as it is: the first part of
    /// the restored file.
    SafetensorsHeader,
    /// The codebook set, binary form (`SHCB`); not part of the restored file.
    CodebookSet,
}

impl SegmentKind {
    fn id(self) -> u8 {
        match self {
            SegmentKind::Raw => 0,
            SegmentKind::Frame => 1,
            SegmentKind::SafetensorsHeader => 2,
            SegmentKind::CodebookSet => 3,
        }
    }

    fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => SegmentKind::Raw,
            1 => SegmentKind::Frame,
            2 => SegmentKind::SafetensorsHeader,
            3 => SegmentKind::CodebookSet,
            _ => return None,
        })
    }

    /// Whether the segment's restored bytes are part of the restored file.
    pub fn restores(self) -> bool {
        self != SegmentKind::CodebookSet
    }
}

/// A segment's header, as stored before its bytes and in the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// What it holds.
    pub kind: SegmentKind,
    /// CRC-32 (IEEE) of the restored bytes.
    pub crc: u32,
    /// Bytes stored in the file after this header.
    pub stored_len: u64,
    /// Bytes it restores to.
    pub restored_len: u64,
}

impl SegmentHeader {
    /// The 24 bytes of the header.
    pub fn to_bytes(&self) -> [u8; SEGMENT_HEADER_BYTES as usize] {
        let mut b = [0u8; SEGMENT_HEADER_BYTES as usize];
        b[0] = self.kind.id();
        b[4..8].copy_from_slice(&self.crc.to_le_bytes());
        b[8..16].copy_from_slice(&self.stored_len.to_le_bytes());
        b[16..24].copy_from_slice(&self.restored_len.to_le_bytes());
        b
    }

    /// Parses a header and checks what can be checked without the bytes it describes: a known
    /// kind, zero padding, and lengths within the kind's bounds.
    pub fn parse(b: &[u8; SEGMENT_HEADER_BYTES as usize], segment: u64) -> Result<Self, ContainerError> {
        let bad = |what: String| ContainerError::BadSegment { segment, what };
        let kind = SegmentKind::from_id(b[0]).ok_or_else(|| bad(format!("unknown kind {}", b[0])))?;
        if b[1..4] != [0, 0, 0] {
            return Err(bad("reserved bytes are not zero".into()));
        }
        let h = SegmentHeader { kind, crc: u32_at(b, 4), stored_len: u64_at(b, 8), restored_len: u64_at(b, 16) };
        let limit = match kind {
            SegmentKind::Raw | SegmentKind::Frame => MAX_SEGMENT_BYTES,
            SegmentKind::SafetensorsHeader => MAX_HEADER_SEGMENT_BYTES,
            SegmentKind::CodebookSet => MAX_SET_SEGMENT_BYTES,
        };
        if h.restored_len > limit {
            return Err(bad(format!("restores to {} bytes, more than the {limit} a segment may", h.restored_len)));
        }
        match kind {
            SegmentKind::Frame => {
                if h.restored_len > h.stored_len.saturating_mul(MAX_FRAME_EXPANSION) {
                    return Err(bad(format!("a frame of {} bytes cannot restore to {}", h.stored_len, h.restored_len)));
                }
                // Chunks that do not shrink are stored raw, so a frame is never much larger than
                // its data: this bounds what a reader reads for one segment.
                if h.stored_len > MAX_SEGMENT_BYTES + MAX_FRAME_OVERHEAD {
                    return Err(bad(format!("a frame of {} bytes is larger than any segment's frame can be", h.stored_len)));
                }
            }
            _ if h.stored_len != h.restored_len => {
                return Err(bad(format!("stored as is, but {} bytes restore to {}", h.stored_len, h.restored_len)));
            }
            _ => {}
        }
        Ok(h)
    }
}

/// The last [`TRAILER_BYTES`] of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// Where the index starts (its magic).
    pub index_offset: u64,
    /// Number of segments.
    pub segments: u64,
    /// Bytes of the restored file.
    pub restored_len: u64,
    /// CRC-32 of the restored file.
    pub restored_crc: u32,
    /// CRC-32 of the index (magic and entries).
    pub index_crc: u32,
    /// Flags (`FLAG_*`).
    pub flags: u32,
}

impl Trailer {
    /// The trailer's bytes.
    pub fn to_bytes(&self) -> [u8; TRAILER_BYTES as usize] {
        let mut b = [0u8; TRAILER_BYTES as usize];
        b[0..8].copy_from_slice(&self.index_offset.to_le_bytes());
        b[8..16].copy_from_slice(&self.segments.to_le_bytes());
        b[16..24].copy_from_slice(&self.restored_len.to_le_bytes());
        b[24..28].copy_from_slice(&self.restored_crc.to_le_bytes());
        b[28..32].copy_from_slice(&self.index_crc.to_le_bytes());
        b[32..36].copy_from_slice(&VERSION.to_le_bytes());
        b[36..40].copy_from_slice(&self.flags.to_le_bytes());
        b[40..48].copy_from_slice(&END_MAGIC);
        b
    }

    /// Parses the trailer of a file of `file_len` bytes and checks that the index it points to
    /// fills exactly the bytes between the segments and the trailer.
    pub fn parse(b: &[u8; TRAILER_BYTES as usize], file_len: u64) -> Result<Self, ContainerError> {
        if b[40..48] != END_MAGIC {
            return Err(ContainerError::Truncated("the file does not end with the container's end magic (cut short?)".into()));
        }
        let version = u32_at(b, 32);
        if version != VERSION {
            return Err(ContainerError::Version(format!("container version {version}; this shuff reads version {VERSION}")));
        }
        let t = Trailer {
            index_offset: u64_at(b, 0),
            segments: u64_at(b, 8),
            restored_len: u64_at(b, 16),
            restored_crc: u32_at(b, 24),
            index_crc: u32_at(b, 28),
            flags: u32_at(b, 36),
        };
        if t.flags & !KNOWN_FLAGS != 0 {
            return Err(ContainerError::Version(format!("unknown flags {:#x}", t.flags & !KNOWN_FLAGS)));
        }
        let index_len = t
            .segments
            .checked_mul(INDEX_ENTRY_BYTES)
            .and_then(|n| n.checked_add(INDEX_MAGIC.len() as u64))
            .ok_or_else(|| ContainerError::BadIndex(format!("{} segments cannot be indexed", t.segments)))?;
        let expected_end = t.index_offset.checked_add(index_len).and_then(|n| n.checked_add(TRAILER_BYTES));
        if t.index_offset < PREAMBLE_BYTES || expected_end != Some(file_len) {
            return Err(ContainerError::BadIndex(format!(
                "the trailer puts an index of {} segments at byte {}, which does not fit a file of {file_len} bytes",
                t.segments, t.index_offset
            )));
        }
        Ok(t)
    }
}

/// Checks the 16-byte preamble and returns its flags.
pub fn parse_preamble(b: &[u8]) -> Result<u32, ContainerError> {
    let magic = b.get(..8).ok_or_else(|| ContainerError::Truncated("shorter than the container's preamble".into()))?;
    if OLD_MAGICS.iter().any(|m| magic == &m[..]) {
        return Err(ContainerError::Version(format!(
            "written by shuff 0.1 (format {}), which this version no longer reads; restore it with shuff 0.1 and compress it again",
            String::from_utf8_lossy(magic)
        )));
    }
    if magic != MAGIC {
        return Err(ContainerError::NotAContainer);
    }
    let b = b.get(..PREAMBLE_BYTES as usize).ok_or_else(|| ContainerError::Truncated("shorter than the container's preamble".into()))?;
    let version = u32_at(b, 8);
    if version != VERSION {
        return Err(ContainerError::Version(format!("container version {version}; this shuff reads version {VERSION}")));
    }
    Ok(u32_at(b, 12))
}

/// The preamble's bytes.
pub fn preamble(flags: u32) -> [u8; PREAMBLE_BYTES as usize] {
    let mut b = [0u8; PREAMBLE_BYTES as usize];
    b[..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&flags.to_le_bytes());
    b
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
