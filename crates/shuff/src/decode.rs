//! The decoder. Every length, offset and code in a frame is treated as hostile: all reads are
//! bounds-checked or go through a zero-padded slow path, output writes are bounded by the element
//! count in the header, and inconsistencies are typed errors.

use crate::bitstream::read::{decode_lanes, decode_lanes8, decode_tail, LaneReader};
use crate::codebook::{partial_stream_code, Codebook, KernelChoice, StreamCode};
use crate::codebook::Fingerprint;
use crate::crc;
use crate::encode::{grown, stream_refs, SCRATCH};
use crate::frame::{lane_span, read_u32, DecodeError, FrameInfo, StreamMode, CHUNK_BYTES, LANES, MAX_STREAMS};
use crate::layout;

/// Walks a coded stream's lanes in order, handing out groups of them: each lane's own bytes (its
/// reader), what the lockstep loops may read of it (from its start to the end of the chunk: see
/// `decode_lanes_k`) and its part of the output.
struct LaneCursor<'a, 'o> {
    /// The stream's data from its lane sizes on, to the end of the chunk.
    data: &'a [u8],
    lanes: usize,
    /// Symbols in the stream.
    n: usize,
    /// Next lane, and where its bytes start after the lane sizes.
    next: usize,
    in_at: usize,
    out: &'o mut [u8],
}

impl<'a, 'o> LaneCursor<'a, 'o> {
    fn size(&self, l: usize) -> usize {
        usize::from(u16::from_le_bytes([self.data[2 * l], self.data[2 * l + 1]]))
    }

