//! Layouts: how the bytes of a tensor become 8-bit symbol streams.
//!
//! * [`Layout::Bytes`]: the paper's layout. Every byte of the tensor, in memory order, is a symbol of
//!   one stream coded with one codebook.
//! * [`Layout::Planes`]: byte `k` of every element goes to stream `k` (so bf16 has a stream of low
//!   bytes and a stream of high bytes), each stream with its own codebook.
//! * [`Layout::Exponent`]: `Planes` after an exact bit rotation of each element that gathers the
//!   exponent into one byte, so that the most skewed field gets a stream to itself:
//!   - `bf16`: rotate-left-1 of the 16-bit word. High byte = the 8 exponent bits exactly; low byte =
//!     7 mantissa bits followed by the sign.
//!   - `f32`: rotate-left-1 of the 32-bit word. Byte 3 = the 8 exponent bits exactly; bytes 0–2 =
//!     23 mantissa bits then the sign.
//!   - `f16`: rotate-left-1 of the 16-bit word. High byte = the 5 exponent bits and the 3 leading
//!     mantissa bits (an 8-bit symbol cannot hold the exponent alone without splitting another field;
//!     the leading mantissa bits are the most skewed of the rest, so they ride with the exponent).
//!   - one-byte types (`f8e4m3`, `f8e5m2`, `u8`): the element *is* the symbol; any bit permutation of
//!     it only renames symbols and cannot change a Huffman code's length, so no transform is applied
//!     and all three layouts coincide.
//!
//! Streams are laid out back to back in "symbol order" (`[stream 0][stream 1]…`, each stream one
//! symbol per element; `Bytes` is a single stream of all bytes), which is what [`to_symbols`] writes
//! and [`from_symbols`] reads. Both are exact inverses for every bit pattern, NaNs included.

use crate::DType;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How element bytes become symbol streams; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// All bytes, one stream (the paper's).
    Bytes,
    /// Byte `k` of every element → stream `k`.
    Planes,
    /// Planes after a rotation that puts the exponent in one byte.
    Exponent,
}

/// A tensor whose byte length is not a whole number of elements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{len} bytes is not a whole number of {dtype} elements ({size} bytes each)")]
pub struct MisalignedTensor {
    /// Byte length given.
    pub len: usize,
    /// The dtype it was meant to hold.
    pub dtype: DType,
    /// That dtype's element size.
    pub size: usize,
}

impl Layout {
    /// Every layout, in the order of their wire ids.
    pub const ALL: [Layout; 3] = [Layout::Bytes, Layout::Planes, Layout::Exponent];

    /// Number of symbol streams a tensor of `dtype` is split into.
    pub const fn stream_count(self, dtype: DType) -> usize {
        match self {
            Layout::Bytes => 1,
            Layout::Planes | Layout::Exponent => dtype.size(),
        }
    }

    /// Stable one-byte id used in binary formats.
    pub const fn id(self) -> u8 {
        match self {
            Layout::Bytes => 0,
            Layout::Planes => 1,
            Layout::Exponent => 2,
        }
    }

    /// Inverse of [`Layout::id`].
    pub fn from_id(id: u8) -> Option<Layout> {
        Layout::ALL.get(id as usize).copied()
    }

