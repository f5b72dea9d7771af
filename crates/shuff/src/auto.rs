//! Classes and codebooks for data that comes without a codebook set: the policy of `shuff
//! compress` (and of `shuff.save_file` without a book), kept here once so that the CLI and Python
//! make the same classes and codes from the same file.
//!
//! - A tensor's class is its name with the layer numbers taken out (`encoder.layer.3.attn.q.weight`
//!   → `bf16:encoder.layer.#.attn.q.weight`), so one codebook serves every layer of a kind, as in
//!   the paper ([`auto_class`]).
//! - Classes smaller than [`SMALL_CLASS_BYTES`] fold into one class per dtype ([`plan_classes`]).
//! - Each class gets the layout whose code is smallest on a sample of its data ([`LayoutChooser`]:
//!   every 8th 64 KiB block of each tensor, in every layout); the code is then built from all of its
//!   data in that layout ([`build_codebook`]).
//!
//! Everything here takes data a piece at a time, so a caller can stream a file of any size through
//! it with bounded memory.

use crate::codebook::{Codebook, CodebookError};
use crate::family::Family;
use crate::members::{train_family, FamilyOptions, Message};
use crate::train::Rule;
use crate::set::Provenance;
use crate::stats::{stream_histograms, Histogram};
use crate::{DType, Layout};
use std::collections::BTreeMap;

/// Classes whose tensors total fewer bytes than this share one class per dtype: a codebook of
/// their own would not pay for itself (and tiny tensors such as biases and norms say little about a
/// distribution).
pub const SMALL_CLASS_BYTES: u64 = 256 << 10;

/// Of each tensor, every `LAYOUT_SAMPLE_STRIDE`-th block of [`sample_block_bytes`] (at least;
/// see [`sample_stride`]) is sampled to choose the layout (from the first block on, so every
/// tensor is seen). Layouts differ by whole percent, so a 1/8 sample never picks a worse one by
/// more than noise.
pub const LAYOUT_SAMPLE_STRIDE: u64 = 8;

/// Classes larger than this are sampled more sparsely, so that their sample stays about this size:
/// counting every layout of the sample was a quarter of compression time on a 3 GB checkpoint,
/// and 32 MiB of symbols pin a code down as well as 400 MiB do.
pub const LAYOUT_SAMPLE_BYTES: u64 = 32 << 20;

/// The block stride for sampling a class of `class_bytes`.
pub fn sample_stride(class_bytes: u64) -> u64 {
    LAYOUT_SAMPLE_STRIDE.max(class_bytes / LAYOUT_SAMPLE_BYTES)
}

/// A class whose layout sample holds at least this many bytes gets its code from the sample, not
/// from a second pass over all of its data: at this size the sampled distribution's code is the
/// full data's to within noise (measured on a 3 GB bf16 checkpoint: 1.5004 vs 1.5005 ratio), and
/// the pass cost a third of compression time.
pub const SAMPLE_TRAINS_FROM_BYTES: u64 = 8 << 20;

/// Bytes of one sampled block for `dtype`: 64 KiB rounded down to whole elements.
pub fn sample_block_bytes(dtype: DType) -> u64 {
    ((64 << 10) / dtype.size() * dtype.size()) as u64
}

/// The class of a tensor when no codebook set is given: its dtype and its name with every run of
/// digits replaced by `#`.
pub fn auto_class(name: &str, dtype: DType) -> String {
    let mut class = format!("{dtype}:");
    let mut in_digits = false;
    for c in name.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                class.push('#');
            }
            in_digits = true;
        } else {
            class.push(c);
            in_digits = false;
        }
    }
    class
}

/// The class of every tensor (`None` for dtypes shuff does not code), given `(name, dtype, bytes)`
/// per tensor: [`auto_class`], then classes under [`SMALL_CLASS_BYTES`] folded into
/// `DTYPE:small`.
pub fn plan_classes(tensors: &[(&str, Option<DType>, u64)]) -> Vec<Option<String>> {
    let mut bytes: BTreeMap<String, u64> = BTreeMap::new();
    let named: Vec<Option<String>> = tensors
        .iter()
        .map(|&(name, dtype, len)| {
            let class = auto_class(name, dtype?);
            *bytes.entry(class.clone()).or_default() += len;
            Some(class)
        })
        .collect();
    named
        .into_iter()
        .zip(tensors)
        .map(|(class, &(_, dtype, _))| {
            let class = class?;
            Some(if bytes[&class] < SMALL_CLASS_BYTES { format!("{}:small", dtype.expect("classed tensors have a dtype")) } else { class })
        })
        .collect()
}

