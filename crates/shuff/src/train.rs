//! Training codebooks from earlier batches, and the three-stage reference they are measured against.

use crate::codebook::{Codebook, CodebookError};
use crate::family::Family;
use crate::huffman;
use crate::layout::MisalignedTensor;
use crate::members::{train_family, FamilyOptions, Message};
use crate::set::{CodebookSet, Provenance};
use crate::stats::{stream_histograms, Distribution, Histogram};
use crate::{DType, Layout};
use std::collections::BTreeMap;

/// How per-batch distributions are combined into the one a codebook is built for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// The paper's rule: the plain average of per-batch normalized distributions.
    Average,
    /// Exponential moving average with weight `α` on each newer batch.
    Ema(f64),
}

impl Rule {
    /// Combines per-batch distributions (in batch order) by this rule; `None` for no batches.
    pub fn combine(self, per_batch: &[Distribution]) -> Option<Distribution> {
        match self {
            Rule::Average => Distribution::average(per_batch),
            Rule::Ema(a) => Distribution::ema(per_batch, a),
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::Average => f.write_str("average"),
            Rule::Ema(a) => write!(f, "ema({a})"),
        }
    }
}

/// What went wrong while training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor's bytes are not whole elements.
    #[error("class `{class}`: {source}")]
    Misaligned {
        /// Class.
        class: String,
        /// Cause.
        source: MisalignedTensor,
    },
    /// A class was fed two dtypes or layouts.
    #[error("class `{class}` was started as {first_dtype}/{first_layout} but got a {dtype}/{layout} tensor; a class has one dtype and layout")]
    Mixed {
        /// Class.
        class: String,
        /// The first dtype seen.
        first_dtype: DType,
        /// The first layout seen.
        first_layout: Layout,
        /// The new dtype.
        dtype: DType,
        /// The new layout.
        layout: Layout,
    },
    /// A class saw no data at all.
    #[error("class `{0}` has no training data")]
    Empty(String),
    /// Code construction failed.
    #[error(transparent)]
    Codebook(#[from] CodebookError),
}

#[derive(Clone, Debug)]
struct ClassStats {
    dtype: DType,
    layout: Layout,
    /// Per batch (in batch order), per stream.
    batches: BTreeMap<u64, Vec<Histogram>>,
    /// Every message added (one per [`Trainer::add`]), for training the family's members.
    messages: Vec<Message>,
    sources: Vec<String>,
}

/// Accumulates per-batch histograms per class, then builds one codebook per class from the
/// combination (by default the average) of the per-batch normalized distributions, and the
/// class's family: further members where they pay on held-out messages ([`crate::members`]).
#[derive(Clone, Debug)]
pub struct Trainer {
    max_len: u32,
    rule: Rule,
    family: FamilyOptions,
    classes: BTreeMap<String, ClassStats>,
}

impl Trainer {
    /// A trainer for codes of at most `max_len` bits, using the paper's average rule; 0: each
    /// class's layout default ([`Layout::default_max_len`]: 12 for bytes, 16 for planes and
    /// exponent), the default of `shuff train` and of Python's `shuff.Trainer`. Families are
    /// trained with [`FamilyOptions::default`].
    pub fn new(max_len: u32) -> Self {
        Trainer {
            max_len,
            rule: Rule::Average,
            family: FamilyOptions::default(),
            classes: BTreeMap::new(),
        }
    }

    /// Trains families with `options` ([`FamilyOptions::none`]: the class code alone).
    pub fn with_family(mut self, options: FamilyOptions) -> Self {
        self.family = options;
        self
    }

    /// The same trainer building codes of at most `max_len` bits.
    pub fn with_max_len(mut self, max_len: u32) -> Self {
        self.max_len = max_len;
        self
    }

    /// Uses `rule` to combine batches.
    pub fn with_rule(mut self, rule: Rule) -> Self {
        self.rule = rule;
        self
    }

