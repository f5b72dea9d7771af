//! The decoder. Every length, offset and code in a frame is treated as hostile: all reads are
//! bounds-checked or go through a zero-padded slow path, output writes are bounded by the element
//! count in the header, and inconsistencies are typed errors.

use crate::codebook::{partial_stream_code, Codebook, StreamCode, DECODE_TABLE_BITS, QUAD_TABLE_BITS};
use crate::codebook::Fingerprint;
use crate::encode::{lane_span, stream_refs, SCRATCH};
use crate::frame::{read_u32, DecodeError, FrameInfo, StreamMode, CHUNK_BYTES, LANES};
use crate::layout;
use crate::{DType, Layout};

const TABLE_MASK: u64 = (1 << DECODE_TABLE_BITS) - 1;
const QUAD_MASK: u64 = (1 << QUAD_TABLE_BITS) - 1;

/// An LSB-first bit reader over one lane. `pos` may run past the end of `buf`: bytes there read as
/// zeros, and the final check catches a lane that needed them.
struct LaneReader<'a> {
    buf: &'a [u8],
    pos: usize,
    bits: u64,
    /// Valid bits in `bits`.
    n: u32,
}

impl<'a> LaneReader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        LaneReader { buf, pos: 0, bits: 0, n: 0 }
    }

    /// A reader positioned `bit` bits into `buf`.
    fn at_bit(buf: &'a [u8], bit: usize) -> Self {
        let mut r = LaneReader { buf, pos: bit / 8, bits: 0, n: 0 };
        r.refill_slow();
        let skip = (bit % 8) as u32;
        r.bits >>= skip;
        r.n -= skip;
        r
    }

    /// Tops the buffer up to ≥ 56 bits ("variant 4" of F. Giesen's "Reading bits in far too many
    /// ways": load 8 bytes, keep what fits, advance by the whole bytes kept), reading zeros past the
    /// end of the lane. The fast loop in `decode_lanes_k` does the same with one unchecked-length load.
    fn refill_slow(&mut self) {
        let mut w = [0u8; 8];
        if let Some(bytes) = self.buf.get(self.pos..self.pos + 8) {
            w.copy_from_slice(bytes);
        } else if self.pos < self.buf.len() {
            let avail = (self.buf.len() - self.pos).min(8);
            w[..avail].copy_from_slice(&self.buf[self.pos..self.pos + avail]);
        }
        self.bits |= u64::from_le_bytes(w) << self.n;
        self.pos += ((63 - self.n) >> 3) as usize;
        self.n |= 56;
    }

    /// Decodes one symbol; needs ≥ `code.max_len()` valid bits.
    #[inline(always)]
    fn decode(&mut self, code: &StreamCode) -> Result<u8, ()> {
        let e = code.decode_table()[(self.bits & TABLE_MASK) as usize];
        let mut len = u32::from(e >> 8);
        let mut sym = e as u8;
        if len == 0 {
            (sym, len) = code.decode_long(self.bits).ok_or(())?;
        }
        self.bits >>= len;
        self.n -= len;
        Ok(sym)
    }

    /// Bits consumed so far.
    fn consumed_bits(&self) -> usize {
        self.pos * 8 - self.n as usize
    }
}

/// Decodes the rest of one lane with checked reads and writes (two symbols a lookup where they
/// fit, so that lanes left long by the lockstep loop are not slow).
fn decode_tail(r: &mut LaneReader, code: &StreamCode, out: &mut [u8]) -> Result<(), ()> {
    let pairs = code.pair_table();
    let mut w = 0;
    while w < out.len() {
        if r.n < 16 {
            r.refill_slow();
        }
        let e = pairs[(r.bits & TABLE_MASK) as usize];
        if e != 0 && w + 2 <= out.len() {
            out[w..w + 2].copy_from_slice(&((e >> 16) as u16).to_le_bytes());
            w += ((e >> 6) & 3) as usize;
            r.bits >>= e & 63;
            r.n -= e & 63;
        } else {
            out[w] = r.decode(code)?;
            w += 1;
        }
    }
    Ok(())
}

