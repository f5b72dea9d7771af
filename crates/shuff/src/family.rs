//! Codebook families: the codebooks one class may use, chosen per stream and per message.
//!
//! A [`Family`] holds up to [`MAX_MEMBERS`] codebooks of one dtype and layout — the class codebook
//! first, then variants such as the same code moved by whole exponent steps
//! ([`Family::exponent_shift`]), for tensors whose scale drifts from step to step (gradients). A
//! frame names, per stream, which member coded it (4 bits each, `docs/FORMAT.md`), and carries the
//! family's fingerprint instead of a codebook's: a decoder given another family, or a single
//! codebook, fails with a typed error. The encoder picks each stream's member from a strided
//! sample of the message ([`Family::choose`]) unless the caller names them.
//!
//! A family of one codebook is that codebook: same fingerprint, member 0, the same frames as
//! [`crate::encode()`] writes.

use crate::codebook::{Codebook, Fingerprint, Fnv1a};
use crate::codebook::KernelChoice;
use crate::decode::decode_members_into;
use crate::encode::{encode_members_into, EncodeError, EncodeOptions};
use crate::frame::{max_frame_len, DecodeError, MAX_MEMBERS, MAX_STREAMS};
use crate::layout::{self, MisalignedTensor};
use crate::stats::Histogram;
use crate::{DType, Layout};
use std::sync::Arc;

/// What is wrong with a family's members.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FamilyError {
    /// No members, or more than a frame can name.
    #[error("a codebook family has 1 to {MAX_MEMBERS} members, not {0}")]
    Size(usize),
    /// Members of different dtypes or layouts.
    #[error("member {index} codes {found_dtype}/{found_layout}, member 0 {dtype}/{layout}")]
    Mixed {
        /// The odd member.
        index: usize,
        /// Member 0's dtype.
        dtype: DType,
        /// Member 0's layout.
        layout: Layout,
        /// The odd member's dtype.
        found_dtype: DType,
        /// The odd member's layout.
        found_layout: Layout,
    },
    /// A member index the family does not have.
    #[error("stream {stream} names member {member} of a family of {size}")]
    NoSuchMember {
        /// The stream.
        stream: usize,
        /// The member asked for.
        member: u8,
        /// The family's size.
        size: usize,
    },
}

/// Codebooks of one dtype and layout that a class may use; see the module docs.
#[derive(Clone, Debug)]
pub struct Family {
    members: Vec<Arc<Codebook>>,
    fingerprint: Fingerprint,
    /// Per stream, per symbol: its code length in every member, side by side as 16-bit fields
    /// (member `m` in bits `16·(m mod 4)` of word `m / 4`; 0 past the family's size) — the row
    /// [`Family::choose`] adds for each sampled symbol.
    lengths_by_symbol: Arc<[[LengthRow; 256]]>,
}

impl Family {
    /// A family of `members` (member 0 first), 1 to [`MAX_MEMBERS`] of one dtype and layout.
    pub fn new(members: Vec<Arc<Codebook>>) -> Result<Family, FamilyError> {
        if members.is_empty() || members.len() > MAX_MEMBERS {
            return Err(FamilyError::Size(members.len()));
        }
        let (dtype, layout) = (members[0].dtype(), members[0].layout());
        if let Some(index) = members.iter().position(|m| (m.dtype(), m.layout()) != (dtype, layout)) {
            let m = &members[index];
            return Err(FamilyError::Mixed { index, dtype, layout, found_dtype: m.dtype(), found_layout: m.layout() });
        }
        let fingerprint = if members.len() == 1 {
            members[0].fingerprint()
        } else {
            let mut h = Fnv1a::new(b"shuff-family-v1");
            for m in &members {
                h.write(&m.fingerprint().0.to_le_bytes());
            }
            h.finish()
        };
        let lengths_by_symbol = (0..members[0].streams().len())
            .map(|s| {
                let mut rows = [[0u64; 4]; 256];
                for (m, member) in members.iter().enumerate() {
                    for (row, &len) in rows.iter_mut().zip(member.streams()[s].lengths()) {
                        row[m / 4] |= u64::from(len) << (16 * (m % 4));
                    }
                }
                rows
            })
            .collect();
        Ok(Family { members, fingerprint, lengths_by_symbol })
    }

