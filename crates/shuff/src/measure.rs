//! The numbers every report is made of: for a message, its size under the Shannon bound, under its
//! own (three-stage) Huffman code with and without the cost of sending that code, and under a fixed
//! codebook. `shuff eval`, `shuff analyze` and Python's `shuff.measure` all use this, so their
//! numbers agree exactly.

use crate::family::Family;
use crate::set::Provenance;
use crate::stats::{compressibility, stream_histograms, Histogram};
use crate::train::{shannon_bits, three_stage};
use crate::Codebook;
use serde::Serialize;

/// Sizes in bits of one message (or a sum of messages).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Sizes {
    /// Messages summed.
    pub messages: u64,
    /// Tensor elements.
    pub elements: u64,
    /// Uncompressed size.
    pub original_bits: u64,
    /// Σ entropy × count over streams.
    pub shannon_bits: f64,
    /// Each message's own optimal code (same max length as the codebook), payload only.
    pub huffman_bits: u64,
    /// Bits spent sending those codes.
    pub huffman_code_bits: u64,
    /// Payload under the fixed codebook family, each stream by the member the encoder picks for
    /// each piece — what the encoder's frames carry as payload.
    pub fixed_bits: u64,
    /// Payload under the class code alone (member 0): what the family's other members save.
    pub class_code_bits: u64,
    /// What the encoder stores (frames with their headers and lane sizes, raw where coding does
    /// not pay, container segment headers), where the caller measured it (`shuff eval`); else 0.
    pub stored_bits: u64,
}

/// Compressibility percentages (`100 × (1 − coded/original)`) of [`Sizes`].
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Percent {
    /// Under the Shannon bound.
    pub shannon: f64,
    /// Under each message's own Huffman code, payload only.
    pub huffman: f64,
    /// The same with the cost of sending the code.
    pub huffman_with_code: f64,
    /// Under the fixed codebook family (selection included).
    pub fixed: f64,
    /// Under the class code alone.
    pub class_code: f64,
    /// As stored by the encoder (0 when not measured).
    pub stored: f64,
    /// `fixed − huffman`, percentage points (negative: the fixed codebook is worse).
    pub fixed_vs_huffman_pp: f64,
    /// `fixed − shannon`, percentage points.
    pub fixed_vs_shannon_pp: f64,
    /// `fixed − class_code`, percentage points: the gain from the family's other members.
    pub family_gain_pp: f64,
}

impl Sizes {
    /// Adds another message's (or sum's) sizes.
    pub fn add(&mut self, o: &Sizes) {
        self.messages += o.messages;
        self.elements += o.elements;
        self.original_bits += o.original_bits;
        self.shannon_bits += o.shannon_bits;
        self.huffman_bits += o.huffman_bits;
        self.huffman_code_bits += o.huffman_code_bits;
        self.fixed_bits += o.fixed_bits;
        self.class_code_bits += o.class_code_bits;
        self.stored_bits += o.stored_bits;
    }

    /// As compressibility percentages.
    pub fn percent(&self) -> Percent {
        let o = self.original_bits as f64;
        let pct = |bits: f64| 100.0 * compressibility(bits, o);
        let (shannon, huffman, fixed) = (
            pct(self.shannon_bits),
            pct(self.huffman_bits as f64),
            pct(self.fixed_bits as f64),
        );
        let class_code = pct(self.class_code_bits as f64);
        Percent {
            shannon,
            huffman,
            huffman_with_code: pct((self.huffman_bits + self.huffman_code_bits) as f64),
            fixed,
            class_code,
            stored: if self.stored_bits > 0 {
                pct(self.stored_bits as f64)
            } else {
                0.0
            },
            fixed_vs_huffman_pp: fixed - huffman,
            fixed_vs_shannon_pp: fixed - shannon,
            family_gain_pp: fixed - class_code,
        }
    }
}

