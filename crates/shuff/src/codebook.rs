//! Codebooks: fixed per-stream Huffman codes with their encode and decode tables.
//!
//! A [`Codebook`] covers one dtype + layout: one [`StreamCode`] per symbol stream. Every one of the
//! 256 symbols of every stream has a code, because a fixed codebook cannot add symbols later.
//! Codebooks are immutable after construction and `Send + Sync`, so one `Arc<Codebook>` serves any
//! number of threads.

use crate::huffman::{self, canonical_codes, CodeError};
use crate::stats::{Distribution, Histogram};
use crate::{DType, Layout};
use std::fmt;

/// The longest code a codebook may hold. 16 keeps the compact form at 4 bits per length and lets an
/// encoder append any code to a 64-bit accumulator that has at most 47 bits pending.
pub const MAX_CODE_LEN: u32 = 16;

/// The default maximum code length for `bytes` codebooks; see [`Layout::default_max_len`].
pub const DEFAULT_MAX_LEN: u32 = 12;

/// Probability floor for symbols never seen in training, as a weight on a `2^40` scale: small
/// enough not to steal code space from real symbols beyond what the length limit forces, and > 0 so
/// every symbol stays encodable.
const WEIGHT_SCALE: f64 = (1u64 << 40) as f64;

/// What is wrong with a set of code lengths, a codebook file, or a codebook request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodebookError {
    /// The number of streams does not match the layout.
    #[error("{dtype}/{layout} needs {expected} stream code(s), found {found}")]
    WrongStreamCount {
        /// Element type.
        dtype: DType,
        /// Layout.
        layout: Layout,
        /// Streams the layout has.
        expected: usize,
        /// Streams given.
        found: usize,
    },
    /// A stream does not have exactly 256 lengths.
    #[error("stream {stream}: expected 256 code lengths, found {found}")]
    WrongSymbolCount {
        /// Stream index.
        stream: usize,
        /// Lengths given.
        found: usize,
    },
    /// A symbol has no code (length 0); fixed codebooks must cover all 256 symbols.
    #[error("stream {stream}: symbol {symbol} has no code (length 0); a fixed codebook must give every symbol a code")]
    MissingCode {
        /// Stream index.
        stream: usize,
        /// The symbol.
        symbol: u8,
    },
    /// A code longer than [`MAX_CODE_LEN`].
    #[error("stream {stream}: symbol {symbol} has a {len}-bit code, longer than the maximum {max}")]
    TooLong {
        /// Stream index.
        stream: usize,
        /// The symbol.
        symbol: u8,
        /// Its length.
        len: u32,
        /// The maximum.
        max: u32,
    },
    /// Kraft sum below 1: some bit patterns decode to nothing.
    #[error("stream {stream}: incomplete code (Kraft sum {kraft:.6} < 1): some bit patterns would decode to nothing")]
    Incomplete {
        /// Stream index.
        stream: usize,
        /// The Kraft sum.
        kraft: f64,
    },
    /// Kraft sum above 1: not a prefix code.
    #[error("stream {stream}: oversubscribed code (Kraft sum {kraft:.6} > 1): not a prefix code")]
    Oversubscribed {
        /// Stream index.
        stream: usize,
        /// The Kraft sum.
        kraft: f64,
    },
    /// Code construction failed.
    #[error(transparent)]
    Code(#[from] CodeError),
    /// The stored fingerprint does not match the lengths (the file was edited or damaged).
    #[error("class `{class}`: stored fingerprint {stored} does not match its code lengths, which give {computed}")]
    FingerprintMismatch {
        /// Class name.
        class: String,
        /// Fingerprint in the file.
        stored: Fingerprint,
        /// Fingerprint computed from the lengths.
        computed: Fingerprint,
    },
    /// Not a codebook file, or a damaged one.
    #[error("malformed codebook file: {0}")]
    Malformed(String),
}

/// A stable 64-bit hash identifying a code (FNV-1a over a versioned, canonical byte string).
/// Frames carry fingerprints instead of codebooks, so decoders can tell a wrong codebook.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 16 {
            return Err(format!("fingerprint `{s}` is not 16 hex digits"));
        }
        u64::from_str_radix(s, 16).map(Fingerprint).map_err(|_| format!("fingerprint `{s}` is not hex"))
    }
}

/// FNV-1a, 64-bit. Chosen for being trivially stable across platforms and versions (we never
/// change it; the format version is hashed in instead).
pub(crate) struct Fnv1a(u64);

impl Fnv1a {
    pub(crate) fn new(domain: &[u8]) -> Self {
        let mut h = Fnv1a(0xcbf2_9ce4_8422_2325);
        h.write(domain);
        h
    }
    pub(crate) fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub(crate) fn finish(&self) -> Fingerprint {
        Fingerprint(self.0)
    }
}

/// Index width of the primary decode table: 4096 entries of 2 bytes (8 KiB, L1-resident). Codes up
/// to this long decode with one lookup; longer (rare, by construction) codes take a slow path.
pub const DECODE_TABLE_BITS: u32 = 12;

/// Canonical decoding for codes longer than [`DECODE_TABLE_BITS`] (see [`StreamCode::decode_long`]).
#[derive(Clone, Debug)]
pub struct LongCodes {
    /// First canonical code of each length, MSB-first.
    pub first: [u32; 17],
    /// Number of codes of each length.
    pub count: [u32; 17],
    /// Index into `sorted` of the first symbol of each length.
    pub offset: [u32; 17],
    /// Symbols with a code, ordered by (length, symbol).
    pub sorted: [u8; 256],
    /// The longest code.
    pub max_len: u32,
}