    /// `book` and its exponent-shifted variants, by `steps` exponent steps each (e.g. `[-1, 1]`;
    /// 0 is member 0, the book itself). Layouts without an exponent stream give a family of one.
    pub fn exponent_shift(book: Arc<Codebook>, steps: &[i32]) -> Family {
        let mut members = vec![Arc::clone(&book)];
        members.extend(steps.iter().filter(|&&s| s != 0).filter_map(|&s| book.exponent_shifted(s)).map(Arc::new));
        members.truncate(MAX_MEMBERS);
        Family::new(members).expect("shifted codes share the book's dtype and layout")
    }

    /// The members, member 0 first.
    pub fn members(&self) -> &[Arc<Codebook>] {
        &self.members
    }

    /// The fingerprint frames carry (a family of one: its codebook's).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.members[0].dtype()
    }

    /// Layout.
    pub fn layout(&self) -> Layout {
        self.members[0].layout()
    }

    /// For each stream, the member that codes a strided sample of `data` (every `stride`-th
    /// element; 1 = exactly) in the fewest bits; ties go to the lower index. Use a stride coprime
    /// to the row width (a prime: the encoder's is [`select_stride`]). The same choice as
    /// [`Family::choose_from_histograms`] of the sample's histograms.
    ///
    /// This runs for every message the encoder codes, so it counts no histogram: each sampled
    /// symbol adds its row of lengths (all members' side by side, 32 bytes) to 16-bit running
    /// totals — one vector add a symbol with AVX2. Counting a histogram and then scoring each
    /// member against it cost 6.5 µs per 64 KiB `bytes` message at a 1/17 sample (a fifth of the
    /// encode: the counters' store-to-load chains on repeated exponent bytes); the rows, 2.3 µs.
    ///
    /// [`select_stride`]: crate::measure::select_stride
    pub fn choose(&self, data: &[u8], stride: usize) -> Result<[u8; MAX_STREAMS], MisalignedTensor> {
        if self.members.len() == 1 {
            layout::element_count(self.dtype(), data.len())?;
            return Ok([0; MAX_STREAMS]);
        }
        let rows = &*self.lengths_by_symbol;
        let (dtype, layout) = (self.dtype(), self.layout());
        let bits = avx2_or!(sampled_bits_avx2(dtype, layout, rows, data, stride), sampled_bits(dtype, layout, rows, data, stride))?;
        let mut members = [0u8; MAX_STREAMS];
        for (member, b) in members.iter_mut().zip(&bits).take(rows.len()) {
            *member = least(&b[..self.members.len()]);
        }
        Ok(members)
    }

    /// The members the encoder picks for `data` when the caller names none: [`Family::choose`] on
    /// every [`select_stride`](crate::measure::select_stride)-th element.
    pub fn encoder_choice(&self, data: &[u8]) -> Result<[u8; MAX_STREAMS], MisalignedTensor> {
        self.choose(data, crate::measure::select_stride(data.len() / self.dtype().size()))
    }

    /// For each stream `s`, the member that codes symbols counted in `hists[s]` in the fewest bits
    /// (ties: the lower index) — the choice [`Family::choose`] makes, for coders that count their
    /// sample themselves (the GPU coder counts on the device). Streams without a histogram get 0.
    pub fn choose_from_histograms(&self, hists: &[Histogram]) -> [u8; MAX_STREAMS] {
        let mut members = [0u8; MAX_STREAMS];
        if self.members.len() == 1 {
            return members;
        }
        // The symbols the sample holds (a small message's sample has a few dozen), on the stack:
        // this runs for every message the encoder codes.
        let (mut symbols, mut counts) = ([0u8; 256], [0u64; 256]);
        for (s, (member, h)) in members.iter_mut().zip(hists).enumerate().take(self.members[0].streams().len()) {
            let mut seen = 0;
            for (sym, &c) in h.counts.iter().enumerate().filter(|&(_, &c)| c > 0) {
                (symbols[seen], counts[seen]) = (sym as u8, c);
                seen += 1;
            }
            let bits = |m: &Arc<Codebook>| -> u64 {
                let lengths = m.streams()[s].lengths();
                symbols[..seen].iter().zip(&counts[..seen]).map(|(&sym, &c)| c * u64::from(lengths[usize::from(sym)])).sum()
            };
            let totals: [u64; MAX_MEMBERS] = std::array::from_fn(|i| if i < self.members.len() { bits(&self.members[i]) } else { 0 });
            *member = least(&totals[..self.members.len()]);
        }
        members
    }

    /// The members as plain references, without allocating (entries past the family's size repeat
    /// member 0 and are never named: `check_members`).
    fn books(&self) -> [&Codebook; MAX_MEMBERS] {
        std::array::from_fn(|i| &*self.members[if i < self.members.len() { i } else { 0 }])
    }

    fn check_members(&self, members: [u8; MAX_STREAMS]) -> Result<(), FamilyError> {
        let k = self.layout().stream_count(self.dtype());
        match (0..k).find(|&s| usize::from(members[s]) >= self.members.len()) {
            Some(stream) => Err(FamilyError::NoSuchMember { stream, member: members[stream], size: self.members.len() }),
            None => Ok(()),
        }
    }

    /// Encodes `data` into `out` (at least [`max_frame_len`] bytes) with each stream coded by
    /// `members[s]`, or, with `None`, by the members of [`Family::encoder_choice`].
    /// Returns the frame's length.
    pub fn encode_into(&self, data: &[u8], out: &mut [u8], opts: EncodeOptions, members: Option<[u8; MAX_STREAMS]>) -> Result<usize, FamilyEncodeError> {
        let members = match members {
            Some(m) => m,
            None => self.encoder_choice(data)?,
        };
        self.check_members(members)?;
        Ok(encode_members_into(&self.books()[..self.members.len()], members, self.fingerprint.0 as u32, data, out, opts)?)
    }

    /// [`Family::encode_into`] into a new buffer.
    pub fn encode(&self, data: &[u8], opts: EncodeOptions, members: Option<[u8; MAX_STREAMS]>) -> Result<Vec<u8>, FamilyEncodeError> {
        let mut out = vec![0u8; max_frame_len(self.dtype(), self.layout(), data.len())];
        let n = self.encode_into(data, &mut out, opts, members)?;
        out.truncate(n);
        Ok(out)
    }

    /// Decodes a frame of this family into `out` (exactly the decoded size).
    pub fn decode_into(&self, frame: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
        self.decode_into_with(frame, out, KernelChoice::default())
    }

    /// [`Family::decode_into`] with the lane loop `choice` forces (tests and fuzz targets).
    #[doc(hidden)]
    pub fn decode_into_with(&self, frame: &[u8], out: &mut [u8], choice: KernelChoice) -> Result<(), DecodeError> {
        decode_members_into(&self.books()[..self.members.len()], self.fingerprint, frame, out, choice)
    }
}

