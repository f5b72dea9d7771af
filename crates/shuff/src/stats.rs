//! Symbol statistics: histograms, distributions, and the information measures that say how well a
//! code fits them.

use serde::{Deserialize, Serialize};

/// Counts of each of the 256 byte values in a symbol stream.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Histogram {
    /// `counts[s]` is how many times symbol `s` occurred.
    #[serde(with = "counts_serde")]
    pub counts: [u64; 256],
}

mod counts_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(c: &[u64; 256], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(c.iter())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u64; 256], D::Error> {
        let v = Vec::<u64>::deserialize(d)?;
        v.try_into().map_err(|v: Vec<u64>| serde::de::Error::invalid_length(v.len(), &"256 counts"))
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: [0; 256] }
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Histogram of `data`.
    pub fn of(data: &[u8]) -> Self {
        let mut h = Self::new();
        h.add(data);
        h
    }

    /// Adds every byte of `data`.
    ///
    /// Four sub-tables take every fourth byte each: tensors are full of repeated bytes (the same
    /// exponent over and over), and with a single table each increment would wait on the previous
    /// store to the same counter. With four, consecutive equal bytes hit different counters.
    pub fn add(&mut self, data: &[u8]) {
        // u32 sub-counters are half the cache footprint of u64; flush them before they can wrap.
        const BLOCK: usize = 1 << 30;
        let mut t = [[0u32; 256]; 4];
        for block in data.chunks(BLOCK) {
            let mut quads = block.chunks_exact(16);
            for q in &mut quads {
                for j in (0..16).step_by(4) {
                    t[0][q[j] as usize] += 1;
                    t[1][q[j + 1] as usize] += 1;
                    t[2][q[j + 2] as usize] += 1;
                    t[3][q[j + 3] as usize] += 1;
                }
            }
            for &b in quads.remainder() {
                t[0][b as usize] += 1;
            }
            for s in 0..256 {
                self.counts[s] += u64::from(t[0][s]) + u64::from(t[1][s]) + u64::from(t[2][s]) + u64::from(t[3][s]);
            }
            t = [[0u32; 256]; 4];
        }
    }

    /// The straightforward one-table count; kept as the reference for tests and the benchmark.
    pub fn add_simple(&mut self, data: &[u8]) {
        for &b in data {
            self.counts[b as usize] += 1;
        }
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

    /// Total number of symbols counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Number of distinct symbols present.
    pub fn distinct(&self) -> usize {
        self.counts.iter().filter(|&&c| c > 0).count()
    }

    /// Shannon entropy in bits per symbol (0 for an empty histogram).
    pub fn entropy(&self) -> f64 {
        self.distribution().map_or(0.0, |d| d.entropy())
    }

    /// Total bits needed to code these symbols with per-symbol code `lengths`.
    pub fn coded_bits(&self, lengths: &[u8; 256]) -> u64 {
        self.counts.iter().zip(lengths.iter()).map(|(&c, &l)| c * u64::from(l)).sum()
    }

    /// The normalized distribution, or `None` when nothing was counted.
    pub fn distribution(&self) -> Option<Distribution> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let mut p = [0.0; 256];
        for (p, &c) in p.iter_mut().zip(self.counts.iter()) {
            *p = c as f64 / total as f64;
        }
        Some(Distribution { p })
    }
}

/// A probability distribution over the 256 symbols (sums to 1).
#[derive(Clone, PartialEq, Debug)]
pub struct Distribution {
    /// `p[s]` is the probability of symbol `s`.
    pub p: [f64; 256],
}

impl Distribution {
    /// The uniform distribution.
    pub fn uniform() -> Self {
        Distribution { p: [1.0 / 256.0; 256] }
    }

