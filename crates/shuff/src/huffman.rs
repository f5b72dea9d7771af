//! Huffman code construction: optimal code lengths (unlimited, and length-limited by
//! package-merge) and canonical code assignment.
//!
//! Lengths are per symbol; a length of 0 means "no code" (the symbol had zero weight). Codebooks
//! never contain zeros: they floor every weight first so all 256 symbols stay encodable.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Why a code could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// More symbols with weight than a code of this maximum length can hold.
    #[error("{symbols} symbols cannot all get codes of at most {max_len} bits (2^{max_len} < {symbols})")]
    TooManySymbols {
        /// Symbols with non-zero weight.
        symbols: usize,
        /// Requested maximum length.
        max_len: u32,
    },
    /// A maximum length outside 1..=32.
    #[error("maximum code length {0} is outside 1..=32")]
    BadMaxLen(u32),
}

/// Optimal (textbook, unlimited-length) Huffman code lengths for `weights`.
/// Zero weights get length 0; a single non-zero weight gets length 1.
pub fn huffman_lengths(weights: &[u64]) -> Vec<u8> {
    let mut lengths = vec![0u8; weights.len()];
    let live: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0).collect();
    match live.len() {
        0 => return lengths,
        1 => {
            lengths[live[0]] = 1;
            return lengths;
        }
        _ => {}
    }
    // Nodes 0..n are leaves; internal nodes are appended. `parent` lets us read depths at the end.
    let mut parent: Vec<usize> = vec![usize::MAX; live.len()];
    let mut heap: BinaryHeap<Reverse<(u128, usize)>> =
        live.iter().enumerate().map(|(node, &s)| Reverse((u128::from(weights[s]), node))).collect();
    while heap.len() > 1 {
        let Reverse((wa, a)) = heap.pop().expect("len > 1");
        let Reverse((wb, b)) = heap.pop().expect("len > 1");
        let node = parent.len();
        parent.push(usize::MAX);
        parent[a] = node;
        parent[b] = node;
        heap.push(Reverse((wa + wb, node)));
    }
    // Parents always have larger indices than children, so one backward pass computes depths.
    let mut depth = vec![0u8; parent.len()];
    for node in (0..parent.len()).rev() {
        if parent[node] != usize::MAX {
            depth[node] = depth[parent[node]] + 1;
        }
    }
    for (leaf, &s) in live.iter().enumerate() {
        lengths[s] = depth[leaf];
    }
    lengths
}

/// Optimal code lengths of at most `max_len` bits, by package-merge (Larmore & Hirschberg 1990):
/// the minimum of `Σ weight·length` over all prefix codes with lengths ≤ `max_len`.
///
/// Zero weights get length 0. Works in `O(n·max_len)` time and space.
pub fn limited_lengths(weights: &[u64], max_len: u32) -> Result<Vec<u8>, CodeError> {
    if !(1..=32).contains(&max_len) {
        return Err(CodeError::BadMaxLen(max_len));
    }
    let mut lengths = vec![0u8; weights.len()];
    let mut live: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0).collect();
    match live.len() {
        0 => return Ok(lengths),
        1 => {
            lengths[live[0]] = 1;
            return Ok(lengths);
        }
        n if (n as u64) > (1u64 << max_len) => return Err(CodeError::TooManySymbols { symbols: n, max_len }),
        _ => {}
    }
    live.sort_by_key(|&s| (weights[s], s));
    let n = live.len();

    // Arena of items. A leaf is a coin of one symbol; a package merges two items of the level below.
    enum Item {
        Leaf(usize),
        Package(usize, usize),
    }
    let mut arena: Vec<Item> = Vec::with_capacity(2 * n * max_len as usize);
    let mut weight: Vec<u128> = Vec::with_capacity(arena.capacity());
    let leaves: Vec<usize> = live
        .iter()
        .map(|&s| {
            arena.push(Item::Leaf(s));
            weight.push(u128::from(weights[s]));
            arena.len() - 1
        })
        .collect();

    // Level max_len holds only the leaves. Each level above merges the leaves with the packages
    // (pairs) of the level below, in weight order, keeping at most 2n−2 items (no more are used).
    let mut level = leaves.clone();
    for _ in 1..max_len {
        let mut packages = Vec::with_capacity(level.len() / 2);
        for pair in level.chunks_exact(2) {
            arena.push(Item::Package(pair[0], pair[1]));
            weight.push(weight[pair[0]] + weight[pair[1]]);
            packages.push(arena.len() - 1);
        }
        let mut merged = Vec::with_capacity((leaves.len() + packages.len()).min(2 * n - 2));
        let (mut i, mut j) = (0, 0);
        while merged.len() < 2 * n - 2 && (i < leaves.len() || j < packages.len()) {
            // Leaves first on ties: it keeps codes shorter for equal cost, and the result deterministic.
            if j >= packages.len() || (i < leaves.len() && weight[leaves[i]] <= weight[packages[j]]) {
                merged.push(leaves[i]);
                i += 1;
            } else {
                merged.push(packages[j]);
                j += 1;
            }
        }
        level = merged;
    }

    // The first 2n−2 items of the top level form the solution: each appearance of a leaf inside
    // them adds one bit to that symbol's length.
    let mut stack: Vec<usize> = level.iter().take(2 * n - 2).copied().collect();
    while let Some(item) = stack.pop() {
        match arena[item] {
            Item::Leaf(s) => lengths[s] += 1,
            Item::Package(a, b) => {
                stack.push(a);
                stack.push(b);
            }
        }
    }
    Ok(lengths)
}

