//! Estimating a message's size under a codebook from a sample, and watching for drift (choosing a
//! family's members from a sample is [`crate::Family::choose`]).
//!
//! Both work from a strided sample of the message's symbols so that they stay cheap enough for the
//! send path: a stride of 17 reads 1/17 of the message. Use a stride coprime to the tensor's row
//! width (a prime such as 17): a stride that divides it samples the same columns of every row, and
//! activations have per-channel scales, so such a sample is biased (2% size error at stride 16 on
//! MiniLM FFN1 activations, 0.2% at 17).

use crate::codebook::Codebook;
use crate::family::Family;
use crate::layout::{self, MisalignedTensor};
use crate::stats::{Distribution, Histogram};

/// Histogram of every `stride`-th symbol of each stream of symbol-order data (see
/// [`layout::to_symbols`]), scaled back to the stream's full length by the caller.
fn sampled_histograms(book: &Codebook, symbols: &[u8], stride: usize) -> Vec<Histogram> {
    let k = book.streams().len();
    let per = symbols.len() / k;
    (0..k)
        .map(|s| {
            let mut h = Histogram::new();
            for &b in symbols[s * per..(s + 1) * per].iter().step_by(stride.max(1)) {
                h.counts[b as usize] += 1;
            }
            h
        })
        .collect()
}

/// Estimated coded size in bits of a message (tensor bytes `data`) under `book`, from every
/// `stride`-th symbol of each stream. `stride = 1` gives the exact size.
pub fn estimate_bits(book: &Codebook, data: &[u8], stride: usize) -> Result<f64, MisalignedTensor> {
    let mut symbols = vec![0u8; data.len()];
    layout::to_symbols(book.dtype(), book.layout(), data, &mut symbols)?;
    Ok(estimate_from_symbols(book, &symbols, stride))
}

fn estimate_from_symbols(book: &Codebook, symbols: &[u8], stride: usize) -> f64 {
    let hists = sampled_histograms(book, symbols, stride);
    let per = (symbols.len() / book.streams().len()) as f64;
    book.streams()
        .iter()
        .zip(&hists)
        .map(|(s, h)| {
            let n = h.total();
            if n == 0 {
                0.0
            } else {
                s.coded_bits(h) as f64 * per / n as f64
            }
        })
        .sum()
}

/// Result of one drift check.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DriftReport {
    /// Entropy of the message estimated from the sample (Miller–Madow corrected), bits per symbol
    /// (averaged over streams).
    pub entropy_bits: f64,
    /// Cost under the fixed codebook, bits per symbol (the cross-entropy against its code).
    pub coded_bits: f64,
    /// `coded_bits − entropy_bits`: what the fixed codebook costs beyond an ideal code for this
    /// message (an upper bound on what refreshing the codebook could save).
    pub excess_bits: f64,
    /// The excess in percentage points of compressibility (`excess_bits / 8 × 100`).
    pub excess_pp: f64,
    /// Whether the excess passed the monitor's threshold.
    pub flagged: bool,
}

/// Samples live messages and flags when the fixed codebook falls behind the data.
#[derive(Clone, Copy, Debug)]
pub struct DriftMonitor {
    /// Flag when the excess exceeds this many percentage points of compressibility.
    pub threshold_pp: f64,
    /// Read every `stride`-th symbol.
    pub stride: usize,
}

impl Default for DriftMonitor {
    fn default() -> Self {
        DriftMonitor { threshold_pp: 1.0, stride: 17 }
    }
}

impl DriftMonitor {
    /// Checks message `data` against `book`.
    pub fn check(&self, book: &Codebook, data: &[u8]) -> Result<DriftReport, MisalignedTensor> {
        let mut symbols = vec![0u8; data.len()];
        layout::to_symbols(book.dtype(), book.layout(), data, &mut symbols)?;
        let hists = sampled_histograms(book, &symbols, self.stride);
        Ok(self.report(book.streams().iter().map(|s| s.lengths()).zip(&hists)))
    }

    /// Checks symbol counts taken elsewhere (per stream: e.g. what a rank sent since its last
    /// check) against `family`, each stream under the member the encoder would pick for them.
    pub fn check_counts(&self, family: &Family, hists: &[Histogram]) -> DriftReport {
        let members = family.choose_from_histograms(hists);
        let codes = (0..family.members()[0].streams().len()).map(|s| family.members()[usize::from(members[s])].streams()[s].lengths());
        self.report(codes.zip(hists))
    }

