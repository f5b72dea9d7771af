//! Reading lanes: LSB-first bits back to symbols through a codebook's decode tables, four lanes
//! in lockstep. The kernel of the decoder; chunks, frames and checks of their sizes are
//! `crate::decode`'s. Every read is bounds-checked or goes through a zero-padded slow path.

use crate::codebook::{KernelChoice, LaneKernel, StreamCode, DECODE_TABLE_BITS, ENTRY_COUNT, ENTRY_LEN, PAIR_TABLE_BITS, QUAD_TABLE_BITS};
use crate::frame::LANES;

const TABLE_MASK: u64 = (1 << DECODE_TABLE_BITS) - 1;
const PAIR_MASK: u64 = (1 << PAIR_TABLE_BITS) - 1;
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
        let e = pairs[(r.bits & PAIR_MASK) as usize];
        if e[ENTRY_COUNT] != 0 && w + 2 <= out.len() {
            out[w..w + 2].copy_from_slice(&e[2..]);
            w += usize::from(e[ENTRY_COUNT]);
            r.bits >>= e[ENTRY_LEN];
            r.n -= u32::from(e[ENTRY_LEN]);
        } else {
            out[w] = r.decode(code)?;
            w += 1;
        }
    }
    Ok(())
}

/// The table lookup a lane-loop step makes: [`LaneKernel`] as a const parameter.
const SINGLE: u8 = 0;
const PAIR: u8 = 1;
const QUAD: u8 = 2;

/// Rounds a batch may run while some lane is idle (see `decode_lanes_k`): bounds the zeros an idle
/// lane reads and the bytes it writes to the sink.
const IDLE_ROUNDS: usize = 32;
/// What an idle lane reads: zeros, ≤ 7 bytes a round and 8 bytes a load.
static IDLE_INPUT: [u8; IDLE_ROUNDS * 7 + 8] = [0; IDLE_ROUNDS * 7 + 8];