    /// Adds one tensor of class `class` to batch `batch` (tensors of one batch are counted together;
    /// batches are then weighed equally). `source` names where it came from, for the provenance.
    pub fn add(
        &mut self,
        class: &str,
        dtype: DType,
        layout: Layout,
        batch: u64,
        data: &[u8],
        source: &str,
    ) -> Result<(), TrainError> {
        let hists = stream_histograms(dtype, layout, data)
            .map_err(|source| TrainError::Misaligned { class: class.into(), source })?;
        self.add_histograms(class, dtype, layout, batch, &hists, source)
    }

    /// Like [`Trainer::add`], from histograms already counted (e.g. by a framework hook).
    pub fn add_histograms(
        &mut self,
        class: &str,
        dtype: DType,
        layout: Layout,
        batch: u64,
        hists: &[Histogram],
        source: &str,
    ) -> Result<(), TrainError> {
        let c = self
            .classes
            .entry(class.to_string())
            .or_insert_with(|| ClassStats {
                dtype,
                layout,
                batches: BTreeMap::new(),
                messages: Vec::new(),
                sources: Vec::new(),
            });
        if (c.dtype, c.layout) != (dtype, layout) || hists.len() != layout.stream_count(dtype) {
            return Err(TrainError::Mixed {
                class: class.into(),
                first_dtype: c.dtype,
                first_layout: c.layout,
                dtype,
                layout,
            });
        }
        let acc = c.batches.entry(batch).or_insert_with(|| vec![Histogram::new(); hists.len()]);
        for (a, h) in acc.iter_mut().zip(hists) {
            a.merge(h);
        }
        if !self.family.is_none() {
            c.messages.push(Message {
                batch,
                hists: hists.to_vec(),
            });
        }
        if !source.is_empty() && !c.sources.iter().any(|s| s == source) {
            c.sources.push(source.to_string());
        }
        Ok(())
    }

    /// Class names seen so far.
    pub fn class_names(&self) -> impl Iterator<Item = &str> {
        self.classes.keys().map(String::as_str)
    }

    /// The combined training distribution of each stream of `class`.
    pub fn distributions(&self, class: &str) -> Result<Vec<Distribution>, TrainError> {
        let c = self.classes.get(class).ok_or_else(|| TrainError::Empty(class.into()))?;
        let streams = c.layout.stream_count(c.dtype);
        (0..streams)
            .map(|k| {
                let per_batch: Vec<Distribution> = c.batches.values().filter_map(|b| b[k].distribution()).collect();
                self.rule.combine(&per_batch).ok_or_else(|| TrainError::Empty(class.into()))
            })
            .collect()
    }

    /// Builds the codebook of one class (member 0 of its family), with its provenance.
    pub fn build_class(&self, class: &str) -> Result<(Codebook, Provenance), TrainError> {
        let c = self.classes.get(class).ok_or_else(|| TrainError::Empty(class.into()))?;
        let dists = self.distributions(class)?;
        let max_len = self.max_len_for(c.layout);
        let book = Codebook::from_distributions(c.dtype, c.layout, &dists, max_len)?;
        let provenance = Provenance {
            trained_on: c.sources.clone(),
            batches: c.batches.len(),
            symbols: c.batches.values().flatten().map(Histogram::total).sum(),
            rule: self.rule.to_string(),
            max_len,
            training_entropy_bits: dists.iter().map(Distribution::entropy).collect(),
            expected_code_len_bits: dists.iter().zip(book.streams()).map(|(d, s)| d.expected_length(s.lengths())).collect(),
            created_by: concat!("shuff ", env!("CARGO_PKG_VERSION")).into(),
            selector: String::new(),
            order: 0,
            members: Vec::new(),
        };
        Ok((book, provenance))
    }

    fn max_len_for(&self, layout: Layout) -> u32 {
        if self.max_len == 0 {
            layout.default_max_len()
        } else {
            self.max_len
        }
    }

    /// Builds the family of one class: its codebook as member 0, then the members that pay on
    /// held-out messages ([`crate::members`]); the provenance names what made each member.
    pub fn build_family(&self, class: &str) -> Result<(Family, Provenance), TrainError> {
        let (book, mut provenance) = self.build_class(class)?;
        let c = &self.classes[class];
        let (family, labels) = train_family(book, &c.messages, self.rule, self.max_len_for(c.layout), &self.family)?;
        provenance.members = labels;
        Ok((family, provenance))
    }