    /// The lowercase name used on the command line and in files.
    pub const fn name(self) -> &'static str {
        match self {
            Layout::Bytes => "bytes",
            Layout::Planes => "planes",
            Layout::Exponent => "exponent",
        }
    }

    /// The stream whose top bits are the exponent, and how many symbol values one exponent step
    /// moves a symbol of it (`2^(bits below the exponent in that byte)`). `None` where no stream
    /// starts with the exponent: every layout but `exponent` of the multi-byte floats (in one-byte
    /// floats the sign sits above the exponent, so a scale change does not move symbols uniformly).
    pub fn exponent_stream(self, dtype: DType) -> Option<(usize, u32)> {
        match (self, dtype) {
            (Layout::Exponent, DType::Bf16) => Some((1, 1)),
            (Layout::Exponent, DType::F32) => Some((3, 1)),
            (Layout::Exponent, DType::F16) => Some((1, 8)),
            _ => None,
        }
    }

    /// The default maximum code length of codebooks for this layout, chosen from measurement on
    /// real MiniLM bf16 tensors (README, "Maximum code length"):
    /// * `bytes`: 12. The stream mixes high and low bytes, so nearly every symbol occurs; 12 bits
    ///   lose 0.008 pp against 16 and keep the decode table at 8 KiB (L1-resident).
    /// * `planes`, `exponent`: 16. An exponent stream uses ~40 of 256 values, and the ~200 unseen
    ///   ones still need codes: at 12 bits they take 5% of the code space and cost 0.48 pp of
    ///   compressibility, at 16 bits 0.3% (≤ 0.04 pp). Decoders use a two-level table, so the long,
    ///   rare codes do not enlarge the hot table.
    pub const fn default_max_len(self) -> u32 {
        match self {
            Layout::Bytes => 12,
            Layout::Planes | Layout::Exponent => 16,
        }
    }

    /// Whether this layout transforms elements of `dtype` (false means symbol order is memory order
    /// or a plain byte transpose).
    pub(crate) const fn rotates(self, dtype: DType) -> bool {
        matches!(self, Layout::Exponent) && dtype.size() > 1
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Layout::ALL
            .iter()
            .copied()
            .find(|l| l.name() == s.to_ascii_lowercase())
            .ok_or_else(|| format!("unknown layout `{s}` (expected bytes, planes or exponent)"))
    }
}

/// Checks that `len` bytes hold whole elements and returns the element count.
pub fn element_count(dtype: DType, len: usize) -> Result<usize, MisalignedTensor> {
    let size = dtype.size();
    if len % size != 0 {
        return Err(MisalignedTensor { len, dtype, size });
    }
    Ok(len / size)
}

/// Rewrites tensor bytes (`data`, little-endian elements) into symbol order in `out`
/// (same length): the streams of `layout` back to back.
pub fn to_symbols(dtype: DType, layout: Layout, data: &[u8], out: &mut [u8]) -> Result<(), MisalignedTensor> {
    element_count(dtype, data.len())?;
    assert_eq!(out.len(), data.len(), "to_symbols: output must be as long as the input");
    let k = layout.stream_count(dtype);
    let (mut streams, mut rest) = (Vec::with_capacity(k), out);
    for _ in 0..k {
        let (stream, tail) = std::mem::take(&mut rest).split_at_mut(data.len() / k);
        streams.push(stream);
        rest = tail;
    }
    to_streams(dtype, layout, data, &mut streams);
    Ok(())
}

/// [`to_symbols`] into one slice per stream (`layout.stream_count(dtype)` of them, each one byte
/// per element of `data`, which holds whole elements), wherever each lives: the encoder writes a
/// stream it stores raw straight into the frame.
pub(crate) fn to_streams(dtype: DType, layout: Layout, data: &[u8], streams: &mut [&mut [u8]]) {
    let k = layout.stream_count(dtype);
    assert!(data.len() % dtype.size() == 0 && streams.len() == k && streams.iter().all(|s| s.len() == data.len() / k), "to_streams: one stream per byte of an element");
    match (streams, layout.rotates(dtype)) {
        ([one], _) => one.copy_from_slice(data),
        ([lo, hi], true) => split2::<true>(data, (lo, hi)),
        ([lo, hi], false) => split2::<false>(data, (lo, hi)),
        ([s0, s1, s2, s3], true) => split4::<true>(data, [s0, s1, s2, s3]),
        ([s0, s1, s2, s3], false) => split4::<false>(data, [s0, s1, s2, s3]),
        _ => unreachable!("layouts have 1, 2 or 4 streams"),
    }
}