/// Decodes four lanes in lockstep, then finishes each lane on the careful path.
///
/// `reach[l]` is what lane `l` may read: its own bytes and any after them in the same buffer (the
/// lanes that follow, the rest of the chunk). The loop's loads may run into those bytes, which
/// only ever fill the lookahead of a lane's last steps: a step decodes only whole codes, so while
/// the lane has at least `store·K` symbols left each round decodes the lane's own codes from the
/// lane's own bits. Bounding the loop by the reach instead of the lane's end leaves only the last
/// few symbols of each lane to the careful path, not the last 15 bytes' worth (45 symbols of an
/// exponent stream); what the lane consumed is checked against its own length by the caller.
///
/// Each lane's state is a read position `p` and a bit buffer `b`. A round moves `p` over the whole
/// bytes consumed, loads the next 8 bytes (≥ 56 unread bits) and takes `K` steps; a step looks the
/// next bits up in the table of `MODE` (one symbol, or up to two or four) and stores what the entry
/// holds (1, 2 or 4 bytes; bytes past the symbols decoded are overwritten by the next step).
/// `K` is the most steps for which every step's window (the bits its entry depends on: the table's
/// index width, or the code length where that is longer) still lies within the 56 valid bits after
/// what the round's earlier steps consumed.
///
/// Bits consumed are not counted step by step: a refill sets a sentinel bit above the 63 − c
/// bits it keeps (c = bits of the first byte already consumed), the steps shift it down with the
/// data, and the next refill reads the bits consumed since `p` as the buffer's leading zeros (the
/// trick huff0's fast loop uses, mirrored for an LSB-first stream). A step is then a mask, a load,
/// a shift by the entry itself, a store and an output advance (none for `SINGLE`, which always
/// decodes one symbol).
///
/// Bounds are checked once per batch of rounds, not per symbol: a round advances `p` by ≤ 7 bytes
/// and reads 8 bytes there, and writes ≤ `store·K` bytes of output, so the number of rounds that
/// stay inside every lane's reach and output is computed up front. Per-access checks cost 30% of
/// decode speed (perf annotate showed bounds tests and the spills they caused dominating the loop).
/// Lanes do not end together (multi-symbol steps advance each lane's output at its own pace): a
/// lane with no whole round left goes idle — its state is kept, and for the rest of the loop it
/// reads [`IDLE_INPUT`] and writes to a sink, in batches of ≤ [`IDLE_ROUNDS`] rounds — so that the
/// other lanes go on at the loop's speed (the careful path took 4–7% of all symbols at 4 KiB, at
/// several times the cost of a loop step).
#[inline(always)]
fn decode_lanes_k<const K: usize, const CHECK: bool, const MODE: u8, const ASM: bool>(
    code: &StreamCode,
    reach: [&[u8]; LANES],
    readers: &mut [LaneReader; LANES],
    outs: &mut [&mut [u8]; LANES],
) -> Result<(), ()> {
    let single = code.single_table();
    let pairs = code.pair_table();
    let quads = if MODE == QUAD { code.quad_table().expect("QUAD only for streams with a quad table") } else { &[[0u8; 8]; 1 << QUAD_TABLE_BITS] };
    // Bytes a step may store.
    let store = match MODE {
        SINGLE => 1,
        PAIR => 2,
        _ => 4,
    };
    const SENTINEL: u64 = 1 << 63;
    let mut p = [0usize; LANES];
    // Each lane starts with every bit before its first consumed: the sentinel alone, `c` = 0, or
    // where its reader stands (after `decode_lanes8`), the sentinel that many bits lower.
    let mut b = [SENTINEL; LANES];
    for l in 0..LANES {
        let bit = readers[l].consumed_bits();
        (p[l], b[l]) = (bit / 8, SENTINEL >> (bit % 8));
    }
    let mut w = [0usize; LANES];
    let ins = reach;
    let mut idle = [false; LANES];
    // Zero bits start the code's first canonical code (all zeros), so an idle lane decodes without
    // error where the code has any symbol; a code without one idles no lane.
    let can_idle = code.decode_long(0).is_some();
    // Idle lanes' output: a round writes ≤ store·K bytes, ≤ 24 (one-symbol steps: K ≤ 6; two- and
    // four-symbol steps: K ≤ 4).
    debug_assert!(store * K <= 24);
    let mut sink = [0u8; IDLE_ROUNDS * 24];
    let mut bad = false;
    loop {
        let mut rounds = usize::MAX;
        for l in 0..LANES {
            if idle[l] {
                continue;
            }
            let unread = ins[l].len() - p[l];
            let room = outs[l].len() - w[l];
            let lane_rounds = (unread.saturating_sub(8) / 7).min(room / (store * K));
            if lane_rounds == 0 {
                idle[l] = true;
            } else {
                rounds = rounds.min(lane_rounds);
            }
        }
        if rounds == usize::MAX || (!can_idle && idle.contains(&true)) {
            break;
        }
        if idle.contains(&true) {
            rounds = rounds.min(IDLE_ROUNDS);
        }
        // Positions as pointers, and no per-lane bit count: four lanes' state must fit in
        // x86-64's sixteen registers beside the table pointer.
        // (A loop, not `array::map`, which compiled to an out-of-line call per batch.)
        let (mut ps, mut ws, mut bs) = ([IDLE_INPUT.as_ptr(); LANES], [sink.as_mut_ptr(); LANES], [SENTINEL; LANES]);
        for l in 0..LANES {
            if !idle[l] {
                ps[l] = ins[l][p[l]..].as_ptr();
                ws[l] = outs[l][w[l]..].as_mut_ptr();
                bs[l] = b[l];
            }
        }
        let [mut p0, mut p1, mut p2, mut p3] = ps;
        let [mut w0, mut w1, mut w2, mut w3] = ws;
        let [mut b0, mut b1, mut b2, mut b3] = bs;
        macro_rules! refill {
            ($p:ident, $b:ident) => {{
                let c = $b.leading_zeros();
                // SAFETY: `rounds` was chosen so that this round's read, at ≤ 7 bytes a round past
                // the batch's start position, ends inside the lane's reach (an idle lane's: inside
                // `IDLE_INPUT`, ≤ `IDLE_ROUNDS` rounds).
                unsafe {
                    $p = $p.add((c >> 3) as usize);
                    $b = (u64::from_le($p.cast::<u64>().read_unaligned()) | SENTINEL) >> (c & 7);
                }
            }};
        }
        // The dependency chain from one symbol to the next is mask → table load → shift; the
        // output advance is off that chain.
        macro_rules! step {
            ($bits:ident, $w:ident, $k:expr) => {
                // One load an entry, taken apart in registers (see `PairEntry`); `e` shifts the
                // bits as it is, its low byte being the bits used.
                let (e, mut used, mut syms, mut count) = match MODE {
                    SINGLE => {
                        let e = single[($bits & TABLE_MASK) as usize];
                        (u64::from(e), u32::from(e & 0xff), u64::from(e >> 8), usize::from(e & 0xff != 0))
                    }
                    PAIR => {
                        let e = u32::from_le_bytes(pairs[($bits & PAIR_MASK) as usize]);
                        (u64::from(e), e & 0xff, u64::from(e >> 16), ((e >> 8) & 0xff) as usize)
                    }
                    _ => {
                        let e = u64::from_le_bytes(quads[($bits & QUAD_MASK) as usize]);
                        (e, (e & 0xff) as u32, e >> 32, ((e >> 8) & 0xff) as usize)
                    }
                };
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
                // batch's start position, fit in the lane's output (an idle lane's: in `sink`,
                // ≤ `IDLE_ROUNDS` rounds of ≤ 4·K bytes); a step writes `store` bytes at most
                // `store·k` bytes past the round's start (`SINGLE`: exactly `k`).
                unsafe {
                    match MODE {
                        SINGLE => $w.add($k).write(syms as u8),
                        PAIR => {
                            $w.cast::<[u8; 2]>().write_unaligned((syms as u16).to_le_bytes());
                            $w = $w.add(count);
                        }
                        _ => {
                            $w.cast::<[u8; 4]>().write_unaligned((syms as u32).to_le_bytes());
                            $w = $w.add(count);
                        }
                    }
                }
                $bits = if CHECK { $bits >> used } else { $bits.wrapping_shr(e as u32) };
            };
        }
        if cfg!(target_arch = "x86_64") && ASM && MODE == PAIR && !CHECK && K == 4 {
            #[cfg(target_arch = "x86_64")]
            {
                let mut state = super::x86::LaneState { p: [p0, p1, p2, p3], w: [w0, w1, w2, w3], b: [b0, b1, b2, b3] };
                // SAFETY: `ASM` is set only by the BMI2 build, called where the CPU has BMI2 and
                // LZCNT; `rounds` ≥ 1 rounds stay inside every lane's reach and output (see above:
                // the same bounds as the Rust loop's, whose steps the assembly repeats).
                unsafe { super::x86::pair_rounds(&mut state, pairs, rounds) };
                [p0, p1, p2, p3] = state.p;
                [w0, w1, w2, w3] = state.w;
                [b0, b1, b2, b3] = state.b;
            }
        } else {
            for _ in 0..rounds {
                refill!(p0, b0);
                refill!(p1, b1);
                refill!(p2, b2);
                refill!(p3, b3);
                for k in 0..K {
                    step!(b0, w0, k);
                    step!(b1, w1, k);
                    step!(b2, w2, k);
                    step!(b3, w3, k);
                }
                if MODE == SINGLE {
                    // SAFETY: the round's K bytes were written inside the lane's output (see above).
                    unsafe {
                        w0 = w0.add(K);
                        w1 = w1.add(K);
                        w2 = w2.add(K);
                        w3 = w3.add(K);
                    }
                }
            }
        }
        // An idle lane's pointers point into `IDLE_INPUT` and `sink`: its state is not kept.
        let (ps, ws, bs) = ([p0, p1, p2, p3], [w0, w1, w2, w3], [b0, b1, b2, b3]);
        for l in 0..LANES {
            if !idle[l] {
                // SAFETY: both pointers of each pair point into (or one past) the same lane buffer.
                unsafe {
                    p[l] = ps[l].offset_from(ins[l].as_ptr()) as usize;
                    w[l] = ws[l].offset_from(outs[l].as_ptr()) as usize;
                }
                b[l] = bs[l];
            }
        }
        if bad {
            return Err(());
        }
    }
    for l in 0..LANES {
        readers[l] = LaneReader::at_bit(readers[l].buf, p[l] * 8 + b[l].leading_zeros() as usize);
        decode_tail(&mut readers[l], code, &mut outs[l][w[l]..])?;
    }
    Ok(())
}