    /// Builds every class's family into a set named `name`.
    pub fn build(&self, name: &str) -> Result<CodebookSet, TrainError> {
        let mut set = CodebookSet::new(name);
        for class in self.classes.keys() {
            let (family, provenance) = self.build_family(class)?;
            set.insert_family(class.clone(), family, provenance);
        }
        Ok(set)
    }
}

/// Bytes a three-stage message spends on sending its own code: 4 bits per symbol per stream
/// (length, 0 = absent), as in our frame format's per-message code. huff0 compresses its table
/// further; this is the plain, honest upper end.
pub const THREE_STAGE_CODE_BYTES_PER_STREAM: u64 = 128;

/// The cost of three-stage (per-message) Huffman coding of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ThreeStage {
    /// Payload bits with each stream's own optimal code.
    pub payload_bits: u64,
    /// Bytes spent sending those codes.
    pub code_bytes: u64,
}

impl ThreeStage {
    /// Payload plus code, in bits.
    pub fn total_bits(&self) -> u64 {
        self.payload_bits + 8 * self.code_bytes
    }
}

/// Each stream's own optimal Huffman code of at most `max_len` bits (symbols absent from the
/// message get no code), and what sending that code costs.
pub fn three_stage(hists: &[Histogram], max_len: u32) -> Result<ThreeStage, huffman::CodeError> {
    let mut r = ThreeStage::default();
    for h in hists {
        if h.total() == 0 {
            continue;
        }
        let lengths = huffman::limited_lengths(&h.counts, max_len)?;
        r.payload_bits += huffman::cost(&h.counts, &lengths) as u64;
        r.code_bytes += THREE_STAGE_CODE_BYTES_PER_STREAM;
    }
    Ok(r)
}

/// Shannon bound in bits of a message with per-stream histograms `hists` (each stream coded alone).
pub fn shannon_bits(hists: &[Histogram]) -> f64 {
    hists.iter().map(|h| h.entropy() * h.total() as f64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trainer_averages_batches_and_covers_unseen_symbols() {
        let mut t = Trainer::new(12);
        t.add("c", DType::U8, Layout::Bytes, 0, &[1; 1000], "a").unwrap();
        t.add("c", DType::U8, Layout::Bytes, 1, &[2; 10], "b").unwrap();
        let d = t.distributions("c").unwrap();
        assert!((d[0].p[1] - 0.5).abs() < 1e-12 && (d[0].p[2] - 0.5).abs() < 1e-12);
        let (book, prov) = t.build_class("c").unwrap();
        assert_eq!(prov.batches, 2);
        assert_eq!(prov.trained_on, vec!["a", "b"]);
        assert_eq!(prov.symbols, 1010);
        let l = book.streams()[0].lengths();
        assert!(l[1] <= 2 && l[2] <= 2 && l.iter().all(|&x| x >= 1));
    }

    #[test]
    fn a_class_keeps_one_dtype_and_layout() {
        let mut t = Trainer::new(12);
        t.add("c", DType::Bf16, Layout::Bytes, 0, &[0; 4], "").unwrap();
        assert!(matches!(t.add("c", DType::Bf16, Layout::Planes, 0, &[0; 4], ""), Err(TrainError::Mixed { .. })));
        assert!(matches!(t.add("d", DType::Bf16, Layout::Planes, 0, &[0; 3], ""), Err(TrainError::Misaligned { .. })));
        assert!(matches!(t.build_class("nope"), Err(TrainError::Empty(_))));
    }

    #[test]
    fn three_stage_is_at_least_shannon_and_pays_for_its_code() {
        let data: Vec<u8> = (0..10_000u32).map(|i| ((i * 7919) % 13) as u8).collect();
        let h = vec![Histogram::of(&data)];
        let r = three_stage(&h, 12).unwrap();
        assert!(r.payload_bits as f64 >= shannon_bits(&h));
        assert!((r.payload_bits as f64) < shannon_bits(&h) + 10_000.0);
        assert_eq!(r.code_bytes, 128);
        assert_eq!(three_stage(&[Histogram::new()], 12).unwrap(), ThreeStage::default());
    }
}
