//! Codebook tables in the byte layout that device (GPU) coders load: one fixed-size record per
//! symbol stream, for the kernels in `python/shuff/gpu/shuff_lane.cuh` (`StreamTables` there).
//! The tables are the same ones the CPU coder uses ([`StreamCode::encode_table`],
//! [`StreamCode::decode_table`], the canonical long-code tables), so a GPU frame is a CPU frame.
//!
//! Record of [`STREAM_TABLES_BYTES`] bytes, little-endian:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 1024 | encode table: u32 per symbol, LSB-first code in bits 0..16, length in bits 16..21 |
//! | 1024 | 8192 | decode table: u16 per 12-bit window, symbol in bits 0..8, length in bits 8..13 (0: longer code) |
//! | 9216 | 68 | u32 per length 0..=16: first canonical code of that length (MSB-first) |
//! | 9284 | 68 | u32 per length: number of codes of that length |
//! | 9352 | 68 | u32 per length: index in the sorted symbols of that length's first symbol |
//! | 9420 | 256 | symbols ordered by (length, symbol) |
//! | 9676 | 4 | u32: longest code |
//! | 9680 | 4 | u32: 1 when every symbol has 8 bits (the stream is then stored raw) |
//! | 9684 | 44 | zero |

use crate::codebook::{Codebook, StreamCode};

/// Bytes of one stream's record (a multiple of 16, so records stay aligned for wide loads).
pub const STREAM_TABLES_BYTES: usize = 9728;

fn put_u32s(out: &mut Vec<u8>, values: &[u32]) {
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// One stream's record.
pub fn stream_tables(code: &StreamCode) -> Vec<u8> {
    let mut out = Vec::with_capacity(STREAM_TABLES_BYTES);
    put_u32s(&mut out, code.encode_table());
    for e in code.decode_table().iter() {
        out.extend_from_slice(&e.to_le_bytes());
    }
    let long = code.long_code_tables();
    put_u32s(&mut out, &long.first);
    put_u32s(&mut out, &long.count);
    put_u32s(&mut out, &long.offset);
    out.extend_from_slice(&long.sorted);
    put_u32s(&mut out, &[code.max_len(), u32::from(code.is_flat())]);
    out.resize(STREAM_TABLES_BYTES, 0);
    out
}

/// The records of the streams of `members[s]`'s stream `s`, back to back: the tables a device
/// coder needs for a frame whose stream `s` is coded by family member `members[s]`.
pub fn frame_tables(members: &[&Codebook]) -> Vec<u8> {
    members.iter().enumerate().flat_map(|(s, book)| stream_tables(&book.streams()[s])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Histogram;
    use crate::{DType, Layout};

    #[test]
    fn records_have_the_documented_layout() {
        let mut h = Histogram::new();
        for (s, c) in h.counts.iter_mut().enumerate() {
            *c = 1 << (30 - (s % 31));
        }
        let book = Codebook::from_distributions(DType::Bf16, Layout::Exponent, &vec![h.distribution().unwrap(); 2], 16).unwrap();
        let t = frame_tables(&[&book, &book]);
        assert_eq!(t.len(), 2 * STREAM_TABLES_BYTES);
        let code = &book.streams()[1];
        let rec = &t[STREAM_TABLES_BYTES..];
        let u32_at = |o: usize| u32::from_le_bytes(rec[o..o + 4].try_into().unwrap());
        assert_eq!(u32_at(4 * 7), code.encode_table()[7]);
        assert_eq!(u16::from_le_bytes([rec[1024 + 2 * 99], rec[1024 + 2 * 99 + 1]]), code.decode_table()[99]);
        assert_eq!(u32_at(9676), code.max_len());
        assert_eq!(u32_at(9680), 0);
        // Counts per length sum to 256 symbols, and the sorted symbols are a permutation.
        assert_eq!((0..17).map(|l| u32_at(9284 + 4 * l)).sum::<u32>(), 256);
        let mut sorted = rec[9420..9676].to_vec();
        sorted.sort();
        assert_eq!(sorted, (0..=255).collect::<Vec<u8>>());
    }
}