/// One-symbol steps a refill for a code whose codes all resolve in the primary table (longest
/// `max_len` ≤ 12 bits): a one-symbol step needs only its own code's bits to be valid (the entry is
/// the same whatever bits follow), so `K` = 56 / max_len — fewer refills, which sit on each lane's
/// critical path (mantissa bytes, 9–11-bit codes: 5–6 steps a refill instead of 4).
const fn single_steps(max_len: u32) -> usize {
    match max_len {
        0..=9 => 6,
        10..=11 => 5,
        _ => 4,
    }
}

/// Picks the loop variant for `code`: its kernel, whether codes that do not resolve in one lookup
/// can occur (the slow-path test), and `K`, the most steps 56 bits allow.
#[inline(always)]
fn decode_lanes_generic<const ASM: bool>(code: &StreamCode, kernel: LaneKernel, reach: [&[u8]; LANES], readers: &mut [LaneReader; LANES], outs: &mut [&mut [u8]; LANES]) -> Result<(), ()> {
    let kernel = match kernel {
        LaneKernel::Quad if code.quad_table().is_none() => LaneKernel::Pair,
        k => k,
    };
    match (kernel, code.max_len(), code.single_lookup()) {
        (LaneKernel::Single, max_len, true) => match single_steps(max_len) {
            6 => decode_lanes_k::<6, false, SINGLE, ASM>(code, reach, readers, outs),
            5 => decode_lanes_k::<5, false, SINGLE, ASM>(code, reach, readers, outs),
            _ => decode_lanes_k::<4, false, SINGLE, ASM>(code, reach, readers, outs),
        },
        (LaneKernel::Single, 0..=11, _) => decode_lanes_k::<5, true, SINGLE, ASM>(code, reach, readers, outs),
        (LaneKernel::Single, 0..=14, _) => decode_lanes_k::<4, true, SINGLE, ASM>(code, reach, readers, outs),
        (LaneKernel::Single, _, _) => decode_lanes_k::<3, true, SINGLE, ASM>(code, reach, readers, outs),
        (LaneKernel::Pair, 0..=12, true) => decode_lanes_k::<4, false, PAIR, ASM>(code, reach, readers, outs),
        (LaneKernel::Pair, 0..=14, _) => decode_lanes_k::<4, true, PAIR, ASM>(code, reach, readers, outs),
        (LaneKernel::Pair, _, _) => decode_lanes_k::<3, true, PAIR, ASM>(code, reach, readers, outs),
        // A quad entry never covers a 12-bit code, so the slow-path test always stays.
        (LaneKernel::Quad, 0..=14, _) => decode_lanes_k::<4, true, QUAD, ASM>(code, reach, readers, outs),
        (LaneKernel::Quad, _, _) => decode_lanes_k::<3, true, QUAD, ASM>(code, reach, readers, outs),
    }
}