/// The code of one symbol stream: lengths, canonical codes and the tables that make coding a lookup.
#[derive(Clone)]
pub struct StreamCode {
    lengths: [u8; 256],
    codes: [u16; 256],
    encode: [u32; 256],
    decode: Box<[u16; 1 << DECODE_TABLE_BITS]>,
    /// Two-symbol decode table (see [`StreamCode::pair_table`]).
    pairs: Box<[PairEntry; 1 << PAIR_TABLE_BITS]>,
    /// One-symbol table of the single-symbol lane loop (see [`StreamCode::single_table`]).
    singles: Box<[u16; 1 << DECODE_TABLE_BITS]>,
    /// Four-symbol decode table (see [`StreamCode::quad_table`]), for streams where it decodes
    /// more symbols per lookup than the pair table.
    quads: Option<Box<[QuadEntry; 1 << QUAD_TABLE_BITS]>>,
    /// Two-symbol encode table (see [`StreamCode::pair_encode_table`]), built on first use.
    pair_encode: std::sync::OnceLock<PairEncodeTable>,
    long: LongCodes,
    max_len: u32,
    /// Complete code with every code ≤ DECODE_TABLE_BITS: every primary-table entry is a symbol.
    single_lookup: bool,
    /// Every symbol has an 8-bit code (see [`StreamCode::is_flat`]); asked for every chunk.
    flat: bool,
    /// The lookup the decoder's lane loop makes (see [`LaneKernel`]).
    kernel: LaneKernel,
    fingerprint: Fingerprint,
}

impl fmt::Debug for StreamCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamCode")
            .field("fingerprint", &self.fingerprint)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl PartialEq for StreamCode {
    fn eq(&self, other: &Self) -> bool {
        self.lengths == other.lengths
    }
}

/// An entry of [`StreamCode::pair_table`], read by the decoder as one little-endian `u32`: the bits
/// the entry's codes use (byte [`ENTRY_LEN`]), how many symbols it decodes (byte [`ENTRY_COUNT`]),
/// then the two symbols (the second 0 when there is one). The length sits in the low byte so that
/// x86's shift, which masks its count to 6 bits, consumes the bits straight from the entry, and
/// the count in the second so that it is one `movzx` from a high-byte register; the symbols are
/// stored from the entry shifted down. (Loading each field on its own was tried: LLVM then holds
/// more values at once and spills four lanes' state to the stack, 1.35 → 1.18 GB/s.)
pub type PairEntry = [u8; 4];
/// Byte of a [`PairEntry`] or [`QuadEntry`] holding the bits its codes use.
pub const ENTRY_LEN: usize = 0;
/// Byte of a [`PairEntry`] or [`QuadEntry`] holding how many symbols it decodes (0: none fit).
pub const ENTRY_COUNT: usize = 1;

/// An entry of [`StreamCode::quad_table`], read as one little-endian `u64`: bits used and symbol
/// count as in [`PairEntry`], two bytes of padding, then four symbols.
pub type QuadEntry = [u8; 8];

/// Index bits of [`StreamCode::quad_table`]: 2^11 entries of 8 bytes, 16 KiB, half of L1.
pub const QUAD_TABLE_BITS: u32 = 11;

/// The lookup the decoder's lane loop makes at each step for one stream, chosen once per code
/// (offline: no message pays for the choice) by `LaneKernel::choose`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaneKernel {
    /// One symbol a lookup in the single-symbol table: the fewest instructions a step (the output
    /// advances by a constant), best for near-uniform streams such as mantissa bytes, whose 7–9-bit
    /// codes rarely pair up inside the pair table's 13 bits.
    Single,
    /// One or two symbols a lookup in the pair table (bf16 `bytes`: 1.77 a lookup).
    Pair,
    /// Up to four symbols a lookup in the quad table (exponent bytes: 3.5 a lookup).
    Quad,
}

/// Which lane loop decodes a frame's coded streams: by default each stream's own
/// [`LaneKernel`] in the BMI2 build where the CPU has it. Tests and fuzz targets force every
/// kernel and the portable build in turn, so that all of them are checked on the same frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelChoice {
    /// The kernel for every coded stream (`None`: each stream's own).
    pub kernel: Option<LaneKernel>,
    /// Use the portable build even where the CPU has BMI2.
    pub portable: bool,
}

impl KernelChoice {
    /// Every forced choice a test should run: each kernel, and each stream's own, in both builds.
    pub fn all() -> Vec<KernelChoice> {
        let kernels = [None, Some(LaneKernel::Single), Some(LaneKernel::Pair), Some(LaneKernel::Quad)];
        [false, true].iter().flat_map(|&portable| kernels.map(|kernel| KernelChoice { kernel, portable })).collect()
    }
}

impl LaneKernel {
    /// What a step costs, relative: µops of the compiled loops (a single-symbol step needs no
    /// symbol count and stores one byte at a fixed offset), checked by forcing each kernel on real
    /// streams — mantissa bytes (1.15 symbols a pair lookup) decode faster one at a time, bf16
    /// `bytes` (1.77) faster in pairs (1.33 vs 1.03 GB/s). A quad step costs a quarter more than
    /// a pair step: its entries never cover a 12-bit code, so the slow-path test always stays, and
    /// long codes leave fewer steps a refill.
    fn step_cost(self) -> u64 {
        match self {
            LaneKernel::Single => 20,
            LaneKernel::Pair => 28,
            LaneKernel::Quad => 35,
        }
    }