/// Why a message could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// Its bytes are not whole elements.
    #[error(transparent)]
    Misaligned(#[from] crate::layout::MisalignedTensor),
    /// The per-message reference code could not be built.
    #[error(transparent)]
    Code(#[from] crate::huffman::CodeError),
}

/// The maximum code length of the per-message Huffman reference a fixed codebook is compared
/// with: the one it was trained with (from its provenance), else its layout's default — and never
/// shorter than the codebook's own longest code.
pub fn reference_max_len(book: &Codebook, provenance: Option<&Provenance>) -> u32 {
    let trained = provenance.map_or(0, |p| p.max_len);
    let base = if trained > 0 { trained } else { book.layout().default_max_len() };
    base.max(book.max_len())
}

/// Strides of the sample from which the encoder picks a family's members, sparsest first:
/// [`select_stride`] takes the first that still samples [`SELECT_MIN_SAMPLE`] elements.
///
/// Primes: tensor rows are multiples of 16 or 64 wide (times 3, 5 or 7 at most), and a stride
/// dividing the row width samples the same few columns of every row — which, with per-channel
/// scales, biased the estimate by 2% at stride 16.
pub const SELECT_STRIDES: [usize; 5] = [61, 31, 17, 13, 11];

/// The fewest elements the member choice samples where the message has them (at the densest
/// stride, 11, a smaller message gives fewer).
///
/// The sample's size trades the choice's cost against its aim, and the aim depends on the number
/// of elements sampled, not on the fraction. Measured on held-out steps of three captures (6
/// classes, both layouts), against a 1/17 sample: messages of 64 KiB at 1/61 (537 bf16
/// elements) code 0.018–0.022 pp larger, of 16 KiB at 1/61 (134) 0.05–0.06 pp, of 8 KiB (67)
/// 0.07–0.09 pp; whole tensors at 1/61 ≤ 0.01 pp in total. Choosing among 9 members costs ~1.2
/// ns a sampled bf16 element (`bytes`, one core): 0.7 µs per 64 KiB instead of 2.3 at 1/17,
/// encode with the choice 1.99–2.00 GB/s instead of 1.87 (class code alone 2.03–2.05).
pub const SELECT_MIN_SAMPLE: usize = 512;

/// The most elements the member choice samples: large messages are sampled more sparsely, at the
/// first prime stride that keeps the sample at about this size. Past a few thousand elements the
/// choice no longer changes measurably, while in a message larger than the caches every sampled
/// element is a miss: at 1/61, choosing for 16 MiB of bf16 (137,000 elements) took 2.1 ms, 12% of
/// encoding it, and 4 MiB 119 µs where 1 MiB took 11.
pub const SELECT_MAX_SAMPLE: usize = 16_384;

/// The stride of the member choice's sample for a message of `elements` elements: the sparsest of
/// [`SELECT_STRIDES`] that samples at least [`SELECT_MIN_SAMPLE`] of them, else the densest; for
/// messages that 1/61 would sample more than [`SELECT_MAX_SAMPLE`] of, the smallest prime that
/// samples at most that many. The encoder, `eval` and the GPU coder all sample with it, so that
/// they pick the same members.
pub fn select_stride(elements: usize) -> usize {
    let densest = SELECT_STRIDES[SELECT_STRIDES.len() - 1];
    if elements / SELECT_STRIDES[0] > SELECT_MAX_SAMPLE {
        let is_prime = |p: usize| (2..).take_while(|d| d * d <= p).all(|d| p % d != 0);
        return (elements / SELECT_MAX_SAMPLE..).find(|&p| is_prime(p) && elements / p <= SELECT_MAX_SAMPLE).expect("primes never end");
    }
    SELECT_STRIDES.iter().copied().find(|&p| elements / p >= SELECT_MIN_SAMPLE).unwrap_or(densest)
}

/// Measures tensor bytes `data` (one message) against the codebook `family` (its dtype and
/// layout), with per-message Huffman codes of at most `max_len` bits. The encoder codes a message
/// in pieces of at most `piece_bytes` (a container's segments; `usize::MAX` for one frame) and picks
/// each piece's members from a sample ([`Family::choose`]); `fixed_bits` makes the same choice.
pub fn measure(
    family: &Family,
    data: &[u8],
    max_len: u32,
    piece_bytes: usize,
) -> Result<Sizes, MeasureError> {
    let book = &family.members()[0];
    let hists = stream_histograms(book.dtype(), book.layout(), data)?;
    let three = three_stage(&hists, max_len)?;
    let fixed_bits = if family.members().len() == 1 {
        book.coded_bits(&hists)
    } else {
        let piece = (piece_bytes.max(1) / book.dtype().size()).max(1) * book.dtype().size();
        let chosen_bits = |p: &[u8], hists: &[Histogram]| -> Result<u64, MeasureError> {
            let chosen = family.encoder_choice(p)?;
            Ok(hists.iter().enumerate().map(|(s, h)| family.members()[usize::from(chosen[s])].streams()[s].coded_bits(h)).sum())
        };
        if data.len() <= piece {
            chosen_bits(data, &hists)?
        } else {
            let mut bits = 0;
            for p in data.chunks(piece) {
                bits += chosen_bits(p, &stream_histograms(book.dtype(), book.layout(), p)?)?;
            }
            bits
        }
    };
    Ok(Sizes {
        messages: 1,
        elements: (data.len() / book.dtype().size()) as u64,
        original_bits: 8 * data.len() as u64,
        shannon_bits: shannon_bits(&hists),
        huffman_bits: three.payload_bits,
        huffman_code_bits: 8 * three.code_bytes,
        fixed_bits,
        class_code_bits: book.coded_bits(&hists),
        stored_bits: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The member choice samples at least `SELECT_MIN_SAMPLE` elements where the message has
    /// them, never more than it must, with a prime stride that does not shrink as messages grow.
    #[test]
    fn the_choice_samples_enough_elements_and_no_more() {
        let mut last = 0;
        for elements in (0..200_000).step_by(97).chain((900_000..3_000_000).step_by(9_973)).chain([1 << 30, usize::MAX]) {
            let p = select_stride(elements);
            assert!((2..).take_while(|d| d * d <= p).all(|d| p % d != 0), "{p} is not prime");
            assert!(p >= last, "stride {p} after {last} for a larger message");
            last = p;
            if elements >= SELECT_MIN_SAMPLE * 11 {
                assert!(elements / p >= SELECT_MIN_SAMPLE, "{elements} elements, stride {p}");
            }
            if p < SELECT_STRIDES[0] {
                let sparser = SELECT_STRIDES[SELECT_STRIDES.iter().position(|&q| q == p).unwrap() - 1];
                assert!(elements / sparser < SELECT_MIN_SAMPLE, "{elements} elements: {sparser} would do");
            }
            assert!(elements / p <= SELECT_MAX_SAMPLE, "{elements} elements, stride {p}: too many");
        }
        // 64 KiB of bf16 is sampled 1/61; 16 KiB 1/13; 16 MiB 1/521, 16,100 elements.
        assert_eq!((select_stride(32_768), select_stride(8_192), select_stride(8 << 20)), (61, 13, 521));
    }
}