/// The Kraft sum `Σ 2^-len` over symbols with a code, as an exact fraction of `2^64`
/// (lengths must be ≤ 64). A complete prefix code has exactly `1 << 64`.
pub fn kraft_sum(lengths: &[u8]) -> u128 {
    lengths.iter().filter(|&&l| l > 0).map(|&l| 1u128 << (64 - u32::from(l).min(64))).sum()
}

/// Whether `lengths` form a complete prefix code (Kraft sum exactly 1).
pub fn is_complete(lengths: &[u8]) -> bool {
    lengths.iter().all(|&l| l <= 64) && kraft_sum(lengths) == 1u128 << 64
}

/// Canonical codes for `lengths` (as in DEFLATE): shorter codes first, ties by symbol value; each
/// code is returned MSB-first in the low `len` bits. Symbols of length 0 get code 0.
/// `lengths` must satisfy Kraft ≤ 1 and be ≤ 32.
pub fn canonical_codes(lengths: &[u8]) -> Vec<u32> {
    let max = lengths.iter().copied().max().unwrap_or(0) as usize;
    let mut count = vec![0u32; max + 1];
    // count[0] stays 0: length-0 symbols have no code.
    for &l in lengths {
        if l > 0 {
            count[l as usize] += 1;
        }
    }
    let mut next = vec![0u32; max + 1];
    let mut code = 0u32;
    for len in 1..=max {
        code = (code + count[len - 1]) << 1;
        next[len] = code;
    }
    lengths
        .iter()
        .map(|&l| {
            if l == 0 {
                0
            } else {
                let c = next[l as usize];
                next[l as usize] += 1;
                c
            }
        })
        .collect()
}

