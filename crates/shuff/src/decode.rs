//! The decoder. Every length, offset and code in a frame is treated as hostile: all reads are
//! bounds-checked or go through a zero-padded slow path, output writes are bounded by the element
//! count in the header, and inconsistencies are typed errors.

use crate::codebook::{partial_stream_code, Codebook, StreamCode, DECODE_TABLE_BITS};
use crate::encode::{lane_lengths, SCRATCH};
use crate::frame::{read_u32, DecodeError, FrameInfo, StreamMode, CHUNK_BYTES, LANES};
use crate::layout;
use crate::{DType, Layout};

const TABLE_MASK: u64 = (1 << DECODE_TABLE_BITS) - 1;

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

    /// Tops the buffer up to ≥ 56 bits ("variant 4" of F. Giesen's "Reading bits in far too many
    /// ways": load 8 bytes, keep what fits, advance by the whole bytes kept), reading zeros past the
    /// end of the lane. The fast loop in `decode_lanes_k` does the same with one unchecked-length load.
    fn refill_slow(&mut self) {
        let mut w = [0u8; 8];
        if self.pos < self.buf.len() {
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

/// Decodes one lane entirely through the careful path.
fn decode_tail(r: &mut LaneReader, code: &StreamCode, out: &mut [u8]) -> Result<(), ()> {
    for o in out {
        if r.n < 16 {
            r.refill_slow();
        }
        *o = r.decode(code)?;
    }
    Ok(())
}

/// Decodes four lanes in lockstep while all can refill with one load, then finishes each lane on
/// the careful path. `K · max_len ≤ 56` symbols are decoded per refill.
///
/// The four lanes' states live in local variables, not in the `readers` array: kept in memory,
/// every symbol paid a store-to-load round trip on its lane's bit buffer, which halved speed.
#[inline(always)]
fn decode_lanes_k<const K: usize, const CHECK: bool>(code: &StreamCode, readers: &mut [LaneReader; LANES], outs: &mut [&mut [u8]; LANES]) -> Result<(), ()> {
    let table = code.decode_table();
    let q = outs[0].len(); // lanes 0..3 have q symbols, the last q + remainder
    let [r0, r1, r2, r3] = readers;
    let [o0, o1, o2, o3] = outs;
    let (l0, l1, l2, l3) = (r0.buf.len(), r1.buf.len(), r2.buf.len(), r3.buf.len());
    let (mut b0, mut b1, mut b2, mut b3) = (r0.bits, r1.bits, r2.bits, r3.bits);
    let (mut n0, mut n1, mut n2, mut n3) = (r0.n, r1.n, r2.n, r3.n);
    let (mut p0, mut p1, mut p2, mut p3) = (r0.pos, r1.pos, r2.pos, r3.pos);
    let mut bad = false;
    macro_rules! refill {
        ($buf:expr, $b:ident, $n:ident, $p:ident) => {
            let w = u64::from_le_bytes($buf[$p..$p + 8].try_into().expect("8 bytes"));
            $b |= w << $n;
            $p += ((63 - $n) >> 3) as usize;
            $n |= 56;
        };
    }
    macro_rules! step {
        ($b:ident, $n:ident, $o:ident, $j:expr) => {
            let e = table[($b & TABLE_MASK) as usize];
            let mut len = u32::from(e >> 8);
            let mut sym = e as u8;
            if CHECK && len == 0 {
                match code.decode_long($b) {
                    Some((s, l)) => (sym, len) = (s, l),
                    None => {
                        bad = true;
                        len = 1;
                    }
                }
            }
            $b >>= len;
            $n -= len;
            $o[$j] = sym;
        };
    }
    let mut round = 0;
    // Every refill loads 8 bytes: run while each lane has them.
    while round < q / K && p0 + 8 <= l0 && p1 + 8 <= l1 && p2 + 8 <= l2 && p3 + 8 <= l3 {
        let i = round * K;
        round += 1;
        let (w0, w1, w2, w3) = (&mut o0[i..i + K], &mut o1[i..i + K], &mut o2[i..i + K], &mut o3[i..i + K]);
        refill!(r0.buf, b0, n0, p0);
        refill!(r1.buf, b1, n1, p1);
        refill!(r2.buf, b2, n2, p2);
        refill!(r3.buf, b3, n3, p3);
        for j in 0..K {
            step!(b0, n0, w0, j);
            step!(b1, n1, w1, j);
            step!(b2, n2, w2, j);
            step!(b3, n3, w3, j);
        }
    }
    if bad {
        return Err(());
    }
    (r0.bits, r1.bits, r2.bits, r3.bits) = (b0, b1, b2, b3);
    (r0.n, r1.n, r2.n, r3.n) = (n0, n1, n2, n3);
    (r0.pos, r1.pos, r2.pos, r3.pos) = (p0, p1, p2, p3);
    let i = round * K;
    for (r, out) in [r0, r1, r2, r3].into_iter().zip([o0, o1, o2, o3]) {
        decode_tail(r, code, &mut out[i..])?;
    }
    Ok(())
}

/// Decodes one coded stream of `out.len()` symbols from `data` (lane sizes, then lanes); returns
/// the bytes consumed.
fn decode_coded_stream(code: &StreamCode, data: &[u8], out: &mut [u8], stream: usize) -> Result<usize, DecodeError> {
    let sizes_bytes = data.get(..2 * LANES).ok_or(DecodeError::Truncated("lane sizes"))?;
    let mut sizes = [0usize; LANES];
    for (s, b) in sizes.iter_mut().zip(sizes_bytes.chunks_exact(2)) {
        *s = usize::from(u16::from_le_bytes([b[0], b[1]]));
    }
    let total: usize = sizes.iter().sum();
    let body = data.get(2 * LANES..2 * LANES + total).ok_or(DecodeError::Truncated("lanes"))?;
    let lens = lane_lengths(out.len());
    let mut lanes = [&body[..0]; LANES];
    let mut start = 0;
    for (lane, &size) in lanes.iter_mut().zip(&sizes) {
        *lane = &body[start..start + size];
        start += size;
    }
    let mut readers = lanes.map(LaneReader::new);
    let (o0, rest) = out.split_at_mut(lens[0]);
    let (o1, rest) = rest.split_at_mut(lens[1]);
    let (o2, o3) = rest.split_at_mut(lens[2]);
    let mut outs = [o0, o1, o2, o3];
    let bad = || DecodeError::Corrupt(format!("stream {stream}: bits that start no code"));
    // Codes that always resolve in one lookup skip the slow-path test in the hot loop.
    match (code.max_len(), code.single_lookup()) {
        (0..=11, true) => decode_lanes_k::<5, false>(code, &mut readers, &mut outs),
        (0..=11, false) => decode_lanes_k::<5, true>(code, &mut readers, &mut outs),
        (12, true) => decode_lanes_k::<4, false>(code, &mut readers, &mut outs),
        (12..=14, _) => decode_lanes_k::<4, true>(code, &mut readers, &mut outs),
        _ => decode_lanes_k::<3, true>(code, &mut readers, &mut outs),
    }
    .map_err(|()| bad())?;
    // Each lane must end inside its last byte: a lane that needed bytes past its end, or left whole
    // bytes unread, was damaged.
    for (l, r) in readers.iter().enumerate() {
        let used = r.consumed_bits();
        let len = r.buf.len() * 8;
        if used > len || used + 8 <= len {
            return Err(DecodeError::Corrupt(format!("stream {stream} lane {l}: {used} bits decoded from {len} bits of data")));
        }
    }
    Ok(2 * LANES + total)
}

/// Decodes one chunk (`data` = exactly its bytes) into `out` (its tensor bytes).
fn decode_chunk(codes: &[&StreamCode], dtype: DType, layout: Layout, data: &[u8], out: &mut [u8], symbols: &mut Vec<u8>) -> Result<(), DecodeError> {
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
            m if m == StreamMode::Coded as u8 => decode_coded_stream(code, rest, dst, s)?,
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

/// Splits the chunk area into each chunk's bytes.
fn chunk_slices<'a>(info: &FrameInfo, frame: &'a [u8], pos: usize) -> Result<Vec<&'a [u8]>, DecodeError> {
    let chunks = info.chunks()?;
    if chunks <= 1 {
        return Ok(if chunks == 1 { vec![&frame[pos..]] } else { Vec::new() });
    }
    let mut p = pos;
    let table_end = pos.checked_add(4 * chunks).filter(|&e| e <= frame.len()).ok_or(DecodeError::Truncated("chunk table"))?;
    let mut start = table_end;
    let mut out = Vec::with_capacity(chunks);
    for _ in 0..chunks {
        let size = read_u32(frame, &mut p, "chunk table")? as usize;
        let end = start.checked_add(size).filter(|&e| e <= frame.len()).ok_or(DecodeError::Truncated("chunk"))?;
        out.push(&frame[start..end]);
        start = end;
    }
    if start != frame.len() {
        return Err(DecodeError::Corrupt(format!("{} bytes after the last chunk", frame.len() - start)));
    }
    Ok(out)
}

fn decode_chunks(codes: &[&StreamCode], info: &FrameInfo, frame: &[u8], pos: usize, out: &mut [u8]) -> Result<(), DecodeError> {
    let chunks = chunk_slices(info, frame, pos)?;
    let (dtype, layout) = (info.dtype, info.layout);
    #[cfg(feature = "parallel")]
    if chunks.len() >= 8 && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        return out.par_chunks_mut(CHUNK_BYTES).zip(chunks.par_iter()).try_for_each(|(o, c)| {
            SCRATCH.with(|s| decode_chunk(codes, dtype, layout, c, o, &mut s.borrow_mut().symbols))
        });
    }
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        for (o, c) in out.chunks_mut(CHUNK_BYTES).zip(&chunks) {
            decode_chunk(codes, dtype, layout, c, o, &mut s.symbols)?;
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
    let info = FrameInfo::parse(frame)?;
    let expected = info.fingerprint.ok_or(DecodeError::WrongKind("this frame carries its own code (three-stage): use decode_three_stage_into"))?;
    if expected != book.fingerprint().0 as u32 || (info.dtype, info.layout) != (book.dtype(), book.layout()) {
        return Err(DecodeError::CodebookMismatch {
            expected,
            found: book.fingerprint(),
            found_dtype: book.dtype(),
            found_layout: book.layout(),
        });
    }
    check_output(&info, out)?;
    let codes: Vec<&StreamCode> = book.streams().iter().collect();
    decode_chunks(&codes, &info, frame, info.header_len, out)?;
    verify_checksum(&info, out)
}

/// Decodes a frame into a new buffer.
pub fn decode(book: &Codebook, frame: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let info = FrameInfo::parse(frame)?;
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
    let refs: Vec<&StreamCode> = codes.iter().collect();
    decode_chunks(&refs, &info, frame, pos, out)?;
    verify_checksum(&info, out)
}