    /// The kernel with the lowest cost per symbol, from each table's mean symbols per entry: the
    /// bits a decoder indexes a table with are close to uniform on a coded stream, so every entry
    /// is equally likely and the mean is the symbols a lookup yields.
    fn choose(decode: &[u16; 1 << DECODE_TABLE_BITS], pairs: &[PairEntry; 1 << PAIR_TABLE_BITS], quads: &[QuadEntry; 1 << QUAD_TABLE_BITS]) -> LaneKernel {
        // Symbols summed over each table, scaled to 2^16 entries.
        let single = (decode.iter().filter(|&&e| e >> 8 != 0).count() as u64) << (16 - DECODE_TABLE_BITS);
        let pair = pairs.iter().map(|e| u64::from(e[ENTRY_COUNT])).sum::<u64>() << (16 - PAIR_TABLE_BITS);
        let quad = quads.iter().map(|e| u64::from(e[ENTRY_COUNT])).sum::<u64>() << (16 - QUAD_TABLE_BITS);
        // Cost per symbol compared as cost_a · symbols_b < cost_b · symbols_a.
        let better = |a: (LaneKernel, u64), b: (LaneKernel, u64)| if a.0.step_cost() * b.1 <= b.0.step_cost() * a.1 { a } else { b };
        better(better((LaneKernel::Single, single), (LaneKernel::Pair, pair)), (LaneKernel::Quad, quad)).0
    }
}

/// Builds the four-symbol table: as many leading codes as fit in the window, up to four. Skewed
/// streams (exponents: 1–3-bit codes) get ~3.5 a lookup; whether that beats the other kernels is
/// [`LaneKernel::choose`]'s decision.
fn quad_table(decode: &[u16; 1 << DECODE_TABLE_BITS]) -> Box<[QuadEntry; 1 << QUAD_TABLE_BITS]> {
    let mut quads = Box::new([[0u8; 8]; 1 << QUAD_TABLE_BITS]);
    for (i, q) in quads.iter_mut().enumerate() {
        let (mut used, mut syms) = (0u32, [0u8; 4]);
        let mut count = 0;
        while count < 4 {
            // Unknown bits above the window read as zeros: a code counts only if it fits.
            let e = decode[(i >> used) & ((1 << DECODE_TABLE_BITS) - 1)];
            let len = u32::from(e >> 8);
            if len == 0 || used + len > QUAD_TABLE_BITS {
                break;
            }
            syms[count] = e as u8;
            used += len;
            count += 1;
        }
        if count > 0 {
            *q = [used as u8, count as u8, 0, 0, syms[0], syms[1], syms[2], syms[3]];
        }
    }
    quads
}

/// Longest pair of codes [`StreamCode::pair_encode_table`] holds, so that two pairs and the ≤ 7
/// bits left from the last flush fit the encoder's 64-bit accumulator.
pub const PAIR_ENCODE_MAX_BITS: u32 = 27;

/// The encoder's two-symbol table: for each pair of symbols (a little-endian `u16`), the pair's
/// LSB-first code and its length, 0 when the two codes are longer than [`PAIR_ENCODE_MAX_BITS`]
/// together (rare: only long codes of unlikely symbols), which sends the encoder to the one-symbol
/// table. One lookup and one bit write per two symbols. Code and length sit in tables of their
/// own so that each is one load straight into the register that uses it (a packed entry took a
/// copy, a shift and a mask a pair to take apart; with this and four symbols a load, bf16 `bytes`
/// encode went 1.42 → 1.85 GB/s at 64 KiB). 320 KiB: the tables live in L2, which is fine for
/// loads whose addresses come straight from the input.
#[derive(Clone)]
pub struct PairEncodeTable {
    /// LSB-first code of each pair.
    pub codes: Box<[u32; 1 << 16]>,
    /// Bits of each pair's code (0: too long for the table).
    pub lens: Box<[u8; 1 << 16]>,
}

/// Index bits of [`StreamCode::pair_table`]. 13 bits, 32 KiB, decode ~1.77 symbols a lookup of
/// bf16 `bytes` against 1.56 at 12 bits (16 KiB).
pub const PAIR_TABLE_BITS: u32 = 13;

/// Builds the two-symbol table from the primary one: after the first code of length `l1`, the
/// remaining `PAIR_TABLE_BITS − l1` bits of the index are the start of the next code, which
/// counts only if its length fits in them (the primary entry for those bits, padded with zeros, is
/// then the right one whatever the padding).
fn pair_table(decode: &[u16; 1 << DECODE_TABLE_BITS]) -> Box<[PairEntry; 1 << PAIR_TABLE_BITS]> {
    let mut pairs = Box::new([[0u8; 4]; 1 << PAIR_TABLE_BITS]);
    for (i, p) in pairs.iter_mut().enumerate() {
        let mask = (1 << DECODE_TABLE_BITS) - 1;
        let first = decode[i & mask];
        let l1 = u32::from(first >> 8);
        if l1 == 0 {
            continue;
        }
        let second = decode[(i >> l1) & mask];
        let l2 = u32::from(second >> 8);
        *p = if l2 != 0 && l1 + l2 <= PAIR_TABLE_BITS {
            [(l1 + l2) as u8, 2, first as u8, second as u8]
        } else {
            [l1 as u8, 1, first as u8, 0]
        };
    }
    pairs
}