// Each transform runs a vector loop where the CPU has AVX2 (a shuffle and a permute move 16 bf16
// or 8 f32 elements; the scalar loops vectorize only by LLVM's whim: bf16 `planes` split at 1.6
// GB/s, `exponent` at 10) and finishes the elements it leaves with the scalar loop, which is also
// the whole transform elsewhere (`avx2_or!`: the vector loop's count of elements done, or 0).
// Tests check both against each other on every length.

fn split2<const ROTATE: bool>(data: &[u8], (lo, hi): (&mut [u8], &mut [u8])) {
    let done = avx2_or!(simd::split2::<ROTATE>(data, lo, hi), 0);
    split2_scalar::<ROTATE>(&data[2 * done..], (&mut lo[done..], &mut hi[done..]));
}

fn split2_scalar<const ROTATE: bool>(data: &[u8], (lo, hi): (&mut [u8], &mut [u8])) {
    for ((e, a), b) in data.chunks_exact(2).zip(lo).zip(hi) {
        let v = u16::from_le_bytes([e[0], e[1]]).rotate_left(u32::from(ROTATE));
        [*a, *b] = v.to_le_bytes();
    }
}

fn split4<const ROTATE: bool>(data: &[u8], mut streams: [&mut [u8]; 4]) {
    let done = avx2_or!(simd::split4::<ROTATE>(data, &mut streams), 0);
    split4_scalar::<ROTATE>(&data[4 * done..], streams.map(|s| &mut s[done..]));
}

fn split4_scalar<const ROTATE: bool>(data: &[u8], [s0, s1, s2, s3]: [&mut [u8]; 4]) {
    for (i, e) in data.chunks_exact(4).enumerate() {
        let v = u32::from_le_bytes([e[0], e[1], e[2], e[3]]).rotate_left(u32::from(ROTATE));
        [s0[i], s1[i], s2[i], s3[i]] = v.to_le_bytes();
    }
}

fn join2<const ROTATE: bool>((lo, hi): (&[u8], &[u8]), out: &mut [u8]) {
    let done = avx2_or!(simd::join2::<ROTATE>(lo, hi, out), 0);
    join2_scalar::<ROTATE>((&lo[done..], &hi[done..]), &mut out[2 * done..]);
}

fn join2_scalar<const ROTATE: bool>((lo, hi): (&[u8], &[u8]), out: &mut [u8]) {
    for ((e, &a), &b) in out.chunks_exact_mut(2).zip(lo).zip(hi) {
        let v = u16::from_le_bytes([a, b]).rotate_right(u32::from(ROTATE));
        e.copy_from_slice(&v.to_le_bytes());
    }
}

fn join4<const ROTATE: bool>(streams: [&[u8]; 4], out: &mut [u8]) {
    let done = avx2_or!(simd::join4::<ROTATE>(streams, out), 0);
    join4_scalar::<ROTATE>(streams.map(|s| &s[done..]), &mut out[4 * done..]);
}

fn join4_scalar<const ROTATE: bool>(streams: [&[u8]; 4], out: &mut [u8]) {
    for (i, e) in out.chunks_exact_mut(4).enumerate() {
        let v = u32::from_le_bytes(streams.map(|s| s[i])).rotate_right(u32::from(ROTATE));
        e.copy_from_slice(&v.to_le_bytes());
    }
}

