//! Frames: one compressed message each. Specified byte by byte in `docs/FORMAT.md`; this module
//! is the single place that reads and writes their headers. Version 2 is written; version 1 (the
//! same chunks with four lanes, and no family members) is still read.

use crate::codebook::Fingerprint;
use crate::layout::Layout;
use crate::DType;

/// First two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"Sh";
/// The frame format version this library writes.
pub const VERSION: u8 = 2;
/// The oldest frame format version this library reads.
pub const OLDEST_VERSION: u8 = 1;
/// Tensor bytes per chunk. Chunks are coded independently (and in parallel).
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Independent bitstreams ("lanes") per coded stream per chunk that the CPU encoder writes by
/// default: four dependency chains for the decoder to overlap. Version 1 frames always have four.
pub const LANES: usize = 4;
/// The most lanes a frame may have per coded stream (the header stores the count in one byte).
pub const MAX_LANES: usize = 255;
/// The most members a codebook family may have (a member index is 4 bits per stream).
pub const MAX_MEMBERS: usize = 16;
/// Most symbol streams of any dtype and layout (f32 planes).
pub const MAX_STREAMS: usize = 4;
/// Largest header: magic 2 + version 1 + descriptor 1 + varint count ≤ 10 + lanes 1 + members ≤ 2
/// + fingerprint 4 + checksum 4.
pub const MAX_HEADER_BYTES: usize = 25;

const FLAG_CHECKSUM: u8 = 1 << 5;
const FLAG_THREE_STAGE: u8 = 1 << 6;
const FLAG_RESERVED: u8 = 1 << 7;

/// How one stream of one chunk is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamMode {
    /// The frame's number of lanes of Huffman-coded bits.
    Coded = 0,
    /// The symbols as they are (coding would not shrink them).
    Raw = 1,
    /// One symbol repeated for the whole chunk.
    Constant = 2,
}