    /// The paper's rule: the plain average of per-batch normalized distributions, so that each
    /// batch counts the same whatever its size. `None` when `batches` is empty.
    pub fn average<'a>(batches: impl IntoIterator<Item = &'a Distribution>) -> Option<Self> {
        let mut sum = [0.0; 256];
        let mut n = 0usize;
        for d in batches {
            for (s, p) in sum.iter_mut().zip(d.p.iter()) {
                *s += p;
            }
            n += 1;
        }
        if n == 0 {
            return None;
        }
        for s in &mut sum {
            *s /= n as f64;
        }
        Some(Distribution { p: sum })
    }

    /// Exponential moving average over batches in order: `d ← (1−α)·d + α·batch`, starting from the
    /// first batch. Recent batches weigh more, for tensors whose statistics move during training.
    pub fn ema<'a>(batches: impl IntoIterator<Item = &'a Distribution>, alpha: f64) -> Option<Self> {
        let mut it = batches.into_iter();
        let mut acc = it.next()?.clone();
        for d in it {
            for (a, p) in acc.p.iter_mut().zip(d.p.iter()) {
                *a = (1.0 - alpha) * *a + alpha * p;
            }
        }
        Some(acc)
    }

    /// Shannon entropy in bits per symbol.
    pub fn entropy(&self) -> f64 {
        self.p.iter().filter(|&&p| p > 0.0).map(|&p| -p * p.log2()).sum()
    }

    /// Cross-entropy `H(self, q)` in bits: the cost per symbol of data distributed as `self` under an
    /// ideal code for `q`. Infinite where `self` has mass that `q` lacks.
    pub fn cross_entropy(&self, q: &Distribution) -> f64 {
        self.p
            .iter()
            .zip(q.p.iter())
            .filter(|(&p, _)| p > 0.0)
            .map(|(&p, &q)| if q > 0.0 { -p * q.log2() } else { f64::INFINITY })
            .sum()
    }

    /// Kullback–Leibler divergence `D(self ‖ q)` in bits.
    pub fn kl_divergence(&self, q: &Distribution) -> f64 {
        self.cross_entropy(q) - self.entropy()
    }

    /// Expected code length in bits per symbol of data distributed as `self`, under code `lengths`
    /// (the cross-entropy against the code's implied distribution `2^-len`).
    pub fn expected_length(&self, lengths: &[u8; 256]) -> f64 {
        self.p.iter().zip(lengths.iter()).map(|(&p, &l)| p * f64::from(l)).sum()
    }
}

/// Compressibility as the paper defines it: `1 − coded bits / original bits` (can be negative).
pub fn compressibility(coded_bits: f64, original_bits: f64) -> f64 {
    if original_bits == 0.0 {
        0.0
    } else {
        1.0 - coded_bits / original_bits
    }
}

/// Per-stream histograms of a tensor under `layout`.
pub fn stream_histograms(
    dtype: crate::DType,
    layout: crate::Layout,
    data: &[u8],
) -> Result<Vec<Histogram>, crate::layout::MisalignedTensor> {
    let k = layout.stream_count(dtype);
    if k == 1 {
        crate::layout::element_count(dtype, data.len())?;
        return Ok(vec![Histogram::of(data)]);
    }
    let mut sym = vec![0u8; data.len()];
    crate::layout::to_symbols(dtype, layout, data, &mut sym)?;
    let n = data.len() / k;
    Ok((0..k).map(|s| Histogram::of(&sym[s * n..(s + 1) * n])).collect())
}

/// Per-stream histograms of every `stride`-th element of a tensor under `layout` (`stride` 1: all
/// of it, as [`stream_histograms`]), counted straight from the tensor's bytes: the sample a
/// family's choice reads ([`crate::Family::choose`] adds code lengths instead of counting; its
/// choice is [`crate::Family::choose_from_histograms`] of these, as the GPU coder makes it).
pub fn sampled_stream_histograms(
    dtype: crate::DType,
    layout: crate::Layout,
    data: &[u8],
    stride: usize,
) -> Result<Vec<Histogram>, crate::layout::MisalignedTensor> {
    let mut hists = vec![Histogram::new(); layout.stream_count(dtype)];
    for_each_sampled_symbol(dtype, layout, data, stride, |s, b| hists[s].counts[usize::from(b)] += 1)?;
    Ok(hists)
}