/// The AVX2 loops: each returns how many elements it transformed (a multiple of its block; the
/// caller does the rest). Loads and stores are unaligned and stay inside the slices: a block is
/// taken only while all of it is in bounds.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    /// Within each 128-bit half: the even bytes, then the odd ones (bf16 low bytes, high bytes).
    const EVEN_ODD: [i8; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15];
    /// Inverse of [`EVEN_ODD`]: the low half's bytes and the high half's, interleaved.
    const INTERLEAVE: [i8; 16] = [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15];
    /// Within each 128-bit half, four 4-byte elements transposed: byte k of each, for k = 0..4.
    /// (A 4×4 transpose is its own inverse, so `join4` uses it too.)
    const TRANSPOSE4: [i8; 16] = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

    #[target_feature(enable = "avx2")]
    fn both_halves(t: [i8; 16]) -> __m256i {
        let h = _mm_setr_epi8(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15]);
        _mm256_set_m128i(h, h)
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn split2<const ROTATE: bool>(data: &[u8], lo: &mut [u8], hi: &mut [u8]) -> usize {
        let n = (data.len() / 2).min(lo.len()).min(hi.len());
        let shuffle = both_halves(EVEN_ODD);
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: 16 elements from element i are in `data` (32 bytes), `lo` and `hi` (16 each).
            unsafe {
                let mut v = _mm256_loadu_si256(data.as_ptr().add(2 * i).cast());
                if ROTATE {
                    v = _mm256_or_si256(_mm256_slli_epi16::<1>(v), _mm256_srli_epi16::<15>(v));
                }
                // [lo 0..8 | hi 0..8 | lo 8..16 | hi 8..16] as 64-bit quarters → [lo | hi].
                let v = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(v, shuffle));
                _mm_storeu_si128(lo.as_mut_ptr().add(i).cast(), _mm256_castsi256_si128(v));
                _mm_storeu_si128(hi.as_mut_ptr().add(i).cast(), _mm256_extracti128_si256::<1>(v));
            }
            i += 16;
        }
        i
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn join2<const ROTATE: bool>(lo: &[u8], hi: &[u8], out: &mut [u8]) -> usize {
        let n = (out.len() / 2).min(lo.len()).min(hi.len());
        let shuffle = both_halves(INTERLEAVE);
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: 16 elements from element i are in `lo`, `hi` (16 bytes each) and `out` (32).
            unsafe {
                let l = _mm_loadu_si128(lo.as_ptr().add(i).cast());
                let h = _mm_loadu_si128(hi.as_ptr().add(i).cast());
                // [lo 0..8 | lo 8..16 | hi 0..8 | hi 8..16] → [lo 0..8 | hi 0..8 | lo 8..16 | hi 8..16].
                let v = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_set_m128i(h, l));
                let mut v = _mm256_shuffle_epi8(v, shuffle);
                if ROTATE {
                    v = _mm256_or_si256(_mm256_srli_epi16::<1>(v), _mm256_slli_epi16::<15>(v));
                }
                _mm256_storeu_si256(out.as_mut_ptr().add(2 * i).cast(), v);
            }
            i += 16;
        }
        i
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn split4<const ROTATE: bool>(data: &[u8], streams: &mut [&mut [u8]; 4]) -> usize {
        let n = streams.iter().map(|s| s.len()).fold(data.len() / 4, usize::min);
        let shuffle = both_halves(TRANSPOSE4);
        // Dwords [b0 b1 b2 b3 | b0 b1 b2 b3] (each 4 elements' byte k) → [b0 b0 b1 b1 b2 b2 b3 b3].
        let gather = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: 8 elements from element i are in `data` (32 bytes) and every stream (8 each).
            unsafe {
                let mut v = _mm256_loadu_si256(data.as_ptr().add(4 * i).cast());
                if ROTATE {
                    v = _mm256_or_si256(_mm256_slli_epi32::<1>(v), _mm256_srli_epi32::<31>(v));
                }
                let v = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, shuffle), gather);
                let mut quarters = [0u64; 4];
                _mm256_storeu_si256(quarters.as_mut_ptr().cast(), v);
                for (s, q) in streams.iter_mut().zip(quarters) {
                    s.as_mut_ptr().add(i).cast::<[u8; 8]>().write_unaligned(q.to_le_bytes());
                }
            }
            i += 8;
        }
        i
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn join4<const ROTATE: bool>(streams: [&[u8]; 4], out: &mut [u8]) -> usize {
        let n = streams.iter().map(|s| s.len()).fold(out.len() / 4, usize::min);
        let shuffle = both_halves(TRANSPOSE4);
        // Inverse of `split4`'s gather.
        let scatter = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: 8 elements from element i are in every stream (8 bytes each) and `out` (32).
            unsafe {
                let q = streams.map(|s| i64::from_le_bytes(s.as_ptr().add(i).cast::<[u8; 8]>().read_unaligned()));
                let v = _mm256_permutevar8x32_epi32(_mm256_setr_epi64x(q[0], q[1], q[2], q[3]), scatter);
                let mut v = _mm256_shuffle_epi8(v, shuffle);
                if ROTATE {
                    v = _mm256_or_si256(_mm256_srli_epi32::<1>(v), _mm256_slli_epi32::<31>(v));
                }
                _mm256_storeu_si256(out.as_mut_ptr().add(4 * i).cast(), v);
            }
            i += 8;
        }
        i
    }
}