/// Chooses a class's layout from sampled blocks: per layout, the per-stream histograms of the
/// sample, then the layout whose own code is smallest on them. The sample is also kept per
/// message (each tensor: [`LayoutChooser::end_message`]), to train the class's family.
#[derive(Clone, Debug)]
pub struct LayoutChooser {
    dtype: DType,
    hists: Vec<(Layout, Vec<Histogram>)>,
    /// Per finished message, per layout (in `hists`' order), per stream.
    messages: Vec<Vec<Vec<Histogram>>>,
    /// The message being sampled.
    current: Vec<Vec<Histogram>>,
}

impl LayoutChooser {
    /// An empty sample of `dtype` data.
    pub fn new(dtype: DType) -> Self {
        let hists: Vec<(Layout, Vec<Histogram>)> = Layout::ALL.iter().map(|&l| (l, vec![Histogram::new(); l.stream_count(dtype)])).collect();
        let current = hists.iter().map(|(_, h)| h.clone()).collect();
        LayoutChooser { dtype, hists, messages: Vec::new(), current }
    }

    /// Ends the message (tensor) whose blocks were added since the last call.
    pub fn end_message(&mut self) {
        if self.current.iter().any(|l| l.iter().any(|h| h.total() > 0)) {
            let empty = self.current.iter().map(|l| vec![Histogram::new(); l.len()]).collect();
            self.messages.push(std::mem::replace(&mut self.current, empty));
        }
    }

    /// The sample in `layout`: its per-stream histograms, and the same per message.
    pub fn into_sample(self, layout: Layout) -> (Vec<Histogram>, Vec<Vec<Histogram>>) {
        let i = self.hists.iter().position(|(l, _)| *l == layout).expect("every layout is sampled");
        let messages = self.messages.into_iter().map(|mut m| m.swap_remove(i)).collect();
        (self.hists.into_iter().nth(i).expect("every layout is sampled").1, messages)
    }

    /// Bytes sampled so far.
    pub fn sampled_bytes(&self) -> u64 {
        // Every layout turns each byte into one symbol of one stream.
        self.hists.first().map_or(0, |(_, h)| h.iter().map(Histogram::total).sum())
    }

    /// Adds one sampled block (whole elements).
    pub fn add(&mut self, block: &[u8]) -> Result<(), crate::layout::MisalignedTensor> {
        // The `bytes` stream holds every byte of the `planes` streams: its histogram is theirs
        // summed, so the block is counted twice (planes, exponent), not three times.
        let planes = stream_histograms(self.dtype, Layout::Planes, block)?;
        for ((layout, acc), cur) in self.hists.iter_mut().zip(&mut self.current) {
            let owned;
            let hists: &[Histogram] = match layout {
                Layout::Planes => &planes,
                Layout::Bytes => {
                    let mut all = Histogram::new();
                    planes.iter().for_each(|h| all.merge(h));
                    owned = vec![all];
                    &owned
                }
                Layout::Exponent => {
                    owned = stream_histograms(self.dtype, Layout::Exponent, block)?;
                    &owned
                }
            };
            for ((a, c), h) in acc.iter_mut().zip(cur.iter_mut()).zip(hists) {
                a.merge(h);
                c.merge(h);
            }
        }
        Ok(())
    }

    /// The layout that codes the sample in the fewest bits (`None` for an empty sample).
    pub fn choose(&self) -> Option<Layout> {
        let mut best: Option<(u64, Layout)> = None;
        for (layout, hists) in &self.hists {
            let Ok(book) = build_codebook(self.dtype, *layout, hists) else { continue };
            let bits = coded_bits(&book, hists);
            if best.is_none_or(|(b, _)| bits < b) {
                best = Some((bits, *layout));
            }
        }
        best.map(|(_, l)| l)
    }
}

/// Bits `book` codes `hists` in, a stream that does not shrink being stored raw (as the encoder
/// does).
pub fn coded_bits(book: &Codebook, hists: &[Histogram]) -> u64 {
    book.streams().iter().zip(hists).map(|(s, h)| s.coded_bits(h).min(8 * h.total())).sum()
}

/// The codebook of `hists` (one per stream of `layout`) with the layout's default maximum code
/// length.
pub fn build_codebook(dtype: DType, layout: Layout, hists: &[Histogram]) -> Result<Codebook, CodebookError> {
    let dists: Option<Vec<_>> = hists.iter().map(Histogram::distribution).collect();
    let dists = dists.ok_or_else(|| CodebookError::Malformed("no data to train on".into()))?;
    Codebook::from_distributions(dtype, layout, &dists, layout.default_max_len())
}