/// The same loop compiled with BMI2 and LZCNT (`shrx`: variable shifts that need no `cl` register,
/// which four lanes of state cannot spare). huff0 makes the same run-time choice.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi2,lzcnt")]
fn decode_lanes_bmi2(code: &StreamCode, kernel: LaneKernel, reach: [&[u8]; LANES], readers: &mut [LaneReader; LANES], outs: &mut [&mut [u8]; LANES]) -> Result<(), ()> {
    decode_lanes_generic::<true>(code, kernel, reach, readers, outs)
}

/// Decodes four lanes of one stream with the kernel its code chose and the BMI2 build where the CPU
/// has it, or with the kernel and build `choice` forces (every kernel decodes every code: tests
/// and fuzzing run them all on the same frames).
pub(crate) fn decode_lanes(code: &StreamCode, choice: KernelChoice, reach: [&[u8]; LANES], readers: &mut [LaneReader; LANES], outs: &mut [&mut [u8]; LANES]) -> Result<(), ()> {
    let kernel = choice.kernel.unwrap_or(code.lane_kernel());
    #[cfg(target_arch = "x86_64")]
    if !choice.portable && std::arch::is_x86_feature_detected!("bmi2") && std::arch::is_x86_feature_detected!("lzcnt") {
        // SAFETY: the CPU has BMI2 and LZCNT, checked just above.
        return unsafe { decode_lanes_bmi2(code, kernel, reach, readers, outs) };
    }
    decode_lanes_generic::<false>(code, kernel, reach, readers, outs)
}