/// Inverse of [`to_symbols`]: rebuilds tensor bytes from symbol order.
pub fn from_symbols(dtype: DType, layout: Layout, symbols: &[u8], out: &mut [u8]) -> Result<(), MisalignedTensor> {
    element_count(dtype, symbols.len())?;
    assert_eq!(out.len(), symbols.len(), "from_symbols: output must be as long as the input");
    let k = layout.stream_count(dtype);
    let per = symbols.len() / k;
    let streams: Vec<&[u8]> = (0..k).map(|s| &symbols[s * per..(s + 1) * per]).collect();
    from_streams(dtype, layout, &streams, out);
    Ok(())
}

/// Inverse of [`to_streams`]: tensor bytes from one slice per stream, wherever each lives (the
/// decoder reads a raw stream straight from the frame).
pub(crate) fn from_streams(dtype: DType, layout: Layout, streams: &[&[u8]], out: &mut [u8]) {
    let k = layout.stream_count(dtype);
    assert!(out.len() % dtype.size() == 0 && streams.len() == k && streams.iter().all(|s| s.len() == out.len() / k), "from_streams: one stream per byte of an element");
    match (streams, layout.rotates(dtype)) {
        (&[one], _) => out.copy_from_slice(one),
        (&[lo, hi], true) => join2::<true>((lo, hi), out),
        (&[lo, hi], false) => join2::<false>((lo, hi), out),
        (&[s0, s1, s2, s3], true) => join4::<true>([s0, s1, s2, s3], out),
        (&[s0, s1, s2, s3], false) => join4::<false>([s0, s1, s2, s3], out),
        _ => unreachable!("layouts have 1, 2 or 4 streams"),
    }
}