impl StreamCode {
    /// Builds the tables for `lengths` (each ≤ [`MAX_CODE_LEN`], Kraft sum ≤ 1, checked by the
    /// caller). A length of 0 means the symbol has no code (only per-message three-stage codes have
    /// such symbols); bit patterns that start no code decode to an error.
    pub(crate) fn build(lengths: [u8; 256], fingerprint: Fingerprint) -> Self {
        let canon = canonical_codes(&lengths);
        let mut codes = [0u16; 256];
        let mut encode = [0u32; 256];
        let max_len = u32::from(*lengths.iter().max().expect("256 lengths"));
        let mut decode = Box::new([0u16; 1 << DECODE_TABLE_BITS]);
        let mut long = LongCodes { first: [0; 17], count: [0; 17], offset: [0; 17], sorted: [0; 256], max_len };
        for s in 0..256 {
            let len = u32::from(lengths[s]);
            if len == 0 {
                continue;
            }
            codes[s] = canon[s] as u16;
            // Bitstreams are LSB-first, so codes are stored bit-reversed: the first bit of the code
            // is the lowest bit written, and the decoder can index its table with the low bits.
            let rev = canon[s].reverse_bits() >> (32 - len);
            encode[s] = rev | (len << 16);
            long.count[len as usize] += 1;
            if len <= DECODE_TABLE_BITS {
                let entry = s as u16 | ((len as u16) << 8);
                for high in 0..(1u32 << (DECODE_TABLE_BITS - len)) {
                    decode[(rev | (high << len)) as usize] = entry;
                }
            }
        }
        // Entries left at 0 (length 0) send the decoder to `decode_long`.
        let mut next = 0u32;
        for len in 1..=16usize {
            long.offset[len] = next;
            next += long.count[len];
        }
        let mut fill = long.offset;
        for s in 0..256 {
            let len = lengths[s] as usize;
            if len > 0 {
                long.sorted[fill[len] as usize] = s as u8;
                fill[len] += 1;
                if long.count[len] > 0 && fill[len] == long.offset[len] + 1 {
                    long.first[len] = canon[s];
                }
            }
        }
        let single_lookup = max_len <= DECODE_TABLE_BITS && huffman::is_complete(&lengths);
        let pairs = pair_table(&decode);
        let quads = quad_table(&decode);
        let kernel = LaneKernel::choose(&decode, &pairs, &quads);
        // The quad table is kept only where its loop runs (the careful path never reads it).
        let quads = (kernel == LaneKernel::Quad).then_some(quads);
        // The primary entry with its two bytes swapped: the bits used in the low byte, as in a
        // `PairEntry`, so that the entry itself shifts the bit buffer. The single-symbol loop is
        // bound by the chain lookup → shift, and taking the length out of the high byte first
        // lengthened it by a cycle (mantissa bytes: 1.20 → 1.29 GB/s in the `exponent` layout).
        let singles = Box::new(decode.map(|e| e.rotate_left(8)));
        let flat = lengths.iter().all(|&l| l == 8);
        StreamCode { lengths, codes, encode, decode, pairs, singles, quads, pair_encode: Default::default(), long, max_len, single_lookup, flat, kernel, fingerprint }
    }

    /// Code length of every symbol, in bits.
    pub fn lengths(&self) -> &[u8; 256] {
        &self.lengths
    }

    /// Canonical code of every symbol, MSB-first in the low `len` bits.
    pub fn codes(&self) -> &[u16; 256] {
        &self.codes
    }

    /// Encode table: for symbol `s`, the bit-reversed (LSB-first) code in bits 0..16 and its length
    /// in bits 16..21.
    #[inline]
    pub fn encode_table(&self) -> &[u32; 256] {
        &self.encode
    }

    /// Primary decode table, indexed by the next [`DECODE_TABLE_BITS`] bits of an LSB-first stream:
    /// symbol in bits 0..8, code length in bits 8..13; length 0 marks a longer code (see
    /// [`StreamCode::decode_long`]) or, in a partial code, a pattern that starts no code.
    #[inline]
    pub fn decode_table(&self) -> &[u16; 1 << DECODE_TABLE_BITS] {
        &self.decode
    }

    /// Two-symbol decode table, indexed by the next [`PAIR_TABLE_BITS`] bits: the next one or two
    /// symbols whose codes fit in them together. Entry (see [`PairEntry`]): the
    /// symbols (the second is 0 when there is one), the bits consumed, the symbol count; a count
    /// of 0 marks a longer code or a pattern that starts no code, as in the primary table. Pairs
    /// halve the lookups when codes are short, which is where decoding spends its time.
    #[inline]
    pub fn pair_table(&self) -> &[PairEntry; 1 << PAIR_TABLE_BITS] {
        &self.pairs
    }

    /// One-symbol decode table of the [`LaneKernel::Single`] loop, indexed like
    /// [`StreamCode::decode_table`]: the code length in bits 0..8 (0: a longer code or a pattern
    /// that starts no code), the symbol in bits 8..16.
    #[inline]
    pub fn single_table(&self) -> &[u16; 1 << DECODE_TABLE_BITS] {
        &self.singles
    }

    /// Four-symbol decode table, indexed by the next [`QUAD_TABLE_BITS`] bits (entry: see
    /// [`QuadEntry`]); a count of 0 marks a code that does not fit the window, decoded with
    /// [`StreamCode::decode_long`]. `None` unless the stream's kernel is [`LaneKernel::Quad`].
    #[inline]
    pub fn quad_table(&self) -> Option<&[QuadEntry; 1 << QUAD_TABLE_BITS]> {
        self.quads.as_deref()
    }

    /// The tables the decoder reads, by name and size in bytes: first the table its lane loop looks
    /// up on every step (single, pair or quad, as [`StreamCode::lane_kernel`] chose), then those of
    /// the careful path that finishes each lane (the pair table, the primary table and the canonical
    /// tables of codes longer than [`DECODE_TABLE_BITS`]). Built once per codebook, offline: no
    /// message pays for them.
    pub fn decoder_tables(&self) -> Vec<(&'static str, usize)> {
        let hot = match (self.kernel, &self.quads) {
            (LaneKernel::Quad, Some(q)) => ("quad", std::mem::size_of_val(&**q)),
            (LaneKernel::Single, _) => ("single", std::mem::size_of_val(&*self.singles)),
            _ => ("pair", std::mem::size_of_val(&*self.pairs)),
        };
        let mut tables = vec![hot];
        if hot.0 != "pair" {
            // The careful path that finishes each lane decodes pairs where they fit.
            tables.push(("pair", std::mem::size_of_val(&*self.pairs)));
        }
        tables.extend([("primary", std::mem::size_of_val(&*self.decode)), ("long codes", std::mem::size_of::<LongCodes>())]);
        tables
    }