    /// Entropy (Miller–Madow corrected) and coded length per symbol, averaged over the streams
    /// that have symbols.
    fn report<'a>(&self, streams: impl Iterator<Item = (&'a [u8; 256], &'a Histogram)>) -> DriftReport {
        let (mut entropy, mut coded, mut n) = (0.0, 0.0, 0.0);
        for (lengths, h) in streams {
            if let Some(d) = h.distribution() {
                // Miller–Madow: the plug-in entropy of a sample is biased low by about
                // (distinct − 1) / (2 N ln 2) bits; without the correction a sampled message would
                // show excess against its own codebook.
                let bias = (h.distinct() as f64 - 1.0) / (2.0 * h.total() as f64 * std::f64::consts::LN_2);
                entropy += d.entropy() + bias;
                coded += Distribution::expected_length(&d, lengths);
                n += 1.0;
            }
        }
        let (entropy_bits, coded_bits) = if n > 0.0 { (entropy / n, coded / n) } else { (0.0, 0.0) };
        let excess_bits = coded_bits - entropy_bits;
        let excess_pp = excess_bits / 8.0 * 100.0;
        DriftReport { entropy_bits, coded_bits, excess_bits, excess_pp, flagged: excess_pp > self.threshold_pp }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Layout};

    fn bf16(xs: impl Iterator<Item = f32>) -> Vec<u8> {
        xs.flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes()).collect()
    }

    fn gaussianish(scale: f32) -> Vec<u8> {
        // Deterministic heavy-centred values: sums of a few uniforms.
        let mut s = 12345u32;
        bf16((0..20_000).map(move |_| {
            let mut acc = 0.0f32;
            for _ in 0..4 {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                acc += (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            }
            acc * scale
        }))
    }

    fn train(data: &[u8]) -> Codebook {
        let h = crate::stats::stream_histograms(DType::Bf16, Layout::Exponent, data).unwrap();
        let d: Vec<_> = h.iter().map(|h| h.distribution().unwrap()).collect();
        Codebook::from_distributions(DType::Bf16, Layout::Exponent, &d, 12).unwrap()
    }

    #[test]
    fn exact_estimate_equals_coded_size() {
        let data = gaussianish(1.0);
        let book = train(&data);
        let h = crate::stats::stream_histograms(DType::Bf16, Layout::Exponent, &data).unwrap();
        let exact = book.coded_bits(&h) as f64;
        assert!((estimate_bits(&book, &data, 1).unwrap() - exact).abs() < 1e-6);
        let est = estimate_bits(&book, &data, 16).unwrap();
        assert!((est - exact).abs() / exact < 0.02, "{est} vs {exact}");
    }

    #[test]
    fn shifted_family_picks_the_matching_scale() {
        let book = std::sync::Arc::new(train(&gaussianish(1.0)));
        let fam = crate::Family::exponent_shift(book, &[-1, 1]);
        assert_eq!(fam.members().len(), 3);
        let e = Layout::Exponent.exponent_stream(DType::Bf16).unwrap().0;
        assert_eq!(
            fam.choose(&gaussianish(2.0), 8).unwrap()[e],
            2,
            "a tensor at twice the scale wants the +1 shift"
        );
        assert_eq!(
            fam.choose(&gaussianish(0.5), 8).unwrap()[e],
            1,
            "half the scale: the -1 shift"
        );
        assert_eq!(fam.choose(&gaussianish(1.0), 8).unwrap()[e], 0);
    }

    #[test]
    fn drift_monitor_flags_a_scale_change() {
        let book = train(&gaussianish(1.0));
        let m = DriftMonitor { threshold_pp: 1.0, stride: 4 };
        // Another draw from the same distribution: only the Huffman code's own redundancy remains.
        let same = m.check(&book, &gaussianish(1.0)[1000..]).unwrap();
        assert!(!same.flagged && same.excess_pp < 1.0, "{same:?}");
        let moved = m.check(&book, &gaussianish(16.0)).unwrap();
        assert!(moved.flagged, "{moved:?}");
    }
}
