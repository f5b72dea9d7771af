//! A frame's CRC-32 (the zlib/IEEE one, as `crc32fast` computes it) taken chunk by chunk: each
//! chunk's CRC is computed while its bytes are still in cache from coding them (`crc32fast` runs
//! at about 15 GB/s on a 64 KiB chunk here, 7.8 GB/s over a 32 MiB buffer from memory), chunks
//! coded in parallel get theirs in parallel, and the frame's CRC is put together from the
//! chunks' without reading the data again.

use crate::frame::CHUNK_BYTES;

/// The CRC-32 polynomial, bit-reflected.
const POLY: u32 = 0xedb8_8320;

/// `a · b` modulo the CRC polynomial, both bit-reflected polynomials over GF(2) (bit 31 is x⁰).
const fn multiply(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut i = 0;
    while i < 32 {
        if a & (1 << (31 - i)) != 0 {
            product ^= b;
        }
        // b · x
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        i += 1;
    }
    product
}

/// x^(8·2^k) modulo the CRC polynomial for k = 0..64: the squares [`zeros_operator`] multiplies
/// together, computed at compile time.
const ZEROS_POW2: [u32; 64] = {
    let (mut table, mut square, mut k) = ([0; 64], 1 << 23, 0); // x⁸
    while k < 64 {
        table[k] = square;
        square = multiply(square, square);
        k += 1;
    }
    table
};

/// x^(8·len) modulo the CRC polynomial: multiplying a CRC by it appends `len` zero bytes. One
/// multiply per set bit of `len` (squaring as it went cost a 4 KiB frame ~20 multiplies, 10% of
/// decoding it).
const fn zeros_operator(len: u64) -> u32 {
    let (mut power, mut n, mut k) = (1 << 31, len, 0); // x⁰
    while n != 0 {
        if n & 1 != 0 {
            power = multiply(ZEROS_POW2[k], power);
        }
        n >>= 1;
        k += 1;
    }
    power
}

/// Appending a whole chunk's worth of zero bytes, the common case, computed once.
const CHUNK_ZEROS: u32 = zeros_operator(CHUNK_BYTES as u64);

/// The CRC-32 of a chunk just coded (its bytes still in cache) when the frame carries one (`wanted`),
/// else 0, which [`combine`] and [`of_chunks`] carry through as 0.
pub(crate) fn of_chunk(chunk: &[u8], wanted: bool) -> u32 {
    if wanted {
        crc32fast::hash(chunk)
    } else {
        0
    }
}

/// The CRC-32 of `a ‖ b` from `crc_a` (of `a`), `crc_b` (of `b`) and `b`'s length. (The CRC's
/// initial value and final XOR cancel in the sum: see zlib's `crc32_combine`.)
pub(crate) fn combine(crc_a: u32, crc_b: u32, len_b: usize) -> u32 {
    // 0 · x^n is 0: frames without a checksum (whose CRCs are all 0) and every frame's first chunk
    // need no multiply.
    if crc_a == 0 {
        return crc_b;
    }
    let zeros = if len_b == CHUNK_BYTES { CHUNK_ZEROS } else { zeros_operator(len_b as u64) };
    multiply(zeros, crc_a) ^ crc_b
}

/// The CRC-32 of the chunks, in order, whose own CRCs are `crcs` (each chunk `CHUNK_BYTES` long but
/// the last, which ends the `total` bytes).
pub(crate) fn of_chunks(crcs: &[u32], total: usize) -> u32 {
    let mut at = 0;
    crcs.iter().fold(0, |crc, &c| {
        let len = CHUNK_BYTES.min(total - at);
        at += len;
        combine(crc, c, len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn combined_crcs_are_the_crc_of_the_concatenation() {
        for (na, nb) in [(0, 0), (0, 5), (5, 0), (1, 1), (3, 1000), (CHUNK_BYTES, CHUNK_BYTES), (777, CHUNK_BYTES), (CHUNK_BYTES, 12_345)] {
            let (a, b) = (bytes(na, na as u64), bytes(nb, 7 + nb as u64));
            let whole = [a.as_slice(), b.as_slice()].concat();
            assert_eq!(combine(crc32fast::hash(&a), crc32fast::hash(&b), nb), crc32fast::hash(&whole), "{na} + {nb} bytes");
        }
    }

    #[test]
    fn the_zeros_operator_is_x_to_the_8n_for_any_length() {
        // x^(8n) by repeated multiplication by x^8, for small n; by squaring for large ones.
        let mut power = 1 << 31;
        for n in 0..300u64 {
            assert_eq!(zeros_operator(n), power, "{n} bytes");
            power = multiply(1 << 23, power);
        }
        for n in [1u64 << 20, (1 << 32) + 12345, (1 << 40) - 1, u64::MAX] {
            let (mut by_squares, mut square, mut m) = (1 << 31, 1 << 23, n);
            while m != 0 {
                if m & 1 != 0 {
                    by_squares = multiply(square, by_squares);
                }
                square = multiply(square, square);
                m >>= 1;
            }
            assert_eq!(zeros_operator(n), by_squares, "{n} bytes");
        }
    }

    #[test]
    fn a_frames_crc_is_put_together_from_its_chunks() {
        for total in [0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES + 4321] {
            let data = bytes(total, total as u64);
            let crcs: Vec<u32> = data.chunks(CHUNK_BYTES).map(crc32fast::hash).collect();
            assert_eq!(of_chunks(&crcs, total), crc32fast::hash(&data), "{total} bytes");
        }
    }
}