    /// The lookup the decoder's lane loop makes for this stream.
    pub fn lane_kernel(&self) -> LaneKernel {
        self.kernel
    }

    /// Two-symbol encode table, indexed by two consecutive symbols read as a little-endian `u16`
    /// (see [`PairEncodeTable`]). Built on first use.
    pub fn pair_encode_table(&self) -> &PairEncodeTable {
        self.pair_encode.get_or_init(|| {
            let mut t = PairEncodeTable { codes: vec![0; 1 << 16].into_boxed_slice().try_into().expect("65536 pairs"), lens: Box::new([0; 1 << 16]) };
            for pair in 0..1 << 16 {
                let (a, b) = (self.encode[pair & 0xff], self.encode[pair >> 8]);
                let (la, lb) = (a >> 16, b >> 16);
                if la + lb <= PAIR_ENCODE_MAX_BITS {
                    t.codes[pair] = (a & 0xffff) | ((b & 0xffff) << la);
                    t.lens[pair] = (la + lb) as u8;
                }
            }
            t
        })
    }

    /// Whether the CPU decoder runs eight lanes of this stream in lockstep: its kernel is one
    /// symbol a lookup and every code resolves in the primary table ([`Self::single_lookup`]: no
    /// slow path), which is what the eight-lane loop needs (see `encode::cpu_lanes`).
    pub fn has_eight_lane_loop(&self) -> bool {
        self.kernel == LaneKernel::Single && self.single_lookup
    }

    /// Decodes the code at the low bits of `bits` (LSB-first) whatever its length — the slow path
    /// of lane loops whose table did not resolve it: `(symbol, length)`, or `None` if the bits
    /// start no code. Codes up to [`DECODE_TABLE_BITS`] come from the primary table (a quad step
    /// sends 12-bit codes here: two thirds of its slow steps on bf16 exponents, where walking
    /// from length 1 took 5% of decoding a 4 KiB message); longer ones are walked canonically.
    #[cold]
    pub fn decode_long(&self, bits: u64) -> Option<(u8, u32)> {
        let e = self.decode[(bits & ((1 << DECODE_TABLE_BITS) - 1)) as usize];
        if e >> 8 != 0 {
            return Some((e as u8, u32::from(e >> 8)));
        }
        let l = &self.long;
        // The first DECODE_TABLE_BITS bits, MSB-first: the canonical code's prefix.
        let mut code = (bits as u32 & ((1 << DECODE_TABLE_BITS) - 1)).reverse_bits() >> (32 - DECODE_TABLE_BITS);
        for len in DECODE_TABLE_BITS + 1..=l.max_len {
            code = (code << 1) | ((bits >> (len - 1)) & 1) as u32;
            let i = len as usize;
            let k = code.wrapping_sub(l.first[i]);
            if l.count[i] > 0 && k < l.count[i] {
                return Some((l.sorted[(l.offset[i] + k) as usize], len));
            }
        }
        None
    }

    /// The canonical tables [`StreamCode::decode_long`] walks (device decoders use the same).
    pub fn long_code_tables(&self) -> &LongCodes {
        &self.long
    }

    /// Whether every primary decode-table entry is a symbol (a complete code with no code longer
    /// than [`DECODE_TABLE_BITS`]), so a decoder needs no slow-path check.
    pub fn single_lookup(&self) -> bool {
        self.single_lookup
    }

    /// The longest code in this stream.
    pub fn max_len(&self) -> u32 {
        self.max_len
    }

    /// Stable hash of dtype, layout, stream index and lengths.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Whether every symbol has an 8-bit code: coding then cannot gain and a stream is best sent raw.
    pub fn is_flat(&self) -> bool {
        self.flat
    }

    /// Exact coded size in bits of symbols with histogram `h`.
    pub fn coded_bits(&self, h: &Histogram) -> u64 {
        h.coded_bits(&self.lengths)
    }
}

/// A per-message code (three-stage baseline): lengths may be 0 for absent symbols, Kraft ≤ 1.
pub(crate) fn partial_stream_code(lengths: [u8; 256]) -> Option<StreamCode> {
    if lengths.iter().any(|&l| u32::from(l) > MAX_CODE_LEN) || huffman::kraft_sum(&lengths) > 1u128 << 64 {
        return None;
    }
    let mut h = Fnv1a::new(b"shuff/message-code/1");
    h.write(&lengths);
    Some(StreamCode::build(lengths, h.finish()))
}

/// Validates one stream's lengths: all 256 symbols have codes of 1..=MAX_CODE_LEN bits, Kraft sum 1.
pub fn validate_lengths(stream: usize, lengths: &[u8]) -> Result<[u8; 256], CodebookError> {
    let lengths: [u8; 256] =
        lengths.try_into().map_err(|_| CodebookError::WrongSymbolCount { stream, found: lengths.len() })?;
    for (s, &len) in lengths.iter().enumerate() {
        if len == 0 {
            return Err(CodebookError::MissingCode { stream, symbol: s as u8 });
        }
        if u32::from(len) > MAX_CODE_LEN {
            return Err(CodebookError::TooLong { stream, symbol: s as u8, len: len.into(), max: MAX_CODE_LEN });
        }
    }
    let kraft = huffman::kraft_sum(&lengths);
    let one = 1u128 << 64;
    let as_f64 = kraft as f64 / one as f64;
    if kraft < one {
        return Err(CodebookError::Incomplete { stream, kraft: as_f64 });
    }
    if kraft > one {
        return Err(CodebookError::Oversubscribed { stream, kraft: as_f64 });
    }
    Ok(lengths)
}

