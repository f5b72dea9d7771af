//! Writing lanes: symbols to LSB-first bits through a codebook's encode tables. The kernel of the
//! encoder; chunks, frames and threads are `crate::encode`'s.

use crate::codebook::{PairEncodeTable, StreamCode, PAIR_ENCODE_MAX_BITS};
use crate::frame::lane_span;

/// Bytes one lane of `m` symbols may need while coding: 16 bits a symbol, plus 8 bytes of slack
/// for the 8-byte stores.
pub(crate) fn lane_capacity(m: usize) -> usize {
    2 * m + 8
}

/// Codes `syms` into `buf` (LSB-first) and returns the bytes written: `syms` is read four at a
/// time, as two pairs (a 2-byte load each) looked up in the two-symbol table, with the two pairs
/// (≤ 54 bits) between 8-byte flushes, so at most 7 + 54 bits are ever pending in the 64-bit
/// accumulator. A pair too long for the table is written as two symbols between extra flushes.
#[inline(always)]
fn encode_lane_pairs<const ALL_FIT: bool>(pairs: &PairEncodeTable, single: &[u32; 256], syms: &[u8], buf: &mut [u8]) -> usize {
    // Each flush writes 8 bytes at `pos` ≤ (bits coded so far) / 8 ≤ 2 · symbols coded so far.
    assert!(buf.len() >= lane_capacity(syms.len()));
    let (codes, lens) = (&*pairs.codes, &*pairs.lens);
    let (mut bits, mut n, mut pos) = (0u64, 0u32, 0usize);
    macro_rules! flush {
        () => {
            // SAFETY: `pos + 8 ≤ 2 · syms.len() + 8 ≤ buf.len()` (asserted above); the checked
            // store cost ~5% of encode speed.
            unsafe { buf.as_mut_ptr().add(pos).cast::<[u8; 8]>().write_unaligned(bits.to_le_bytes()) };
            pos += (n >> 3) as usize;
            bits >>= n & !7;
            n &= 7;
        };
    }
    macro_rules! single {
        ($s:expr) => {
            let e = single[$s as usize];
            bits |= u64::from(e & 0xffff) << n;
            n += e >> 16;
        };
    }
    macro_rules! block {
        ($block:expr) => {
            let block = $block;
            // Each pair loaded on its own: a load that zero-extends, where one 4-byte load needed a
            // zero-extension and a shift to take it apart.
            for pair in [u32::from(u16::from_le_bytes([block[0], block[1]])), u32::from(u16::from_le_bytes([block[2], block[3]]))] {
                let (code, len) = (codes[pair as usize], lens[pair as usize]);
                if !ALL_FIT && len == 0 {
                    // ≤ 7 + 27 pending: flush, two codes of ≤ 16 bits, flush.
                    flush!();
                    single!(pair & 0xff);
                    single!(pair >> 8);
                    flush!();
                    continue;
                }
                bits |= u64::from(code) << n;
                n += u32::from(len);
            }
            flush!();
        };
    }
    // Two blocks an iteration: the loop's own counting is paid once per eight symbols.
    let mut eights = syms.chunks_exact(8);
    for eight in &mut eights {
        block!(&eight[..4]);
        block!(&eight[4..]);
    }
    let mut blocks = eights.remainder().chunks_exact(4);
    for b in &mut blocks {
        block!(b);
    }
    for &s in blocks.remainder() {
        single!(s);
    }
    // ≤ 7 + 48 bits pending: write them all, keep only the bytes that hold bits.
    // SAFETY: as in `flush!`.
    unsafe { buf.as_mut_ptr().add(pos).cast::<[u8; 8]>().write_unaligned(bits.to_le_bytes()) };
    pos + n.div_ceil(8) as usize
}

/// Codes the lanes of one stream back to back into `dst` where it has room for a lane's worst
/// case, else into `scratch` (lane `l` at `l · cap`, copied into `dst` by the caller once the
/// sizes are known); writes each lane's size into `sizes` and whether it went to `scratch` into
/// `staged`.
pub(crate) fn encode_lanes(code: &StreamCode, syms: &[u8], dst: &mut [u8], scratch: &mut [u8], cap: usize, sizes: &mut [usize], staged: &mut [bool]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("bmi2") {
        // SAFETY: the CPU has BMI2, checked just above.
        return unsafe { encode_lanes_bmi2(code, syms, dst, scratch, cap, sizes, staged) };
    }
    encode_lanes_generic(code, syms, dst, scratch, cap, sizes, staged)
}

/// [`encode_lanes_generic`] compiled with BMI2 (`shlx`/`shrx`: shifts by a register other than
/// `cl`), chosen at run time as huff0 does.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi2")]
fn encode_lanes_bmi2(code: &StreamCode, syms: &[u8], dst: &mut [u8], scratch: &mut [u8], cap: usize, sizes: &mut [usize], staged: &mut [bool]) {
    encode_lanes_generic(code, syms, dst, scratch, cap, sizes, staged)
}

#[inline(always)]
fn encode_lanes_generic(code: &StreamCode, syms: &[u8], dst: &mut [u8], scratch: &mut [u8], cap: usize, sizes: &mut [usize], staged: &mut [bool]) {
    let table = code.encode_table();
    let lanes = sizes.len();
    let mut at = 0;
    for l in 0..lanes {
        let (start, m) = lane_span(syms.len(), lanes, l);
        let lane = &syms[start..start + m];
        // Straight into the output when the lane's worst case fits there (all but the last lanes,
        // usually): that saves copying them from scratch afterwards.
        let direct = dst.len() - at.min(dst.len()) >= lane_capacity(m);
        let buf = if direct { &mut dst[at..at + lane_capacity(m)] } else { &mut scratch[l * cap..(l + 1) * cap] };
        // When every pair fits the table, the hot loop skips the test for pairs that do not.
        sizes[l] = if 2 * code.max_len() <= PAIR_ENCODE_MAX_BITS {
            encode_lane_pairs::<true>(code.pair_encode_table(), table, lane, buf)
        } else {
            encode_lane_pairs::<false>(code.pair_encode_table(), table, lane, buf)
        };
        staged[l] = !direct;
        at += sizes[l];
    }
}
