//! The numbers every report is made of: for a message, its size under the Shannon bound, under its
//! own (three-stage) Huffman code with and without the cost of sending that code, and under a fixed
//! codebook. `shuff eval`, `shuff analyze` and Python's `shuff.measure` all use this, so their
//! numbers agree exactly.

use crate::set::Provenance;
use crate::stats::{compressibility, stream_histograms};
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
    /// Payload under the fixed codebook.
    pub fixed_bits: u64,
    /// What the encoder stores (frames with their headers and lane sizes, raw where coding does
    /// not pay, container segment headers), where the caller measured it (`shuff eval`); else 0.
    pub stored_bits: u64,
    /// With `--shift-family`: payload under the best of the codebook shifted by −1/0/+1 exponent
    /// steps, chosen per message from a 1/17 sample, plus 2 bits per message to name the choice.
    pub shift_family_bits: u64,
    /// With `--shift-family`: Σ |estimated − exact| bits of the chosen candidate's size.
    pub estimate_error_bits: f64,
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
    /// Under the fixed codebook.
    pub fixed: f64,
    /// As stored by the encoder (0 when not measured).
    pub stored: f64,
    /// `fixed − huffman`, percentage points (negative: the fixed codebook is worse).
    pub fixed_vs_huffman_pp: f64,
    /// `fixed − shannon`, percentage points.
    pub fixed_vs_shannon_pp: f64,
    /// Compressibility under the shift family (0 when not measured).
    pub shift_family: f64,
    /// Relative error of the sampled size estimates, percent of exact size.
    pub estimate_error: f64,
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
        self.stored_bits += o.stored_bits;
        self.shift_family_bits += o.shift_family_bits;
        self.estimate_error_bits += o.estimate_error_bits;
    }

    /// As compressibility percentages.
    pub fn percent(&self) -> Percent {
        let o = self.original_bits as f64;
        let pct = |bits: f64| 100.0 * compressibility(bits, o);
        let (shannon, huffman, fixed) = (pct(self.shannon_bits), pct(self.huffman_bits as f64), pct(self.fixed_bits as f64));
        Percent {
            shannon,
            huffman,
            huffman_with_code: pct((self.huffman_bits + self.huffman_code_bits) as f64),
            fixed,
            stored: if self.stored_bits > 0 { pct(self.stored_bits as f64) } else { 0.0 },
            fixed_vs_huffman_pp: fixed - huffman,
            fixed_vs_shannon_pp: fixed - shannon,
            shift_family: if self.shift_family_bits > 0 { pct(self.shift_family_bits as f64) } else { 0.0 },
            estimate_error: if self.shift_family_bits > 0 {
                100.0 * self.estimate_error_bits / self.shift_family_bits as f64
            } else {
                0.0
            },
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

/// Stride of the sample that picks a candidate codebook (1/17 of the symbols). A prime: tensor
/// rows are multiples of 16 or 64 wide, and a stride dividing the row width samples the same few
/// columns of every row — which, with per-channel scales, biased the estimate by 2% at stride 16.
pub const SELECT_STRIDE: usize = 17;

/// Measures tensor bytes `data` against `book` (its dtype and layout), with per-message Huffman
/// codes of at most `max_len` bits, and optionally against a family of candidate codebooks.
pub fn measure(book: &Codebook, data: &[u8], max_len: u32, family: Option<&[Codebook]>) -> Result<Sizes, MeasureError> {
    let hists = stream_histograms(book.dtype(), book.layout(), data)?;
    let three = three_stage(&hists, max_len)?;
    let (mut shift_family_bits, mut estimate_error_bits) = (0, 0.0);
    if let Some(family) = family.filter(|f| !f.is_empty()) {
        let refs: Vec<&Codebook> = family.iter().collect();
        let (i, estimate) = crate::select::choose(&refs, data, SELECT_STRIDE)?.expect("non-empty family");
        let exact = family[i].coded_bits(&hists);
        shift_family_bits = exact + 2;
        estimate_error_bits = (estimate - exact as f64).abs();
    }
    Ok(Sizes {
        messages: 1,
        elements: (data.len() / book.dtype().size()) as u64,
        original_bits: 8 * data.len() as u64,
        shannon_bits: shannon_bits(&hists),
        huffman_bits: three.payload_bits,
        huffman_code_bits: 8 * three.code_bytes,
        fixed_bits: book.coded_bits(&hists),
        stored_bits: 0,
        shift_family_bits,
        estimate_error_bits,
    })
}