/// Integer weights for code construction from a distribution, with every symbol floored to a
/// weight of at least 1 so that it gets a code.
pub fn floored_weights(d: &Distribution) -> [u64; 256] {
    let mut w = [0u64; 256];
    for (w, &p) in w.iter_mut().zip(d.p.iter()) {
        *w = ((p * WEIGHT_SCALE).round() as u64).max(1);
    }
    w
}

/// A stream whose code would save less than this fraction of its raw size, on the distribution it
/// is built for, gets the flat code instead (every symbol 8 bits), which the encoder stores raw
/// without coding and the decoder copies. Near-uniform streams — the mantissa bytes of weights
/// cast to bf16 — otherwise got codes of 7–9 bits saving 0.000–0.003%: each chunk was coded and
/// then stored raw anyway (its lane sizes cost more than the code saved), a wasted pass over a
/// third of a checkpoint's mantissas. 0.1% of a stream is at most 0.05% of a bf16 tensor.
pub const RAW_STREAM_MAX_GAIN: f64 = 0.001;

/// The optimal code lengths (at most `max_len` bits) for one stream distributed as `d`, every
/// symbol floored so it keeps a code — or all 8 where that code saves less than
/// [`RAW_STREAM_MAX_GAIN`]: what a codebook's stream is built from.
pub(crate) fn stream_lengths(d: &Distribution, max_len: u32) -> Result<Vec<u8>, CodeError> {
    let lengths = huffman::limited_lengths(&floored_weights(d), max_len)?;
    let bits = d.expected_length(lengths.as_slice().try_into().expect("256 lengths"));
    Ok(if bits >= 8.0 * (1.0 - RAW_STREAM_MAX_GAIN) { vec![8; 256] } else { lengths })
}

/// A fixed code for every symbol stream of one dtype + layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Codebook {
    dtype: DType,
    layout: Layout,
    streams: Vec<StreamCode>,
    fingerprint: Fingerprint,
}

impl Codebook {
    /// A codebook from explicit per-stream code lengths, validated: the stream count must match the
    /// layout, and each stream must give all 256 symbols a code of at most [`MAX_CODE_LEN`] bits with
    /// Kraft sum exactly 1.
    pub fn from_lengths(dtype: DType, layout: Layout, lengths: &[Vec<u8>]) -> Result<Self, CodebookError> {
        let expected = layout.stream_count(dtype);
        if lengths.len() != expected {
            return Err(CodebookError::WrongStreamCount { dtype, layout, expected, found: lengths.len() });
        }
        let mut streams = Vec::with_capacity(expected);
        let mut h = Fnv1a::new(b"shuff/codebook/1");
        h.write(&[dtype.id(), layout.id(), expected as u8]);
        for (k, l) in lengths.iter().enumerate() {
            let l = validate_lengths(k, l)?;
            h.write(&l);
            let mut sh = Fnv1a::new(b"shuff/stream/1");
            sh.write(&[dtype.id(), layout.id(), k as u8]);
            sh.write(&l);
            streams.push(StreamCode::build(l, sh.finish()));
        }
        Ok(Codebook { dtype, layout, streams, fingerprint: h.finish() })
    }

    /// The optimal codebook of at most `max_len`-bit codes for per-stream symbol distributions
    /// `dists` (one per stream), every symbol floored so it keeps a code.
    pub fn from_distributions(
        dtype: DType,
        layout: Layout,
        dists: &[Distribution],
        max_len: u32,
    ) -> Result<Self, CodebookError> {
        if max_len > MAX_CODE_LEN {
            return Err(CodebookError::Code(CodeError::BadMaxLen(max_len)));
        }
        let lengths = dists.iter().map(|d| stream_lengths(d, max_len)).collect::<Result<Vec<_>, _>>()?;
        Self::from_lengths(dtype, layout, &lengths)
    }

    /// A codebook whose every code is 8 bits: coding with it is a copy. Useful as a neutral
    /// candidate and for data of unknown statistics.
    pub fn flat(dtype: DType, layout: Layout) -> Self {
        Self::from_lengths(dtype, layout, &vec![vec![8u8; 256]; layout.stream_count(dtype)])
            .expect("a flat code is complete")
    }

    /// Element type this codebook codes.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Layout this codebook codes.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Per-stream codes, in stream order.
    pub fn streams(&self) -> &[StreamCode] {
        &self.streams
    }

    /// Stable hash of dtype, layout and every stream's lengths.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The longest code over all streams.
    pub fn max_len(&self) -> u32 {
        self.streams.iter().map(StreamCode::max_len).max().unwrap_or(0)
    }

    /// Exact coded size in bits of a message with per-stream histograms `hists`.
    pub fn coded_bits(&self, hists: &[Histogram]) -> u64 {
        self.streams.iter().zip(hists).map(|(s, h)| s.coded_bits(h)).sum()
    }

    /// The same code with the exponent stream moved by `steps` exponent steps (symbol `x` gets the
    /// code that symbol `x − steps·stride` had): fits a tensor whose scale is `2^steps` times the
    /// training data's. Zero/subnormal and inf/NaN exponents keep their codes; the normal range
    /// rotates, so the result is still complete. `None` where the layout has no exponent stream.
    pub fn exponent_shifted(&self, steps: i32) -> Option<Codebook> {
        let (e, stride) = self.layout.exponent_stream(self.dtype)?;
        let mut lengths: Vec<Vec<u8>> = self.streams.iter().map(|s| s.lengths.to_vec()).collect();
        lengths[e] = shift_exponent_lengths(&self.streams[e].lengths, stride, steps).to_vec();
        Some(
            Codebook::from_lengths(self.dtype, self.layout, &lengths)
                .expect("a permutation of a complete code is complete"),
        )
    }
}