/// Decodes eight lanes of one stream: where the stream's kernel is one symbol a lookup and the
/// BMI2 build runs, the eight lanes go through [`super::x86`]'s eight-lane loop as far as every
/// lane's reach and output allow, then every lane goes on from where it stands, four at a time,
/// as in [`decode_lanes`].
///
/// Why eight: four lanes of one-symbol steps (a mask, a table load and a shift by the entry, ~7
/// cycles a step) left the core waiting on their chains, ~44 cycles a round of 4·5 mantissa
/// symbols; eight give it twice the independent work. The eight bit buffers fit the general
/// registers (read positions wait in vector registers) because one-symbol steps advance every
/// lane's output alike: the loop writes a round's symbols to one small stage, rows of eight, and
/// [`super::x86::unstage`] moves them to the lanes every [`STAGE_ROUNDS`] rounds.
pub(crate) fn decode_lanes8(code: &StreamCode, choice: KernelChoice, reach: [&[u8]; 8], readers: &mut [LaneReader; 8], outs: &mut [&mut [u8]; 8]) -> Result<(), ()> {
    // Symbols of every lane the eight-lane loop decoded (none without it).
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    {
        let kernel = choice.kernel.unwrap_or(code.lane_kernel());
        let fits = kernel == LaneKernel::Single && code.single_lookup();
        if fits && !choice.portable && std::arch::is_x86_feature_detected!("bmi2") && std::arch::is_x86_feature_detected!("lzcnt") {
            let k = single_steps(code.max_len());
            let rounds = (0..8).map(|l| (reach[l].len().saturating_sub(8) / 7).min(outs[l].len() / k)).min().unwrap_or(0);
            const SENTINEL: u64 = 1 << 63;
            let mut stage = [0u8; STAGE_ROUNDS * 6 * 8];
            let mut lanes = super::x86::Lanes8 { p: reach.map(|r| r.as_ptr()), b: [SENTINEL; 8], stage: stage.as_mut_ptr() };
            let mut left = rounds;
            while left > 0 {
                let batch = left.min(STAGE_ROUNDS);
                lanes.stage = stage.as_mut_ptr();
                // SAFETY: the CPU has BMI2 and LZCNT (checked above). `rounds` rounds read ≤ 7
                // bytes a round past each lane's start and 8 bytes there, inside its reach; a
                // batch writes 8·k ≤ 48 bytes a round, ≤ STAGE_ROUNDS rounds, to the stage.
                unsafe {
                    match k {
                        6 => super::x86::single8_rounds_k6(&mut lanes, code.single_table(), batch),
                        5 => super::x86::single8_rounds_k5(&mut lanes, code.single_table(), batch),
                        _ => super::x86::single8_rounds_k4(&mut lanes, code.single_table(), batch),
                    }
                }
                super::x86::unstage(&stage[..8 * k * batch], outs, done);
                done += k * batch;
                left -= batch;
            }
            if rounds > 0 {
                for l in 0..8 {
                    // SAFETY: the loop moved each read position forward inside the lane's reach.
                    let bytes = unsafe { lanes.p[l].offset_from(reach[l].as_ptr()) } as usize;
                    readers[l] = LaneReader::at_bit(readers[l].buf, bytes * 8 + lanes.b[l].leading_zeros() as usize);
                }
            }
        }
    }
    // The rest (or all, for other kernels and builds) four lanes at a time.
    fn four<T>(lanes: &mut [T]) -> &mut [T; LANES] {
        lanes.try_into().expect("four lanes")
    }
    let mut rest = std::mem::take(outs).map(|o| &mut o[done..]);
    for half in [0..LANES, LANES..2 * LANES] {
        let reach = reach[half.clone()].try_into().expect("four lanes");
        decode_lanes(code, choice, reach, four(&mut readers[half.clone()]), four(&mut rest[half]))?;
    }
    Ok(())
}

/// Rounds the eight-lane loop runs between moves from its stage to the lanes: 32 rounds of ≤ 48
/// bytes, 1.5 KiB of stage, stays in L1 beside the tables.
#[cfg(target_arch = "x86_64")]
const STAGE_ROUNDS: usize = 32;