/// Decodes four lanes in lockstep, then finishes each lane on the careful path.
///
/// Each lane's state is a read position `p` and the bits `c` already consumed past it. A round
/// moves `p` over the whole bytes consumed, loads the next 8 bytes (≥ 57 unread bits) and takes
/// `K` steps; a step looks the next [`DECODE_TABLE_BITS`] bits up in the two-symbol table and
/// stores two bytes (the second is overwritten by the next step when only one symbol was decoded).
/// `K` steps of at most `max(DECODE_TABLE_BITS, max_len)` bits fit in 56 bits.
///
/// Bounds are checked once per batch of rounds, not per symbol: a round advances `p` by ≤ 7 bytes
/// and reads 8 bytes there, and writes ≤ `store·K` bytes of output (2 or 4 a step), so the number of
/// rounds that stay inside every lane's input and output is computed up front. Per-access checks cost 30% of
/// decode speed (perf annotate showed bounds tests and the spills they caused dominating the loop).
#[inline(always)]
fn decode_lanes_k<const K: usize, const CHECK: bool, const QUAD: bool>(code: &StreamCode, readers: &mut [LaneReader; LANES], outs: &mut [&mut [u8]; LANES]) -> Result<(), ()> {
    let table = code.pair_table();
    let quads = if QUAD { code.quad_table().expect("QUAD only for streams with a quad table") } else { &[0u64; 1 << QUAD_TABLE_BITS] };
    // Bytes a step may store.
    let store = if QUAD { 4 } else { 2 };
    let mut p = [0usize; LANES];
    let mut c = [0u32; LANES];
    let mut w = [0usize; LANES];
    let ins: [&[u8]; LANES] = [readers[0].buf, readers[1].buf, readers[2].buf, readers[3].buf];
    let mut bad = false;
    loop {
        let mut rounds = usize::MAX;
        for l in 0..LANES {
            let unread = ins[l].len() - p[l];
            let room = outs[l].len() - w[l];
            rounds = rounds.min(unread.saturating_sub(8) / 7).min(room / (store * K));
        }
        if rounds == 0 {
            break;
        }
        // Positions as pointers: four lanes' state is already more than x86-64's registers hold.
        let [mut p0, mut p1, mut p2, mut p3] = [0, 1, 2, 3].map(|l| ins[l][p[l]..].as_ptr());
        let [mut w0, mut w1, mut w2, mut w3] = [0, 1, 2, 3].map(|l| outs[l][w[l]..].as_mut_ptr());
        let [mut c0, mut c1, mut c2, mut c3] = c;
        macro_rules! refill {
            ($p:ident, $c:ident) => {{
                // SAFETY: `rounds` was chosen so that this round's read, at ≤ 7 bytes a round past
                // the batch's start position, ends inside the lane.
                unsafe {
                    $p = $p.add(($c >> 3) as usize);
                    $c &= 7;
                    u64::from_le($p.cast::<u64>().read_unaligned()) >> $c
                }
            }};
        }
        // The dependency chain from one symbol to the next is mask → table load → shift; the bit
        // and output counts are updated off that chain.
        macro_rules! step {
            ($bits:ident, $c:ident, $w:ident) => {
                // Entry layouts put the bits consumed in the low 6 bits, so that x86's shift, which
                // masks its count to 6 bits, consumes them straight from the entry.
                let (e, mut syms, mut count) = if QUAD {
                    let e = quads[($bits & QUAD_MASK) as usize];
                    (e, e >> 32, ((e >> 6) & 7) as usize)
                } else {
                    let e = u64::from(table[($bits & TABLE_MASK) as usize]);
                    (e, e >> 16, ((e >> 6) & 3) as usize)
                };
                let mut used = (e & 63) as u32;
                if CHECK && count == 0 {
                    match code.decode_long($bits) {
                        Some((s, l)) => (syms, used, count) = (u64::from(s), l, 1),
                        None => {
                            bad = true;
                            (used, count) = (1, 1);
                        }
                    }
                }
                // SAFETY: `rounds` was chosen so that a round's `store·K` bytes of output, from the
                // batch's start position, fit in the lane's output; a step writes `store` bytes.
                unsafe {
                    if QUAD {
                        $w.cast::<[u8; 4]>().write_unaligned((syms as u32).to_le_bytes());
                    } else {
                        $w.cast::<[u8; 2]>().write_unaligned((syms as u16).to_le_bytes());
                    }
                    $w = $w.add(count);
                }
                $bits = if CHECK { $bits >> used } else { $bits.wrapping_shr(e as u32) };
                $c += used;
            };
        }
        for _ in 0..rounds {
            let mut b0 = refill!(p0, c0);
            let mut b1 = refill!(p1, c1);
            let mut b2 = refill!(p2, c2);
            let mut b3 = refill!(p3, c3);
            for _ in 0..K {
                step!(b0, c0, w0);
                step!(b1, c1, w1);
                step!(b2, c2, w2);
                step!(b3, c3, w3);
            }
        }
        // SAFETY: both pointers of each pair point into (or one past) the same lane buffer.
        unsafe {
            for (l, &pl) in [p0, p1, p2, p3].iter().enumerate() {
                p[l] = pl.offset_from(ins[l].as_ptr()) as usize;
            }
            for (l, &wl) in [w0, w1, w2, w3].iter().enumerate() {
                w[l] = wl.offset_from(outs[l].as_ptr()) as usize;
            }
        }
        c = [c0, c1, c2, c3];
        if bad {
            return Err(());
        }
    }
    for l in 0..LANES {
        readers[l] = LaneReader::at_bit(ins[l], p[l] * 8 + c[l] as usize);
        decode_tail(&mut readers[l], code, &mut outs[l][w[l]..])?;
    }
    Ok(())
}