    /// The next `count` (≤ `G`) lanes; unused places are empty.
    fn take<const G: usize>(&mut self, count: usize) -> ([LaneReader<'a>; G], [&'a [u8]; G], [&'o mut [u8]; G]) {
        let mut readers = [(); G].map(|_| LaneReader::new(&[]));
        let mut reach: [&'a [u8]; G] = [&[]; G];
        let mut outs: [&'o mut [u8]; G] = std::array::from_fn(|_| Default::default());
        let at = 2 * self.lanes;
        for g in 0..count {
            let len = self.size(self.next);
            readers[g] = LaneReader::new(&self.data[at + self.in_at..at + self.in_at + len]);
            reach[g] = &self.data[at + self.in_at..];
            self.in_at += len;
            let (_, m) = lane_span(self.n, self.lanes, self.next);
            let (lane_out, tail) = std::mem::take(&mut self.out).split_at_mut(m);
            outs[g] = lane_out;
            self.out = tail;
            self.next += 1;
        }
        (readers, reach, outs)
    }
}

/// Decodes one coded stream of `out.len()` symbols in `lanes` lanes from `data` (lane sizes, then
/// lanes); returns the bytes consumed. Lanes go through the lockstep loops eight or four at a time
/// (the frame's lane count need not be a multiple of four: the rest take the careful path alone).
fn decode_coded_stream(code: &StreamCode, choice: KernelChoice, lanes: usize, data: &[u8], out: &mut [u8], stream: usize) -> Result<usize, DecodeError> {
    let sizes_bytes = data.get(..2 * lanes).ok_or(DecodeError::Truncated("lane sizes"))?;
    let total: usize = sizes_bytes.chunks_exact(2).map(|s| usize::from(u16::from_le_bytes([s[0], s[1]]))).sum();
    data.get(2 * lanes..2 * lanes + total).ok_or(DecodeError::Truncated("lanes"))?;
    let bad = || DecodeError::Corrupt(format!("stream {stream}: bits that start no code"));
    // Each lane must end inside its last byte: a lane that needed bytes past its end, or left whole
    // bytes unread, was damaged.
    let check = |first: usize, readers: &[LaneReader]| {
        for (g, r) in readers.iter().enumerate() {
            let (used, len) = (r.consumed_bits(), r.buf.len() * 8);
            if used > len || used + 8 <= len {
                return Err(DecodeError::Corrupt(format!("stream {stream} lane {}: {used} bits decoded from {len} bits of data", first + g)));
            }
        }
        Ok(())
    };
    let mut cursor = LaneCursor { data, lanes, n: out.len(), next: 0, in_at: 0, out };
    while cursor.next < lanes {
        let first = cursor.next;
        if lanes - first >= 8 {
            let (mut readers, reach, mut outs) = cursor.take::<8>(8);
            decode_lanes8(code, choice, reach, &mut readers, &mut outs).map_err(|()| bad())?;
            check(first, &readers)?;
        } else if lanes - first >= LANES {
            let (mut readers, reach, mut outs) = cursor.take::<LANES>(LANES);
            decode_lanes(code, choice, reach, &mut readers, &mut outs).map_err(|()| bad())?;
            check(first, &readers)?;
        } else {
            let (mut readers, _, outs) = cursor.take::<1>(1);
            let [out] = outs;
            decode_tail(&mut readers[0], code, out).map_err(|()| bad())?;
            check(first, &readers)?;
        }
    }
    Ok(2 * lanes + total)
}

/// Decodes one chunk (`data` = exactly its bytes) into `out` (its tensor bytes).
fn decode_chunk(codes: &[&StreamCode], choice: KernelChoice, info: &FrameInfo, data: &[u8], out: &mut [u8], symbols: &mut Vec<u8>) -> Result<(), DecodeError> {
    let (dtype, layout, lanes) = (info.dtype, info.layout, info.lanes);
    let k = codes.len();
    let &modes = data.first().ok_or(DecodeError::Truncated("chunk"))?;
    if k < 4 && modes >> (2 * k) != 0 {
        return Err(DecodeError::Corrupt("mode bits set for streams the layout does not have".into()));
    }
    let n = out.len() / k;
    let direct = k == 1;
    let symbols = if direct { &mut [][..] } else { grown(symbols, out.len()) };
    // Where each raw stream starts in `data`: the layout transform reads it there, not through a
    // copy in `symbols` (that copy was 3% of decompressing a checkpoint, whose mantissas are raw).
    let mut raw_at: [Option<usize>; MAX_STREAMS] = [None; MAX_STREAMS];
    let mut pos = 1;
    for (s, code) in codes.iter().enumerate() {
        let dst: &mut [u8] = if direct { &mut *out } else { &mut symbols[s * n..(s + 1) * n] };
        let (at, rest) = (pos, &data[pos..]);
        pos += match (modes >> (2 * s)) & 3 {
            m if m == StreamMode::Coded as u8 => decode_coded_stream(code, choice, lanes, rest, dst, s)?,
            m if m == StreamMode::Raw as u8 => {
                let raw = rest.get(..n).ok_or(DecodeError::Truncated("raw stream"))?;
                if direct {
                    dst.copy_from_slice(raw);
                } else {
                    raw_at[s] = Some(at);
                }
                n
            }
            m if m == StreamMode::Constant as u8 => {
                dst.fill(*rest.first().ok_or(DecodeError::Truncated("constant stream"))?);
                1
            }
            _ => return Err(DecodeError::Corrupt(format!("stream {s}: unknown mode 3"))),
        };
    }
    if pos != data.len() {
        return Err(DecodeError::Corrupt(format!("chunk has {} bytes after its last stream", data.len() - pos)));
    }
    if !direct {
        let streams: [&[u8]; MAX_STREAMS] = std::array::from_fn(|s| match raw_at[s] {
            _ if s >= k => &[][..],
            Some(at) => &data[at..at + n],
            None => &symbols[s * n..(s + 1) * n],
        });
        layout::from_streams(dtype, layout, &streams[..k], out);
    }
    Ok(())
}

fn check_output(info: &FrameInfo, out: &[u8]) -> Result<(), DecodeError> {
    let expected = info.decoded_len()?;
    if out.len() != expected {
        return Err(DecodeError::WrongOutputSize { expected, found: out.len() });
    }
    Ok(())
}

/// The chunk area of a frame, validated (every chunk inside the frame, no bytes after the last),
/// walked without allocating.
#[derive(Clone)]
struct Chunks<'a> {
    frame: &'a [u8],
    /// A single chunk has no table: it runs to the end of the frame.
    single: bool,
    /// Next chunk-table entry.
    entry: usize,
    start: usize,
    left: usize,
}

impl<'a> Chunks<'a> {
    fn new(info: &FrameInfo, frame: &'a [u8], pos: usize) -> Result<Self, DecodeError> {
        let left = info.chunks()?;
        if left <= 1 {
            return Ok(Chunks { frame, single: true, entry: pos, start: pos, left });
        }
        let table_end = pos.checked_add(4 * left).filter(|&e| e <= frame.len()).ok_or(DecodeError::Truncated("chunk table"))?;
        let (mut p, mut end) = (pos, table_end);
        for _ in 0..left {
            let size = read_u32(frame, &mut p, "chunk table")? as usize;
            end = end.checked_add(size).filter(|&e| e <= frame.len()).ok_or(DecodeError::Truncated("chunk"))?;
        }
        if end != frame.len() {
            return Err(DecodeError::Corrupt(format!("{} bytes after the last chunk", frame.len() - end)));
        }
        Ok(Chunks { frame, single: false, entry: pos, start: table_end, left })
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let end = if self.single {
            self.frame.len()
        } else {
            let size = read_u32(self.frame, &mut self.entry, "chunk table").expect("validated in Chunks::new") as usize;
            self.start + size
        };
        let chunk = &self.frame[self.start..end];
        self.start = end;
        Some(chunk)
    }
}

/// Decodes the chunks into `out` and checks the frame's CRC-32, if it has one, taken chunk by chunk
/// as each is decoded, while it is in cache (see [`crate::crc`]).
fn decode_chunks(codes: &[&StreamCode], choice: KernelChoice, info: &FrameInfo, frame: &[u8], pos: usize, out: &mut [u8]) -> Result<(), DecodeError> {
    let chunks = Chunks::new(info, frame, pos)?;
    #[cfg(feature = "parallel")]
    if chunks.left >= 8 && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        let chunks: Vec<&[u8]> = chunks.collect();
        let crcs = out
            .par_chunks_mut(CHUNK_BYTES)
            .zip(chunks.par_iter())
            .map(|(o, c)| {
                SCRATCH.with(|s| decode_chunk(codes, choice, info, c, o, &mut s.borrow_mut().symbols))?;
                Ok(crc::of_chunk(o, info.checksum.is_some()))
            })
            .collect::<Result<Vec<u32>, DecodeError>>()?;
        return verify_checksum(info, crc::of_chunks(&crcs, out.len()));
    }
    let found = SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let mut frame_crc = 0;
        for (o, c) in out.chunks_mut(CHUNK_BYTES).zip(chunks) {
            decode_chunk(codes, choice, info, c, o, &mut s.symbols)?;
            frame_crc = crc::combine(frame_crc, crc::of_chunk(o, info.checksum.is_some()), o.len());
        }
        Ok(frame_crc)
    })?;
    verify_checksum(info, found)
}