/// Calls `visit(stream, symbol)` for each symbol that `layout` makes of every `stride`-th element
/// of a tensor, element by element (the one definition of a strided sample: histograms and a
/// family's choice both read it). Inlined so that each caller's `visit` becomes straight-line code.
#[inline(always)]
pub(crate) fn for_each_sampled_symbol(
    dtype: crate::DType,
    layout: crate::Layout,
    data: &[u8],
    stride: usize,
    mut visit: impl FnMut(usize, u8),
) -> Result<(), crate::layout::MisalignedTensor> {
    let elements = crate::layout::element_count(dtype, data.len())?;
    // A stride past the end samples element 0 alone, as any stride ≥ `elements` does; clamped,
    // `size · stride` ≤ the message's length cannot overflow.
    let (size, k, stride) = (dtype.size(), layout.stream_count(dtype), stride.clamp(1, elements.max(1)));
    let rotate = layout.rotates(dtype);
    // Groups of `stride` elements, the first of each sampled, then the first of the short last
    // group if there is one; one loop per element size. (Through `chunks_exact(size)
    // .step_by(stride)` and an inner loop over a size known only at run time, LLVM kept the
    // position in memory: 7 cycles an element; index loops with bounds checks, 3.3; these, 3.)
    let mut groups = data.chunks_exact(size * stride);
    let last = groups.remainder();
    macro_rules! sampled {
        ($n:literal, |$e:ident| $body:block) => {{
            for g in groups.by_ref() {
                let $e = &g[..$n];
                $body
            }
            if !last.is_empty() {
                let $e = &last[..$n];
                $body
            }
        }};
    }
    match (k, size) {
        (1, 1) => sampled!(1, |e| {
            visit(0, e[0]);
        }),
        (1, 2) => sampled!(2, |e| {
            visit(0, e[0]);
            visit(0, e[1]);
        }),
        (1, 4) => sampled!(4, |e| {
            for &b in e {
                visit(0, b);
            }
        }),
        (2, 2) => sampled!(2, |e| {
            let v = u16::from_le_bytes([e[0], e[1]]);
            let [a, b] = if rotate { v.rotate_left(1) } else { v }.to_le_bytes();
            visit(0, a);
            visit(1, b);
        }),
        (4, 4) => sampled!(4, |e| {
            let v = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            for (s, b) in (if rotate { v.rotate_left(1) } else { v }).to_le_bytes().into_iter().enumerate() {
                visit(s, b);
            }
        }),
        _ => unreachable!("streams are 1 or the element size (2 or 4)"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_histograms_count_what_the_layout_makes_of_the_sampled_elements() {
        use crate::{DType, Layout};
        let data: Vec<u8> = (0..40_000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
        for dtype in [DType::Bf16, DType::F16, DType::F32, DType::U8, DType::F8E4M3] {
            for layout in Layout::ALL {
                for stride in [1, 17, 64, 40_000, usize::MAX] {
                    let size = dtype.size();
                    let sample: Vec<u8> = data.chunks_exact(size).step_by(stride).flatten().copied().collect();
                    let want = stream_histograms(dtype, layout, &sample).unwrap();
                    assert_eq!(sampled_stream_histograms(dtype, layout, &data, stride).unwrap(), want, "{dtype}/{layout}/{stride}");
                }
            }
        }
        assert!(sampled_stream_histograms(DType::Bf16, Layout::Bytes, &[0; 3], 17).is_err());
    }

    #[test]
    fn fast_count_matches_simple_count() {
        let data: Vec<u8> = (0..100_003u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 % 7).collect();
        let mut simple = Histogram::new();
        simple.add_simple(&data);
        assert_eq!(Histogram::of(&data), simple);
        assert_eq!(simple.total(), 100_003);
        assert_eq!(simple.distinct(), 7);
    }

    #[test]
    fn merge_adds() {
        let mut a = Histogram::of(b"aab");
        a.merge(&Histogram::of(b"bc"));
        assert_eq!(a.counts[b'a' as usize], 2);
        assert_eq!(a.counts[b'b' as usize], 2);
        assert_eq!(a.counts[b'c' as usize], 1);
    }

    #[test]
    fn entropy_of_known_distributions() {
        assert_eq!(Histogram::of(&[7; 100]).entropy(), 0.0);
        assert!((Histogram::of(b"ab").entropy() - 1.0).abs() < 1e-12);
        let all: Vec<u8> = (0..=255).collect();
        assert!((Histogram::of(&all).entropy() - 8.0).abs() < 1e-12);
        assert_eq!(Histogram::new().entropy(), 0.0);
    }

    #[test]
    fn average_weighs_batches_equally_whatever_their_size() {
        let big = Histogram::of(&[0; 1000]).distribution().unwrap();
        let small = Histogram::of(&[1; 10]).distribution().unwrap();
        let avg = Distribution::average([&big, &small]).unwrap();
        assert!((avg.p[0] - 0.5).abs() < 1e-12 && (avg.p[1] - 0.5).abs() < 1e-12);
        assert!(Distribution::average(std::iter::empty()).is_none());
        let ema = Distribution::ema([&big, &small], 0.25).unwrap();
        assert!((ema.p[0] - 0.75).abs() < 1e-12 && (ema.p[1] - 0.25).abs() < 1e-12);
    }

    #[test]
    fn kl_is_zero_on_itself_and_positive_otherwise() {
        let p = Histogram::of(b"aaab").distribution().unwrap();
        let q = Histogram::of(b"abbb").distribution().unwrap();
        assert!(p.kl_divergence(&p).abs() < 1e-12);
        assert!(p.kl_divergence(&q) > 0.1);
        let r = Histogram::of(b"aaaa").distribution().unwrap();
        assert!(p.kl_divergence(&r).is_infinite());
        assert!((compressibility(6.0, 8.0) - 0.25).abs() < 1e-12);
    }
}