/// Picks the loop variant for `code`: codes that always resolve in one lookup skip the slow-path
/// test, and `K` is the most steps 56 bits allow.
#[inline(always)]
fn decode_lanes_generic(code: &StreamCode, readers: &mut [LaneReader; LANES], outs: &mut [&mut [u8]; LANES]) -> Result<(), ()> {
    match (code.quad_table().is_some(), code.max_len(), code.single_lookup()) {
        (false, 0..=12, true) => decode_lanes_k::<4, false, false>(code, readers, outs),
        (false, 0..=14, _) => decode_lanes_k::<4, true, false>(code, readers, outs),
        (false, _, _) => decode_lanes_k::<3, true, false>(code, readers, outs),
        // A quad entry never covers a 12-bit code, so the slow-path test always stays.
        (true, 0..=14, _) => decode_lanes_k::<4, true, true>(code, readers, outs),
        (true, _, _) => decode_lanes_k::<3, true, true>(code, readers, outs),
    }
}

/// The same loop compiled with BMI2 (`shrx`: variable shifts that need no `cl` register, which
/// four lanes of state cannot spare). huff0 makes the same run-time choice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi2")]
fn decode_lanes_bmi2(code: &StreamCode, readers: &mut [LaneReader; LANES], outs: &mut [&mut [u8]; LANES]) -> Result<(), ()> {
    decode_lanes_generic(code, readers, outs)
}

fn decode_lanes(code: &StreamCode, readers: &mut [LaneReader; LANES], outs: &mut [&mut [u8]; LANES]) -> Result<(), ()> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("bmi2") {
        // SAFETY: the CPU has BMI2, checked just above.
        return unsafe { decode_lanes_bmi2(code, readers, outs) };
    }
    decode_lanes_generic(code, readers, outs)
}

/// Decodes one coded stream of `out.len()` symbols in `lanes` lanes from `data` (lane sizes, then
/// lanes); returns the bytes consumed. Lanes go through the lockstep loop four at a time (the
/// frame's lane count need not be a multiple of four: the rest take the careful path alone).
fn decode_coded_stream(code: &StreamCode, lanes: usize, data: &[u8], out: &mut [u8], stream: usize) -> Result<usize, DecodeError> {
    let sizes_bytes = data.get(..2 * lanes).ok_or(DecodeError::Truncated("lane sizes"))?;
    let size = |l: usize| usize::from(u16::from_le_bytes([sizes_bytes[2 * l], sizes_bytes[2 * l + 1]]));
    let total: usize = (0..lanes).map(size).sum();
    let body = data.get(2 * lanes..2 * lanes + total).ok_or(DecodeError::Truncated("lanes"))?;
    let n = out.len();
    let bad = || DecodeError::Corrupt(format!("stream {stream}: bits that start no code"));
    // Each lane must end inside its last byte: a lane that needed bytes past its end, or left whole
    // bytes unread, was damaged.
    let check = |l: usize, r: &LaneReader| {
        let (used, len) = (r.consumed_bits(), r.buf.len() * 8);
        if used > len || used + 8 <= len {
            return Err(DecodeError::Corrupt(format!("stream {stream} lane {l}: {used} bits decoded from {len} bits of data")));
        }
        Ok(())
    };
    let (mut in_at, mut l) = (0, 0);
    let mut rest_out = out;
    while l < lanes {
        let group = if lanes - l >= LANES { LANES } else { 1 };
        let mut readers = [(); LANES].map(|_| LaneReader::new(&[]));
        let mut outs: [&mut [u8]; LANES] = Default::default();
        for g in 0..group {
            let len = size(l + g);
            readers[g] = LaneReader::new(&body[in_at..in_at + len]);
            in_at += len;
            let (_, m) = lane_span(n, lanes, l + g);
            let (lane_out, tail) = std::mem::take(&mut rest_out).split_at_mut(m);
            outs[g] = lane_out;
            rest_out = tail;
        }
        if group == LANES {
            decode_lanes(code, &mut readers, &mut outs).map_err(|()| bad())?;
        } else {
            decode_tail(&mut readers[0], code, outs[0]).map_err(|()| bad())?;
        }
        for (g, r) in readers.iter().enumerate().take(group) {
            check(l + g, r)?;
        }
        l += group;
    }
    Ok(2 * lanes + total)
}

