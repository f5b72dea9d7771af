//! Reading lanes: LSB-first bits back to symbols through a codebook's decode tables, four lanes
//! in lockstep. The kernel of the decoder; chunks, frames and checks of their sizes are
//! `crate::decode`'s. Every read is bounds-checked or goes through a zero-padded slow path.

use crate::codebook::{StreamCode, DECODE_TABLE_BITS, QUAD_TABLE_BITS};
use crate::frame::LANES;

const TABLE_MASK: u64 = (1 << DECODE_TABLE_BITS) - 1;
const QUAD_MASK: u64 = (1 << QUAD_TABLE_BITS) - 1;

/// An LSB-first bit reader over one lane. `pos` may run past the end of `buf`: bytes there read as
/// zeros, and the final check catches a lane that needed them.
pub(crate) struct LaneReader<'a> {
    pub(crate) buf: &'a [u8],
    pos: usize,
    bits: u64,
    /// Valid bits in `bits`.
    n: u32,
}

impl<'a> LaneReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        LaneReader { buf, pos: 0, bits: 0, n: 0 }
    }

    /// A reader positioned `bit` bits into `buf`.
    pub(crate) fn at_bit(buf: &'a [u8], bit: usize) -> Self {
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
    pub(crate) fn consumed_bits(&self) -> usize {
        self.pos * 8 - self.n as usize
    }
}

/// Decodes the rest of one lane with checked reads and writes (two symbols a lookup where they
/// fit, so that lanes left long by the lockstep loop are not slow).
pub(crate) fn decode_tail(r: &mut LaneReader, code: &StreamCode, out: &mut [u8]) -> Result<(), ()> {
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

pub(crate) fn decode_lanes(code: &StreamCode, readers: &mut [LaneReader; LANES], outs: &mut [&mut [u8]; LANES]) -> Result<(), ()> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("bmi2") {
        // SAFETY: the CPU has BMI2, checked just above.
        return unsafe { decode_lanes_bmi2(code, readers, outs) };
    }
    decode_lanes_generic(code, readers, outs)
}