/// Splits tensor bytes into owned streams (convenience over [`to_symbols`]).
pub fn split_streams(dtype: DType, layout: Layout, data: &[u8]) -> Result<Vec<Vec<u8>>, MisalignedTensor> {
    let mut sym = vec![0u8; data.len()];
    to_symbols(dtype, layout, data, &mut sym)?;
    let k = layout.stream_count(dtype);
    let per = sym.len() / k;
    Ok(if k == 1 { vec![sym] } else { sym.chunks(per.max(1)).map(<[u8]>::to_vec).collect() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(dtype: DType, layout: Layout, data: &[u8]) {
        let mut sym = vec![0; data.len()];
        let mut back = vec![0; data.len()];
        to_symbols(dtype, layout, data, &mut sym).unwrap();
        from_symbols(dtype, layout, &sym, &mut back).unwrap();
        assert_eq!(back, data, "{dtype} {layout}");
    }

    #[test]
    fn every_16_bit_pattern_round_trips_in_every_layout() {
        let data: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
        for dtype in [DType::Bf16, DType::F16] {
            for layout in Layout::ALL {
                round_trip(dtype, layout, &data);
            }
        }
    }

    /// The AVX2 loops (where this CPU has them) against the scalar loops alone, on every length
    /// from 0 to past several vector blocks, so that block ends and the scalar remainder are hit.
    #[test]
    fn vector_transforms_match_the_scalar_ones_on_every_length() {
        let data: Vec<u8> = (0..4 * 200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for (dtype, layout) in [(DType::Bf16, Layout::Planes), (DType::Bf16, Layout::Exponent), (DType::F32, Layout::Planes), (DType::F32, Layout::Exponent)] {
            let size = dtype.size();
            for n in 0..200 {
                let data = &data[..n * size];
                let mut sym = vec![0; data.len()];
                to_symbols(dtype, layout, data, &mut sym).unwrap();
                let mut expected = vec![0; data.len()];
                let mut back = vec![0; data.len()];
                match (size, layout.rotates(dtype)) {
                    (2, true) => split2_scalar::<true>(data, expected.split_at_mut(n)),
                    (2, false) => split2_scalar::<false>(data, expected.split_at_mut(n)),
                    (4, rotate) => {
                        let (s0, rest) = expected.split_at_mut(n);
                        let (s1, rest) = rest.split_at_mut(n);
                        let (s2, s3) = rest.split_at_mut(n);
                        if rotate {
                            split4_scalar::<true>(data, [s0, s1, s2, s3]);
                        } else {
                            split4_scalar::<false>(data, [s0, s1, s2, s3]);
                        }
                    }
                    _ => unreachable!(),
                }
                assert_eq!(sym, expected, "{dtype} {layout}, {n} elements: to_symbols");
                from_symbols(dtype, layout, &sym, &mut back).unwrap();
                assert_eq!(back, data, "{dtype} {layout}, {n} elements: from_symbols");
            }
        }
    }

    #[test]
    fn every_byte_round_trips_for_one_byte_types() {
        let data: Vec<u8> = (0..=255).collect();
        for dtype in [DType::F8E4M3, DType::F8E5M2, DType::U8] {
            for layout in Layout::ALL {
                round_trip(dtype, layout, &data);
            }
        }
    }

    #[test]
    fn bf16_exponent_layout_puts_the_exact_exponent_in_the_high_stream() {
        for bits in [0x3f80u16, 0xbf80, 0x0000, 0x8000, 0x7f80, 0xffff, 0x4049, 0x0001] {
            let mut sym = [0u8; 2];
            to_symbols(DType::Bf16, Layout::Exponent, &bits.to_le_bytes(), &mut sym).unwrap();
            assert_eq!(sym[1], ((bits >> 7) & 0xff) as u8, "exponent of {bits:#06x}");
            assert_eq!(sym[0] >> 1, (bits & 0x7f) as u8, "mantissa of {bits:#06x}");
            assert_eq!(sym[0] & 1, (bits >> 15) as u8, "sign of {bits:#06x}");
        }
    }

    #[test]
    fn f32_exponent_layout_puts_the_exact_exponent_in_stream_3() {
        for x in [1.0f32, -2.5, 1e-30, 3e38, 0.0, -0.0, f32::NAN, f32::INFINITY] {
            let mut sym = [0u8; 4];
            to_symbols(DType::F32, Layout::Exponent, &x.to_le_bytes(), &mut sym).unwrap();
            assert_eq!(sym[3], ((x.to_bits() >> 23) & 0xff) as u8, "{x}");
        }
    }

    #[test]
    fn planes_transpose_bytes() {
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let mut sym = [0u8; 8];
        to_symbols(DType::F32, Layout::Planes, &data, &mut sym).unwrap();
        assert_eq!(sym, [1, 5, 2, 6, 3, 7, 4, 8]);
        let streams = split_streams(DType::Bf16, Layout::Planes, &data).unwrap();
        assert_eq!(streams, vec![vec![1, 3, 5, 7], vec![2, 4, 6, 8]]);
    }

    #[test]
    fn misaligned_input_is_an_error() {
        let mut out = [0u8; 3];
        let err = to_symbols(DType::F32, Layout::Planes, &[0; 3], &mut out).unwrap_err();
        assert_eq!(err.len, 3);
        assert!(err.to_string().contains("f32"));
    }

    proptest::proptest! {
        #[test]
        fn random_f32_and_bf16_patterns_round_trip(words in proptest::collection::vec(proptest::num::u32::ANY, 0..300)) {
            let data: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            for dtype in DType::ALL {
                for layout in Layout::ALL {
                    round_trip(dtype, layout, &data);
                }
            }
        }
    }
}