fn verify_checksum(info: &FrameInfo, found: u32) -> Result<(), DecodeError> {
    match info.checksum {
        Some(expected) if found != expected => Err(DecodeError::ChecksumMismatch { expected, found }),
        _ => Ok(()),
    }
}

/// Decodes a frame made by [`crate::encode::encode_into`] with `book` into `out`, which must be
/// exactly the decoded size (see [`FrameInfo::parse`] and [`FrameInfo::decoded_len`]).
/// Fails with [`DecodeError::CodebookMismatch`] if the frame was made with another codebook.
pub fn decode_into(book: &Codebook, frame: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
    decode_into_with(book, frame, out, KernelChoice::default())
}

/// [`decode_into`] with the lane loop `choice` forces: for tests and fuzz targets that check
/// every kernel on the same frames; the output is the same whatever the choice.
#[doc(hidden)]
pub fn decode_into_with(book: &Codebook, frame: &[u8], out: &mut [u8], choice: KernelChoice) -> Result<(), DecodeError> {
    // A single codebook is a family of one: its own fingerprint, member 0 for every stream.
    decode_members_into(&[book], book.fingerprint(), frame, out, choice)
}

/// Decodes a frame of a codebook family (`books`, in member order, all of one dtype and layout,
/// whose family fingerprint is `family_fingerprint`): stream `s` with the member the frame names.
pub(crate) fn decode_members_into(books: &[&Codebook], family_fingerprint: Fingerprint, frame: &[u8], out: &mut [u8], choice: KernelChoice) -> Result<(), DecodeError> {
    let info = FrameInfo::parse(frame)?;
    let expected = info.fingerprint.ok_or(DecodeError::WrongKind("this frame carries its own code (three-stage): use decode_three_stage_into"))?;
    let first = books[0];
    if expected != family_fingerprint.0 as u32 || (info.dtype, info.layout) != (first.dtype(), first.layout()) {
        return Err(DecodeError::CodebookMismatch {
            expected,
            found: family_fingerprint,
            found_dtype: first.dtype(),
            found_layout: first.layout(),
        });
    }
    let k = info.layout.stream_count(info.dtype);
    if let Some(s) = (0..k).find(|&s| usize::from(info.members[s]) >= books.len()) {
        return Err(DecodeError::Corrupt(format!(
            "stream {s} was coded by member {} of a codebook family, but the family given has {} member(s)",
            info.members[s],
            books.len()
        )));
    }
    check_output(&info, out)?;
    let codes = stream_refs(books, info.members, k);
    decode_chunks(&codes[..k], choice, &info, frame, info.header_len, out)
}

/// Decodes a frame into a new buffer (allocated only once the frame is long enough to hold what
/// its header announces: see [`FrameInfo::min_frame_len`]).
pub fn decode(book: &Codebook, frame: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let info = FrameInfo::parse(frame)?;
    if frame.len() < info.min_frame_len()? {
        return Err(DecodeError::Truncated("frame is shorter than the chunks its header announces"));
    }
    let mut out = vec![0u8; info.decoded_len()?];
    decode_into(book, frame, &mut out)?;
    Ok(out)
}

/// Decodes a three-stage frame (one that carries its own code lengths).
pub fn decode_three_stage_into(frame: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
    let info = FrameInfo::parse(frame)?;
    if info.fingerprint.is_some() {
        return Err(DecodeError::WrongKind("this frame needs its codebook: use decode_into"));
    }
    check_output(&info, out)?;
    let k = info.layout.stream_count(info.dtype);
    let mut pos = info.header_len;
    let mut codes = Vec::with_capacity(k);
    for s in 0..k {
        let packed = frame.get(pos..pos + 128).ok_or(DecodeError::Truncated("code lengths"))?;
        pos += 128;
        let mut lengths = [0u8; 256];
        for (i, &b) in packed.iter().enumerate() {
            lengths[2 * i] = b & 15;
            lengths[2 * i + 1] = b >> 4;
        }
        codes.push(partial_stream_code(lengths).ok_or_else(|| DecodeError::Corrupt(format!("stream {s}: code lengths are not a prefix code")))?);
    }
    let codes: Vec<&StreamCode> = codes.iter().collect();
    decode_chunks(&codes, KernelChoice::default(), &info, frame, pos, out)
}