/// Decodes one chunk (`data` = exactly its bytes) into `out` (its tensor bytes).
fn decode_chunk(codes: &[&StreamCode], dtype: DType, layout: Layout, lanes: usize, data: &[u8], out: &mut [u8], symbols: &mut Vec<u8>) -> Result<(), DecodeError> {
    let k = codes.len();
    let &modes = data.first().ok_or(DecodeError::Truncated("chunk"))?;
    if k < 4 && modes >> (2 * k) != 0 {
        return Err(DecodeError::Corrupt("mode bits set for streams the layout does not have".into()));
    }
    let n = out.len() / k;
    let direct = k == 1;
    if !direct {
        symbols.resize(out.len(), 0);
    }
    let mut pos = 1;
    for (s, code) in codes.iter().enumerate() {
        let dst: &mut [u8] = if direct { &mut *out } else { &mut symbols[s * n..(s + 1) * n] };
        let rest = &data[pos..];
        pos += match (modes >> (2 * s)) & 3 {
            m if m == StreamMode::Coded as u8 => decode_coded_stream(code, lanes, rest, dst, s)?,
            m if m == StreamMode::Raw as u8 => {
                dst.copy_from_slice(rest.get(..n).ok_or(DecodeError::Truncated("raw stream"))?);
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
        layout::from_symbols(dtype, layout, symbols, out).expect("chunks hold whole elements");
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

fn decode_chunks(codes: &[&StreamCode], info: &FrameInfo, frame: &[u8], pos: usize, out: &mut [u8]) -> Result<(), DecodeError> {
    let chunks = Chunks::new(info, frame, pos)?;
    let (dtype, layout, lanes) = (info.dtype, info.layout, info.lanes);
    #[cfg(feature = "parallel")]
    if chunks.left >= 8 && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        let chunks: Vec<&[u8]> = chunks.collect();
        return out.par_chunks_mut(CHUNK_BYTES).zip(chunks.par_iter()).try_for_each(|(o, c)| {
            SCRATCH.with(|s| decode_chunk(codes, dtype, layout, lanes, c, o, &mut s.borrow_mut().symbols))
        });
    }
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        for (o, c) in out.chunks_mut(CHUNK_BYTES).zip(chunks) {
            decode_chunk(codes, dtype, layout, lanes, c, o, &mut s.symbols)?;
        }
        Ok(())
    })
}

fn verify_checksum(info: &FrameInfo, out: &[u8]) -> Result<(), DecodeError> {
    if let Some(expected) = info.checksum {
        let found = crc32fast::hash(out);
        if found != expected {
            return Err(DecodeError::ChecksumMismatch { expected, found });
        }
    }
    Ok(())
}

/// Decodes a frame made by [`crate::encode::encode_into`] with `book` into `out`, which must be
/// exactly the decoded size (see [`FrameInfo::parse`] and [`FrameInfo::decoded_len`]).
/// Fails with [`DecodeError::CodebookMismatch`] if the frame was made with another codebook.
pub fn decode_into(book: &Codebook, frame: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
    // A single codebook is a family of one: its own fingerprint, member 0 for every stream.
    decode_members_into(&[book], book.fingerprint(), frame, out)
}

/// Decodes a frame of a codebook family (`books`, in member order, all of one dtype and layout,
/// whose family fingerprint is `family_fingerprint`): stream `s` with the member the frame names.
pub(crate) fn decode_members_into(books: &[&Codebook], family_fingerprint: Fingerprint, frame: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
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
    decode_chunks(&codes[..k], &info, frame, info.header_len, out)?;
    verify_checksum(&info, out)
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
    decode_chunks(&codes, &info, frame, pos, out)?;
    verify_checksum(&info, out)
}