/// Why a frame could not be decoded. Decoders return these and never panic, whatever the bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame ends before a structure it announces.
    #[error("truncated frame: {0}")]
    Truncated(&'static str),
    /// Not a shuff frame.
    #[error("not a shuff frame (bad magic bytes {0:02x?})")]
    BadMagic([u8; 2]),
    /// A frame of a format version this library does not read.
    #[error("frame format version {0} is not supported (this shuff reads versions {OLDEST_VERSION} to {VERSION})")]
    UnknownVersion(u8),
    /// The bytes are inconsistent with the format.
    #[error("corrupt frame: {0}")]
    Corrupt(String),
    /// The decoded bytes do not match the frame's checksum.
    #[error("checksum mismatch: frame says {expected:08x}, decoded data gives {found:08x}")]
    ChecksumMismatch {
        /// Stored checksum.
        expected: u32,
        /// Checksum of what was decoded.
        found: u32,
    },
    /// The frame was encoded with another codebook.
    #[error("frame was encoded with codebook {expected:08x}…, but the codebook given is {found} ({found_dtype}/{found_layout})")]
    CodebookMismatch {
        /// Low 32 bits of the fingerprint in the frame.
        expected: u32,
        /// Fingerprint of the codebook given.
        found: Fingerprint,
        /// Its dtype.
        found_dtype: DType,
        /// Its layout.
        found_layout: Layout,
    },
    /// The output buffer has the wrong size.
    #[error("output buffer is {found} bytes, the frame decodes to {expected}")]
    WrongOutputSize {
        /// Bytes the frame decodes to.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// A fixed-codebook frame given to the three-stage decoder or the reverse.
    #[error("{0}")]
    WrongKind(&'static str),
}

/// What a frame's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Element type.
    pub dtype: DType,
    /// Layout.
    pub layout: Layout,
    /// Number of elements.
    pub elements: u64,
    /// Low 32 bits of the codebook fingerprint (`None` for three-stage frames, which carry their code).
    pub fingerprint: Option<u32>,
    /// CRC-32 of the decoded bytes, if present.
    pub checksum: Option<u32>,
    /// Lanes per coded stream per chunk (the lane geometry): 4 in version 1 frames, 1 to
    /// [`MAX_LANES`] in version 2.
    pub lanes: usize,
    /// Per stream, which member of the codebook family coded it (0 in version 1 and three-stage
    /// frames; unused streams 0).
    pub members: [u8; MAX_STREAMS],
    /// Format version of the frame.
    pub version: u8,
    /// Bytes of header (before the code lengths, chunk table and chunks).
    pub header_len: usize,
}

impl FrameInfo {
    /// Decoded size in bytes.
    pub fn decoded_len(&self) -> Result<usize, DecodeError> {
        usize::try_from(self.elements)
            .ok()
            .and_then(|n| n.checked_mul(self.dtype.size()))
            .ok_or_else(|| DecodeError::Corrupt(format!("element count {} is too large", self.elements)))
    }

    /// Number of chunks.
    pub fn chunks(&self) -> Result<usize, DecodeError> {
        Ok(self.decoded_len()?.div_ceil(CHUNK_BYTES))
    }

    /// The fewest bytes a frame with this header can have: the header, and per chunk a mode byte,
    /// one byte per stream (a constant stream) and, with several chunks, its chunk-table entry.
    /// (Code lengths of three-stage frames come on top.) A frame shorter than this is corrupt, so
    /// a decoder that allocates its output checks it first: the output then follows the bytes
    /// present (at most 64 KiB per 2 bytes), not what a header claims.
    pub fn min_frame_len(&self) -> Result<usize, DecodeError> {
        let chunks = self.chunks()?;
        let per_chunk = 1 + self.layout.stream_count(self.dtype) + if chunks > 1 { 4 } else { 0 };
        chunks
            .checked_mul(per_chunk)
            .and_then(|n| n.checked_add(self.header_len))
            .ok_or_else(|| DecodeError::Corrupt(format!("element count {} is too large", self.elements)))
    }

    /// Parses and checks a frame header.
    pub fn parse(frame: &[u8]) -> Result<FrameInfo, DecodeError> {
        if frame.len() < 4 {
            return Err(DecodeError::Truncated("header"));
        }
        if frame[..2] != MAGIC {
            return Err(DecodeError::BadMagic([frame[0], frame[1]]));
        }
        let version = frame[2];
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(DecodeError::UnknownVersion(version));
        }
        let d = frame[3];
        if d & FLAG_RESERVED != 0 {
            return Err(DecodeError::Corrupt("reserved descriptor bit is set".into()));
        }
        let dtype = DType::from_id(d & 7).ok_or_else(|| DecodeError::Corrupt(format!("unknown dtype id {}", d & 7)))?;
        let layout =
            Layout::from_id((d >> 3) & 3).ok_or_else(|| DecodeError::Corrupt(format!("unknown layout id {}", (d >> 3) & 3)))?;
        let mut pos = 4;
        let elements = read_varint(frame, &mut pos)?;
        let three_stage = d & FLAG_THREE_STAGE != 0;
        let streams = layout.stream_count(dtype);
        let mut members = [0u8; MAX_STREAMS];
        let mut lanes = LANES;
        if version >= 2 {
            lanes = usize::from(*frame.get(pos).ok_or(DecodeError::Truncated("lane count"))?);
            pos += 1;
            if lanes == 0 {
                return Err(DecodeError::Corrupt("lane count is 0".into()));
            }
            if !three_stage {
                let packed = frame.get(pos..pos + streams.div_ceil(2)).ok_or(DecodeError::Truncated("family members"))?;
                pos += packed.len();
                for (s, m) in members.iter_mut().enumerate().take(streams) {
                    *m = (packed[s / 2] >> (4 * (s % 2))) & 15;
                }
                if streams % 2 == 1 && packed[streams / 2] >> 4 != 0 {
                    return Err(DecodeError::Corrupt("member bits set for a stream the layout does not have".into()));
                }
            }
        }
        let fingerprint = if three_stage { None } else { Some(read_u32(frame, &mut pos, "fingerprint")?) };
        let checksum = if d & FLAG_CHECKSUM != 0 { Some(read_u32(frame, &mut pos, "checksum")?) } else { None };
        let info = FrameInfo { dtype, layout, elements, fingerprint, checksum, lanes, members, version, header_len: pos };
        info.decoded_len()?;
        Ok(info)
    }

    /// This header as version-2 bytes (for coders that write the chunks elsewhere, such as a GPU).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = [0u8; MAX_HEADER_BYTES];
        let n = self.write(&mut buf);
        buf[..n].to_vec()
    }

    /// Writes this header (always version 2, whatever `self.version` says) at the start of `out`
    /// (≥ [`MAX_HEADER_BYTES`]) and returns its length: in place, so that encoding allocates
    /// nothing. `lanes` must be 1..=[`MAX_LANES`] and members < [`MAX_MEMBERS`] (the encoder checks).
    pub(crate) fn write(&self, out: &mut [u8]) -> usize {
        let mut n = 0;
        let mut put = |bytes: &[u8]| {
            out[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
        };
        put(&MAGIC);
        put(&[VERSION]);
        let mut d = self.dtype.id() | (self.layout.id() << 3);
        if self.checksum.is_some() {
            d |= FLAG_CHECKSUM;
        }
        if self.fingerprint.is_none() {
            d |= FLAG_THREE_STAGE;
        }
        put(&[d]);
        let mut varint = [0u8; 10];
        let len = write_varint(&mut varint, self.elements);
        put(&varint[..len]);
        put(&[self.lanes as u8]);
        if let Some(f) = self.fingerprint {
            let streams = self.layout.stream_count(self.dtype);
            let mut packed = [0u8; MAX_STREAMS / 2];
            for s in 0..streams {
                packed[s / 2] |= (self.members[s] & 15) << (4 * (s % 2));
            }
            put(&packed[..streams.div_ceil(2)]);
            put(&f.to_le_bytes());
        }
        if let Some(c) = self.checksum {
            put(&c.to_le_bytes());
        }
        n
    }
}