/// An exponent stream's code `old` (exponent symbols `stride` apart) moved by `steps` exponent
/// steps: see [`Codebook::exponent_shifted`].
pub(crate) fn shift_exponent_lengths(old: &[u8; 256], stride: u32, steps: i32) -> [u8; 256] {
    let stride = stride as i32;
    let (lo, hi) = (stride, 256 - stride); // normal exponents occupy [lo, hi)
    let span = hi - lo;
    let mut new = *old;
    for x in lo..hi {
        let src = lo + (x - lo - steps * stride).rem_euclid(span);
        new[x as usize] = old[src as usize];
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skewed() -> Distribution {
        let mut h = Histogram::new();
        for s in 0..40u64 {
            h.counts[(100 + s) as usize] = 1 + (40 - s) * (40 - s) * 17;
        }
        h.distribution().unwrap()
    }

    #[test]
    fn every_symbol_gets_a_code_even_unseen_ones() {
        let book = Codebook::from_distributions(DType::U8, Layout::Bytes, &[skewed()], 12).unwrap();
        let s = &book.streams()[0];
        assert!(s.lengths().iter().all(|&l| (1..=12).contains(&l)));
        assert!(huffman::is_complete(s.lengths()));
        assert_eq!(s.decode_table().len(), 1 << DECODE_TABLE_BITS);
    }

    /// A code that saves less than RAW_STREAM_MAX_GAIN becomes the flat code (stored raw); one
    /// that saves more is kept as Huffman made it.
    #[test]
    fn near_uniform_streams_get_the_flat_code() {
        // `heavy` symbols three times as likely as the rest: the more there are, the more a code
        // saves (one: a 7-bit code for it and two 9-bit ones, 0.05%; sixteen: 0.7%).
        let tilted = |heavy: usize| {
            let mut h = Histogram::new();
            h.counts.iter_mut().enumerate().for_each(|(s, c)| *c = if s < heavy { 3000 } else { 1000 });
            h.distribution().unwrap()
        };
        let saving = |d: &Distribution| {
            let lengths = huffman::limited_lengths(&floored_weights(d), 16).unwrap();
            (1.0 - d.expected_length(lengths.as_slice().try_into().unwrap()) / 8.0, lengths)
        };
        let (small, huffman_lengths) = saving(&tilted(1));
        assert!(small > 0.0 && small < RAW_STREAM_MAX_GAIN, "the test needs a code that saves a little: {small}");
        assert!(huffman_lengths.iter().any(|&l| l != 8));
        let book = Codebook::from_distributions(DType::U8, Layout::Bytes, &[tilted(1)], 16).unwrap();
        assert!(book.streams()[0].is_flat());
        let (large, huffman_lengths) = saving(&tilted(16));
        assert!(large >= RAW_STREAM_MAX_GAIN, "the test needs a code that saves enough: {large}");
        let book = Codebook::from_distributions(DType::U8, Layout::Bytes, &[tilted(16)], 16).unwrap();
        assert_eq!(book.streams()[0].lengths()[..], huffman_lengths[..]);
    }

    #[test]
    fn decode_table_inverts_encode_table() {
        for max_len in [11, 16] {
        let book = Codebook::from_distributions(DType::U8, Layout::Bytes, &[skewed()], max_len).unwrap();
        let s = &book.streams()[0];
        for sym in 0..256usize {
            let e = s.encode_table()[sym];
            let (code, len) = (e & 0xffff, e >> 16);
            assert_eq!(len, u32::from(s.lengths()[sym]));
            // Any bits after the code must not change the decoded symbol.
            for junk in [0u64, u64::MAX] {
                let bits = u64::from(code) | (junk << len);
                let d = s.decode_table()[(bits & 0xfff) as usize];
                if len <= DECODE_TABLE_BITS {
                    assert_eq!((d & 0xff) as usize, sym);
                    assert_eq!(u32::from(d >> 8), len);
                } else {
                    assert_eq!(d >> 8, 0, "long codes go to the slow path");
                }
                assert_eq!(s.decode_long(bits), Some((sym as u8, len)));
            }
        }
        }
    }

    #[test]
    fn pair_table_decodes_every_short_pair() {
        for max_len in [9, 11, 16] {
            let book = Codebook::from_distributions(DType::U8, Layout::Bytes, &[skewed()], max_len).unwrap();
            let s = &book.streams()[0];
            let mut pairs_seen = 0;
            for a in 0..256usize {
                for b in 0..256usize {
                    let (ea, eb) = (s.encode_table()[a], s.encode_table()[b]);
                    let (la, lb) = (ea >> 16, eb >> 16);
                    let bits = u64::from(ea & 0xffff) | (u64::from(eb & 0xffff) << la) | (u64::MAX << (la + lb));
                    let p = s.pair_table()[(bits & ((1 << PAIR_TABLE_BITS) - 1)) as usize];
                    let (syms, used, count) = (u32::from(u16::from_le_bytes([p[2], p[3]])), u32::from(p[ENTRY_LEN]), u32::from(p[ENTRY_COUNT]));
                    if la > DECODE_TABLE_BITS {
                        assert_eq!(count, 0, "long codes go to the slow path");
                    } else if la + lb <= PAIR_TABLE_BITS {
                        assert_eq!((count, used, syms), (2, la + lb, (a | b << 8) as u32));
                        pairs_seen += 1;
                    } else {
                        assert_eq!((count, used, syms & 0xff), (1, la, a as u32));
                    }
                }
            }
            assert!(pairs_seen > 0);
        }
    }

    #[test]
    fn quad_table_decodes_up_to_four_symbols_that_fit() {
        // Exponent-like: a few very short codes, the rest long.
        let mut h = Histogram::new();
        for (s, c) in h.counts.iter_mut().enumerate() {
            *c = 1 << (40 - (s as u32 * 3).min(40));
        }
        let book = Codebook::from_distributions(DType::U8, Layout::Bytes, &[h.distribution().unwrap()], 16).unwrap();
        let s = &book.streams()[0];
        let quads = s.quad_table().expect("a skewed stream gets the quad table");
        let skewed_pairs = Codebook::from_distributions(DType::U8, Layout::Bytes, &[skewed()], 11).unwrap();
        assert!(skewed_pairs.streams()[0].quad_table().is_none(), "8-bit-ish codes keep the pair table");
        // What `shuff bench` reports: the table the lane loop reads, then the careful path's.
        let names = |c: &StreamCode| c.decoder_tables().iter().map(|&(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names(s), ["quad", "pair", "primary", "long codes"]);
        assert_eq!(names(&skewed_pairs.streams()[0]), ["pair", "primary", "long codes"]);
        assert_eq!(s.decoder_tables()[..3], [("quad", 16 << 10), ("pair", 32 << 10), ("primary", 8 << 10)]);
        let mut rng = 0x1234_5678_u64;
        for _ in 0..20_000 {
            // Four random symbols, mostly short ones, then random bits.
            let mut syms = [0usize; 4];
            let (mut bits, mut n) = (0u64, 0u32);
            for v in &mut syms {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                *v = ((rng >> 33) % 256) as usize % if rng >> 60 == 0 { 256 } else { 4 };
                let e = s.encode_table()[*v];
                bits |= u64::from(e & 0xffff) << n;
                n += e >> 16;
            }
            bits |= (rng >> 7) << n.min(63);
            let q = quads[(bits & ((1 << QUAD_TABLE_BITS) - 1)) as usize];
            let (used, count) = (u32::from(q[ENTRY_LEN]), usize::from(q[ENTRY_COUNT]));
            // Greedy: as many leading codes as fit in the window, up to four.
            let (mut fit, mut total) = (0, 0);
            for &v in &syms {
                let l = u32::from(s.lengths()[v]);
                if total + l > QUAD_TABLE_BITS {
                    break;
                }
                total += l;
                fit += 1;
            }
            assert_eq!((count, used), (fit, total), "{syms:?}");
            for (k, &v) in syms.iter().enumerate().take(count) {
                assert_eq!(usize::from(q[4 + k]), v);
            }
        }
    }

    #[test]
    fn bad_lengths_are_rejected_with_a_reason() {
        let mut l = vec![8u8; 256];
        assert!(Codebook::from_lengths(DType::U8, Layout::Bytes, &[l.clone()]).is_ok());
        l[3] = 0;
        let e = Codebook::from_lengths(DType::U8, Layout::Bytes, &[l.clone()]).unwrap_err();
        assert_eq!(e, CodebookError::MissingCode { stream: 0, symbol: 3 });
        l[3] = 9;
        assert!(matches!(Codebook::from_lengths(DType::U8, Layout::Bytes, &[l.clone()]), Err(CodebookError::Incomplete { .. })));
        l[3] = 7;
        assert!(matches!(Codebook::from_lengths(DType::U8, Layout::Bytes, &[l.clone()]), Err(CodebookError::Oversubscribed { .. })));
        l[3] = 17;
        assert!(matches!(Codebook::from_lengths(DType::U8, Layout::Bytes, &[l.clone()]), Err(CodebookError::TooLong { len: 17, .. })));
        assert!(matches!(Codebook::from_lengths(DType::Bf16, Layout::Planes, &[vec![8; 256]]), Err(CodebookError::WrongStreamCount { expected: 2, found: 1, .. })));
        assert!(matches!(Codebook::from_lengths(DType::U8, Layout::Bytes, &[vec![8; 255]]), Err(CodebookError::WrongSymbolCount { found: 255, .. })));
        let msg = CodebookError::MissingCode { stream: 1, symbol: 200 }.to_string();
        assert!(msg.contains("symbol 200") && msg.contains("stream 1"), "{msg}");
    }

    #[test]
    fn fingerprint_depends_on_dtype_layout_and_lengths() {
        let a = Codebook::flat(DType::Bf16, Layout::Planes);
        let b = Codebook::flat(DType::Bf16, Layout::Exponent);
        let c = Codebook::flat(DType::F16, Layout::Planes);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        assert_eq!(a.fingerprint(), Codebook::flat(DType::Bf16, Layout::Planes).fingerprint());
        let d = Codebook::from_distributions(DType::U8, Layout::Bytes, &[skewed()], 12).unwrap();
        assert_ne!(d.fingerprint(), Codebook::flat(DType::U8, Layout::Bytes).fingerprint());
        let fp = d.fingerprint();
        assert_eq!(fp.to_string().parse::<Fingerprint>().unwrap(), fp);
    }

    #[test]
    fn exponent_shift_moves_codes_and_keeps_specials() {
        let mut h = Histogram::new();
        for e in 120..130 {
            h.counts[e] = 1000 - (e as u64 - 120) * 50;
        }
        h.counts[0] = 300;
        let exp = h.distribution().unwrap();
        let low = Distribution::uniform();
        let book = Codebook::from_distributions(DType::Bf16, Layout::Exponent, &[low, exp], 12).unwrap();
        let up = book.exponent_shifted(1).unwrap();
        let e0 = book.streams()[1].lengths();
        let e1 = up.streams()[1].lengths();
        assert_eq!(e1[121], e0[120]);
        assert_eq!(e1[0], e0[0]);
        assert_eq!(e1[255], e0[255]);
        assert_eq!(e1[1], e0[254]); // rotation wraps inside the normal range
        assert_ne!(up.fingerprint(), book.fingerprint());
        assert_eq!(book.exponent_shifted(0).unwrap(), book);
        assert!(Codebook::flat(DType::Bf16, Layout::Bytes).exponent_shifted(1).is_none());
    }

    #[test]
    fn codebooks_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Codebook>();
    }
}