/// A member of a file's own family must save at least this many percentage points of the held-out
/// messages' size: every member costs the encoder a choice per piece (on a 3 GB bf16 checkpoint,
/// members that saved 0.03% made compression 1.3× slower), and a file's own classes already fit it.
pub const FAMILY_MIN_GAIN_PP: f64 = 0.1;

/// The family of a class trained on the file it compresses: the class code of `hists` (as
/// [`build_codebook`]) and the members that pay on held-out `messages` (per tensor or piece:
/// [`crate::members`], each saving at least [`FAMILY_MIN_GAIN_PP`]), with its provenance.
pub fn build_family(dtype: DType, layout: Layout, hists: &[Histogram], messages: Vec<Vec<Histogram>>, created_by: &str) -> Result<(Family, Provenance), CodebookError> {
    let book = build_codebook(dtype, layout, hists)?;
    let mut prov = provenance(&book, hists, created_by);
    let messages: Vec<Message> = messages.into_iter().map(|hists| Message { batch: 0, hists }).collect();
    let opts = FamilyOptions { min_gain_pp: FAMILY_MIN_GAIN_PP, ..FamilyOptions::default() };
    let (family, labels) = train_family(book, &messages, Rule::Average, layout.default_max_len(), &opts)?;
    prov.members = labels;
    Ok((family, prov))
}

/// Provenance of a codebook trained on the file it compresses.
pub fn provenance(book: &Codebook, hists: &[Histogram], created_by: &str) -> Provenance {
    Provenance {
        batches: 1,
        symbols: hists.iter().map(Histogram::total).sum(),
        rule: "per-file".into(),
        max_len: book.max_len(),
        created_by: created_by.into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample's histograms in every layout are those of the layout's own streams (the
    /// `bytes` one is summed from the planes', not counted).
    #[test]
    fn the_sample_counts_each_layout_exactly() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        for dtype in [DType::Bf16, DType::F16, DType::F32, DType::U8] {
            for layout in Layout::ALL {
                let mut chooser = LayoutChooser::new(dtype);
                chooser.add(&data[..2048]).unwrap();
                chooser.add(&data[2048..]).unwrap();
                chooser.end_message();
                let (hists, messages) = chooser.into_sample(layout);
                let expected = stream_histograms(dtype, layout, &data).unwrap();
                let counts = |h: &[Histogram]| h.iter().map(|h| h.counts).collect::<Vec<_>>();
                assert_eq!(counts(&hists), counts(&expected), "{dtype} {layout}");
                assert_eq!(counts(&messages[0]), counts(&expected), "{dtype} {layout}: the message's own");
            }
        }
    }

    #[test]
    fn classes_take_layer_numbers_out_and_fold_small_ones() {
        assert_eq!(auto_class("encoder.layer.13.attn.q.weight", DType::Bf16), "bf16:encoder.layer.#.attn.q.weight");
        let big = SMALL_CLASS_BYTES;
        let plan = plan_classes(&[
            ("l.0.w", Some(DType::Bf16), big / 2),
            ("l.1.w", Some(DType::Bf16), big / 2),
            ("l.0.b", Some(DType::Bf16), 10),
            ("l.0.n", Some(DType::F32), 10),
            ("ids", None, big),
        ]);
        assert_eq!(plan[0].as_deref(), Some("bf16:l.#.w"));
        assert_eq!(plan[1].as_deref(), Some("bf16:l.#.w"));
        assert_eq!(plan[2].as_deref(), Some("bf16:small"));
        assert_eq!(plan[3].as_deref(), Some("f32:small"));
        assert_eq!(plan[4], None);
    }

    #[test]
    fn the_chooser_picks_the_exponent_layout_for_float_like_data() {
        // bf16 values with a narrow exponent and noisy mantissa: the exponent layout separates
        // the two, bytes cannot.
        let mut x = 1u32;
        let data: Vec<u8> = (0..40_000)
            .flat_map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let exp = 120 + (x >> 28) % 4;
                let v = ((exp << 7) | ((x >> 8) & 0x7f)) as u16;
                v.to_le_bytes()
            })
            .collect();
        let mut c = LayoutChooser::new(DType::Bf16);
        c.add(&data).unwrap();
        assert_eq!(c.sampled_bytes(), data.len() as u64);
        assert_eq!(c.choose(), Some(Layout::Exponent));
        assert_eq!(LayoutChooser::new(DType::Bf16).choose(), None);
    }
}