/// LEB128 (7 bits per byte, low first, high bit = more) into `out`; returns the bytes written (≤ 10).
pub(crate) fn write_varint(out: &mut [u8; 10], mut v: u64) -> usize {
    let mut n = 0;
    while v >= 0x80 {
        out[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    out[n] = v as u8;
    n + 1
}

pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *buf.get(*pos).ok_or(DecodeError::Truncated("element count"))?;
        *pos += 1;
        if i == 9 && b > 1 {
            return Err(DecodeError::Corrupt("element count overflows 64 bits".into()));
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError::Corrupt("element count overflows 64 bits".into()))
}

pub(crate) fn read_u32(buf: &[u8], pos: &mut usize, what: &'static str) -> Result<u32, DecodeError> {
    let b = buf.get(*pos..*pos + 4).ok_or(DecodeError::Truncated(what))?;
    *pos += 4;
    Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// The frame's lane geometry: where lane `l` of `lanes` lies in a stream of `n` symbols, as
/// `(start, length)`. Every lane but the last gets `n / lanes` symbols; the last also takes the
/// remainder.
#[inline]
pub(crate) fn lane_span(n: usize, lanes: usize, l: usize) -> (usize, usize) {
    let q = n / lanes;
    (l * q, if l + 1 == lanes { n - l * q } else { q })
}

/// The worst-case frame size for `len` bytes of tensor data, whatever the lane count: the input,
/// the header, 5 bytes per chunk (a mode byte, and a 4-byte size in the chunk table) and 128 bytes
/// per stream for a three-stage code. (A stream is coded only when that, lane sizes included, is
/// smaller than storing it raw.)
pub fn max_frame_len(dtype: DType, layout: Layout, len: usize) -> usize {
    // Saturating: for a length near usize::MAX the bound is usize::MAX, which no allocation meets
    // (it wrapped to a small number before).
    let chunks = len.div_ceil(CHUNK_BYTES);
    len.saturating_add(MAX_HEADER_BYTES + 5 * chunks + 128 * layout.stream_count(dtype))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_fits_18_bytes_for_a_chunk() {
        let info = FrameInfo {
            dtype: DType::Bf16,
            layout: Layout::Exponent,
            elements: 32768,
            fingerprint: Some(0xdead_beef),
            checksum: Some(7),
            lanes: 32,
            members: [3, 15, 0, 0],
            version: 2,
            header_len: 0,
        };
        let mut buf = [0u8; MAX_HEADER_BYTES];
        let n = info.write(&mut buf);
        let out = &buf[..n];
        assert!(out.len() <= 18, "{} bytes", out.len());
        let back = FrameInfo::parse(out).unwrap();
        assert_eq!(back, FrameInfo { header_len: out.len(), ..info });
        for cut in 0..out.len() {
            assert!(FrameInfo::parse(&out[..cut]).is_err());
        }
    }

    #[test]
    fn varints_round_trip_and_reject_overflow() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut buf = [0u8; 10];
            let n = write_varint(&mut buf, v);
            let out = &buf[..n];
            let mut pos = 0;
            assert_eq!(read_varint(out, &mut pos).unwrap(), v);
            assert_eq!(pos, out.len());
        }
        let mut pos = 0;
        assert!(read_varint(&[0xff; 11], &mut pos).is_err());
    }

    #[test]
    fn bad_headers_are_typed_errors() {
        assert_eq!(FrameInfo::parse(b"XX\x01\x00\x00"), Err(DecodeError::BadMagic(*b"XX")));
        assert_eq!(FrameInfo::parse(b"Sh\x03\x00\x00"), Err(DecodeError::UnknownVersion(3)));
        assert_eq!(FrameInfo::parse(b"Sh\x00\x00\x00"), Err(DecodeError::UnknownVersion(0)));
        // Version 2: a lane count of 0, and a member nibble for bf16/bytes' missing second stream.
        assert!(matches!(FrameInfo::parse(b"Sh\x02\x00\x00\x00\x00\x00\x00\x00\x00"), Err(DecodeError::Corrupt(_))));
        assert!(matches!(FrameInfo::parse(b"Sh\x02\x00\x00\x04\x10\x00\x00\x00\x00"), Err(DecodeError::Corrupt(_))));
        assert!(FrameInfo::parse(b"Sh\x02\x00\x00\x04\x01\x00\x00\x00\x00").is_ok());
        assert!(matches!(FrameInfo::parse(b"Sh\x01\x07\x00"), Err(DecodeError::Corrupt(_))));
        assert!(matches!(FrameInfo::parse(b"Sh\x01\x80\x00"), Err(DecodeError::Corrupt(_))));
    }
}