/// `Σ weight·length`, the cost a code minimizes.
pub fn cost(weights: &[u64], lengths: &[u8]) -> u128 {
    weights.iter().zip(lengths).map(|(&w, &l)| u128::from(w) * u128::from(l)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The minimum cost over every length vector with lengths in 1..=max_len and Kraft ≤ 1,
    /// by exhaustive enumeration (small alphabets only).
    fn brute_force_cost(weights: &[u64], max_len: u8) -> u128 {
        fn go(w: &[u64], i: usize, max_len: u8, kraft: u128, acc: u128, best: &mut u128) {
            if kraft > 1u128 << 64 || acc >= *best {
                return;
            }
            if i == w.len() {
                *best = acc;
                return;
            }
            for l in 1..=max_len {
                go(w, i + 1, max_len, kraft + (1u128 << (64 - l)), acc + u128::from(w[i]) * u128::from(l), best);
            }
        }
        let live: Vec<u64> = weights.iter().copied().filter(|&w| w > 0).collect();
        let mut best = u128::MAX;
        go(&live, 0, max_len, 0, 0, &mut best);
        best
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(limited_lengths(&[0, 0, 0], 12).unwrap(), vec![0, 0, 0]);
        assert_eq!(huffman_lengths(&[0, 0, 0]), vec![0, 0, 0]);
        assert_eq!(limited_lengths(&[0, 5, 0], 12).unwrap(), vec![0, 1, 0]);
        assert_eq!(huffman_lengths(&[0, 5, 0]), vec![0, 1, 0]);
        assert_eq!(limited_lengths(&[3, 0, 9], 12).unwrap(), vec![1, 0, 1]);
        let uniform = limited_lengths(&[1; 256], 12).unwrap();
        assert!(uniform.iter().all(|&l| l == 8));
        assert_eq!(huffman_lengths(&[1; 256]), uniform);
        assert!(matches!(limited_lengths(&[1; 256], 7), Err(CodeError::TooManySymbols { .. })));
        assert!(limited_lengths(&[1; 256], 8).unwrap().iter().all(|&l| l == 8));
        assert!(matches!(limited_lengths(&[1, 2], 0), Err(CodeError::BadMaxLen(0))));
    }

    #[test]
    fn limit_binds_on_a_geometric_distribution() {
        let w: Vec<u64> = (0..20).map(|i| 1u64 << (40 - 2 * i)).collect();
        let free = huffman_lengths(&w);
        assert_eq!(*free.iter().max().unwrap(), 19);
        let limited = limited_lengths(&w, 8).unwrap();
        assert!(limited.iter().all(|&l| (1..=8).contains(&l)));
        assert!(is_complete(&limited));
        assert!(cost(&w, &limited) > cost(&w, &free));
    }

    #[test]
    fn canonical_codes_are_prefix_free_and_ordered() {
        let lengths = [2u8, 1, 3, 3];
        assert_eq!(canonical_codes(&lengths), vec![0b10, 0b0, 0b110, 0b111]);
        let lengths = limited_lengths(&(1..=256u64).map(|i| i * i).collect::<Vec<_>>(), 12).unwrap();
        let codes = canonical_codes(&lengths);
        for a in 0..256 {
            for b in 0..256 {
                if a != b && lengths[a] <= lengths[b] {
                    let prefix = codes[b] >> (lengths[b] - lengths[a]);
                    assert_ne!(prefix, codes[a], "code of {a} is a prefix of code of {b}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn package_merge_matches_exhaustive_search(weights in prop::collection::vec(0u64..1000, 2..7), max_len in 3u8..5) {
            let lengths = limited_lengths(&weights, u32::from(max_len)).unwrap();
            prop_assert_eq!(cost(&weights, &lengths), brute_force_cost(&weights, max_len));
            prop_assert!(lengths.iter().all(|&l| l <= max_len));
        }

        #[test]
        fn unlimited_package_merge_equals_textbook_huffman(weights in prop::collection::vec(0u64..1_000_000, 2..300)) {
            let free = huffman_lengths(&weights);
            let limited = limited_lengths(&weights, 32).unwrap();
            prop_assert_eq!(cost(&weights, &free), cost(&weights, &limited));
            if weights.iter().filter(|&&w| w > 0).count() >= 2 {
                prop_assert!(is_complete(&free));
                prop_assert!(is_complete(&limited));
            }
        }

        #[test]
        fn limited_codes_are_complete_and_bounded(weights in prop::collection::vec(1u64..u64::MAX / 512, 256), max_len in 8u32..17) {
            let lengths = limited_lengths(&weights, max_len).unwrap();
            prop_assert!(is_complete(&lengths));
            prop_assert!(lengths.iter().all(|&l| l >= 1 && u32::from(l) <= max_len));
            prop_assert!(cost(&weights, &lengths) >= cost(&weights, &huffman_lengths(&weights)));
        }
    }
}