/// One symbol's code lengths in all [`MAX_MEMBERS`] members, four 16-bit fields a word.
type LengthRow = [u64; 4];

/// Per stream, the bits each member codes a strided sample of `data` in ([`Family::choose`]),
/// from each sampled symbol's row of lengths.
#[inline(always)]
fn sampled_bits(dtype: DType, layout: Layout, rows: &[[LengthRow; 256]], data: &[u8], stride: usize) -> Result<[[u64; MAX_MEMBERS]; MAX_STREAMS], MisalignedTensor> {
    // A length is ≤ 16 bits, so 16-bit fields hold the totals of 4095 symbols without carrying
    // into each other: the sample is taken in blocks of 1023 sampled elements (≤ 4 symbols each
    // per stream), and each block's totals move into 64-bit ones. (Written as arrays of 16-bit
    // totals, LLVM split the sum into eight 2-lane vector adds with spills.)
    layout::element_count(dtype, data.len())?;
    // (Saturating: a caller may pass any stride.)
    let block = 1023usize.saturating_mul(stride.max(1)).saturating_mul(dtype.size());
    let mut bits = [[0u64; MAX_MEMBERS]; MAX_STREAMS];
    for part in data.chunks(block) {
        let mut run: [LengthRow; MAX_STREAMS] = [[0; 4]; MAX_STREAMS];
        crate::stats::for_each_sampled_symbol(dtype, layout, part, stride, #[inline(always)] |s, sym| {
            let (r, row) = (&mut run[s], &rows[s][usize::from(sym)]);
            for w in 0..4 {
                r[w] += row[w];
            }
        })?;
        for (r, b) in run.iter().zip(bits.iter_mut()).take(rows.len()) {
            for (m, b) in b.iter_mut().enumerate() {
                *b += (r[m / 4] >> (16 * (m % 4))) & 0xffff;
            }
        }
    }
    Ok(bits)
}

/// [`sampled_bits`] compiled for AVX2, where a row is one 32-byte add.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sampled_bits_avx2(dtype: DType, layout: Layout, rows: &[[LengthRow; 256]], data: &[u8], stride: usize) -> Result<[[u64; MAX_MEMBERS]; MAX_STREAMS], MisalignedTensor> {
    sampled_bits(dtype, layout, rows, data, stride)
}

/// The index of the smallest of `bits` (the first of equals).
fn least(bits: &[u64]) -> u8 {
    (0..bits.len()).min_by_key(|&i| (bits[i], i)).expect("a family has members") as u8
}

/// Why a family could not encode a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FamilyEncodeError {
    /// The message or output buffer.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A member the family does not have.
    #[error(transparent)]
    Family(#[from] FamilyError),
}

impl From<MisalignedTensor> for FamilyEncodeError {
    fn from(e: MisalignedTensor) -> Self {
        FamilyEncodeError::Encode(EncodeError::Misaligned(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::stream_histograms;

    /// Real-looking bf16 values with a spread of exponents (a deterministic generator).
    fn values(n: usize, scale: f32) -> Vec<u8> {
        let mut x = 0x1234_5678u32;
        (0..n)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let u = (x >> 8) as f32 / (1 << 24) as f32;
                let v = (u - 0.5) * scale * (1.0 + 7.0 * u * u);
                ((v.to_bits() >> 16) as u16).to_le_bytes()
            })
            .collect()
    }

    fn book(data: &[u8]) -> Arc<Codebook> {
        let hists = stream_histograms(DType::Bf16, Layout::Exponent, data).unwrap();
        let dists: Vec<_> = hists.iter().map(|h| h.distribution().unwrap()).collect();
        Arc::new(Codebook::from_distributions(DType::Bf16, Layout::Exponent, &dists, 16).unwrap())
    }

    /// A message at twice the scale the class was trained on: the member shifted by one exponent
    /// step codes it as small as the class code codes the original, the class code alone does not;
    /// the frame names the member and decodes with the family only.
    #[test]
    fn a_shifted_member_follows_a_scale_change() {
        let train = values(100_000, 1.0);
        let family = Family::exponent_shift(book(&train), &[-1, 1]);
        assert_eq!(family.members().len(), 3);
        let doubled = values(100_000, 2.0);
        let opts = EncodeOptions { parallel: false, ..Default::default() };
        let chosen = family.choose(&doubled, 17).unwrap();
        assert_eq!(chosen[0], 0, "the mantissa stream keeps the class code");
        assert_eq!(chosen[1], 2, "the exponent stream takes the +1 member");
        let frame = family.encode(&doubled, opts, None).unwrap();
        let single = crate::encode(&family.members()[0], &doubled, opts).unwrap();
        let reference = crate::encode(&family.members()[0], &train, opts).unwrap();
        assert!(frame.len() + 1000 < single.len(), "family {} vs class code {}", frame.len(), single.len());
        assert!(frame.len().abs_diff(reference.len()) < 200, "family on 2x {} vs class code on 1x {}", frame.len(), reference.len());
        let mut out = vec![0u8; doubled.len()];
        family.decode_into(&frame, &mut out).unwrap();
        assert_eq!(out, doubled);
        // The class code alone refuses it (member 2 named); so does another family.
        assert!(crate::decode(&family.members()[0], &frame).is_err());
        let other = Family::exponent_shift(book(&values(50_000, 3.0)), &[-1, 1]);
        assert!(matches!(other.decode_into(&frame, &mut out), Err(DecodeError::CodebookMismatch { .. })));
    }

    /// Sixteen members of `dtype`/`layout`, each from a differently skewed distribution, so that
    /// the lengths differ between members and run up to 16 bits.
    fn sixteen_members(dtype: DType, layout: Layout) -> Family {
        let members = (0..MAX_MEMBERS)
            .map(|m| {
                let k = layout.stream_count(dtype);
                let dists: Vec<_> = (0..k)
                    .map(|s| {
                        let mut h = Histogram::new();
                        for (sym, c) in h.counts.iter_mut().enumerate() {
                            // A geometric tail from a member- and stream-dependent start.
                            let rank = (sym + 37 * m + 101 * s) % 256;
                            *c = 1 + ((1u64 << 40) >> rank.min(40));
                        }
                        h.distribution().unwrap()
                    })
                    .collect();
                Arc::new(Codebook::from_distributions(dtype, layout, &dists, 16).unwrap())
            })
            .collect();
        Family::new(members).unwrap()
    }

    /// The running 16-bit totals of `choose` never carry into each other and add up to what the
    /// sample's histograms give, for every dtype and layout, on samples of the longest codes that
    /// span several blocks, and on mixed data; and the choice is `choose_from_histograms`'.
    #[test]
    fn sampled_rows_add_up_to_the_sample_histograms_bits() {
        for dtype in [DType::Bf16, DType::F32, DType::U8] {
            for layout in Layout::ALL {
                let family = sixteen_members(dtype, layout);
                let k = layout.stream_count(dtype);
                let longest = family.members()[0].streams()[0].lengths().iter().enumerate().max_by_key(|&(_, &l)| l).map(|(s, _)| s as u8).unwrap();
                assert_eq!(family.members()[0].streams()[0].lengths()[usize::from(longest)], 16);
                let mixed: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
                for data in [vec![longest; 12_000 * dtype.size()], mixed] {
                    for stride in [1, 7, 61, usize::MAX] {
                        let hists = crate::stats::sampled_stream_histograms(dtype, layout, &data, stride).unwrap();
                        let bits = sampled_bits(dtype, layout, &family.lengths_by_symbol, &data, stride).unwrap();
                        for s in 0..k {
                            for (m, member) in family.members().iter().enumerate() {
                                assert_eq!(bits[s][m], member.streams()[s].coded_bits(&hists[s]), "{dtype}/{layout} stride {stride} stream {s} member {m}");
                            }
                        }
                        assert_eq!(family.choose(&data, stride).unwrap(), family.choose_from_histograms(&hists), "{dtype}/{layout} stride {stride}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_family_of_one_writes_its_codebooks_frames_and_members_are_checked() {
        let data = values(40_000, 1.0);
        let b = book(&data);
        let one = Family::new(vec![Arc::clone(&b)]).unwrap();
        assert_eq!(one.fingerprint(), b.fingerprint());
        let opts = EncodeOptions::default();
        assert_eq!(one.encode(&data, opts, None).unwrap(), crate::encode(&b, &data, opts).unwrap());
        let family = Family::exponent_shift(b, &[1]);
        // Explicit members, and members the family does not have.
        let frame = family.encode(&data, opts, Some([1, 1, 0, 0])).unwrap();
        let mut out = vec![0u8; data.len()];
        family.decode_into(&frame, &mut out).unwrap();
        assert_eq!(out, data);
        assert!(matches!(family.encode(&data, opts, Some([0, 2, 0, 0])), Err(FamilyEncodeError::Family(FamilyError::NoSuchMember { .. }))));
        let mut forged = frame.clone();
        let at = crate::FrameInfo::parse(&forged).unwrap().header_len - 5;
        forged[at] = 0x50; // stream 1 names member 5
        assert!(matches!(family.decode_into(&forged, &mut out), Err(DecodeError::Corrupt(_))));
        assert!(matches!(Family::new(Vec::new()), Err(FamilyError::Size(0))));
    }
}
