//! Which members a class's codebook [`Family`] gets: trained from the same per-message
//! histograms as the class code, and kept only where they pay on messages they were not trained on.
//!
//! Frames name a member per stream, so members are chosen per stream: each stream gets a list of
//! candidate codes (the class code first), and member `j` of the family is made of every stream's
//! candidate `j` (the class code where a stream has fewer). Candidates come from two sources:
//!
//! - **shift**: the class code moved by whole exponent steps ([`FamilyOptions::shifts`]), for the
//!   exponent stream of the `exponent` and `planes` layouts — gradients whose scale drifts from
//!   step to step;
//! - **cluster**: codes for modes of the training messages' distributions (layers, shards or steps
//!   that differ), found by k-means under the coded size itself: each message goes to the candidate
//!   that codes it in the fewest bits, each cluster's code is rebuilt from the sum of its messages
//!   (the code that minimises their total size), until nothing moves. The first centres are the
//!   messages worst served so far (farthest-first).
//!
//! **Held out**: candidates are trained on half of the messages (a fixed pseudo-random half) and
//! judged on the rest, so each half holds messages of every batch. A candidate is kept, and the
//! number of clusters grows, only while it makes the held-out messages smaller (by at least
//! [`FamilyOptions::min_gain_pp`] percentage points of their size, and at least one bit). The kept
//! kinds are then rebuilt from all messages.
//!
//! Why not hold out the last batch whole, as a later step meets codebooks of earlier ones: on two
//! MiniLM captures that judged clusters of steps 0–3 on step 4, rejected most of them, and left
//! activation gradients 0.53 pp behind per-shard Huffman on step 5 — while clusters of all steps,
//! judged on the held-out half, brought every class within 0.15 pp (README, "Codebook families").
//! The next step's messages resemble the latest steps' more than the earlier ones': a member for
//! each recent mode serves them, and members cost nothing in the frame (a member index per stream
//! is always there), only a little of the encoder's choosing time.

use crate::codebook::{shift_exponent_lengths, stream_lengths, Codebook, CodebookError};
use crate::family::Family;
use std::sync::Arc;
use crate::frame::MAX_MEMBERS;
use crate::stats::{Distribution, Histogram};
use crate::train::Rule;
use crate::{DType, Layout};

/// How a class's family is trained.
#[derive(Clone, Debug, PartialEq)]
pub struct FamilyOptions {
    /// Exponent shifts tried as members (layouts with an exponent stream), e.g. `[-1, 1]`.
    pub shifts: Vec<i32>,
    /// At most this many clustered members per stream.
    pub max_clusters: usize,
    /// A candidate is kept only if it saves at least this many percentage points of the held-out
    /// messages' size.
    pub min_gain_pp: f64,
}

impl Default for FamilyOptions {
    /// Shifts of ±1 and ±2 exponent steps, up to 8 clusters per stream, each kept while it makes
    /// the held-out messages smaller at all.
    fn default() -> Self {
        FamilyOptions {
            shifts: vec![-1, 1, -2, 2],
            max_clusters: 8,
            min_gain_pp: 0.0,
        }
    }
}

impl FamilyOptions {
    /// No members beyond the class code (`--family none`).
    pub fn none() -> Self {
        FamilyOptions {
            shifts: Vec::new(),
            max_clusters: 0,
            min_gain_pp: 0.0,
        }
    }

    /// Options by name, as `--family` takes them: `auto` (the default: shifts and clusters where
    /// they pay), `shift`, `cluster` (one kind only) or `none`.
    pub fn named(name: &str) -> Result<Self, String> {
        let auto = FamilyOptions::default();
        match name {
            "auto" => Ok(auto),
            "shift" => Ok(FamilyOptions {
                max_clusters: 0,
                ..auto
            }),
            "cluster" => Ok(FamilyOptions {
                shifts: Vec::new(),
                ..auto
            }),
            "none" => Ok(FamilyOptions::none()),
            other => Err(format!(
                "unknown family `{other}` (auto, shift, cluster or none)"
            )),
        }
    }

    /// Whether these options can add no member.
    pub fn is_none(&self) -> bool {
        self.shifts.is_empty() && self.max_clusters == 0
    }
}

/// One training message of a class: its batch and per-stream histograms.
#[derive(Clone, Debug)]
pub(crate) struct Message {
    pub batch: u64,
    pub hists: Vec<Histogram>,
}

type Lengths = [u8; 256];

/// One stream's candidate codes, the class code first, each with what made it.
struct Candidates {
    codes: Vec<Lengths>,
    labels: Vec<String>,
}

/// The members of a class's family: per member, each stream's code lengths, and a label saying
/// what made it. Member 0 is `class_code`.
pub(crate) fn train_members(
    dtype: DType,
    layout: Layout,
    class_code: &[Lengths],
    messages: &[Message],
    rule: Rule,
    max_len: u32,
    opts: &FamilyOptions,
) -> Result<(Vec<Vec<Lengths>>, Vec<String>), CodebookError> {
    let streams = class_code.len();
    let mut per_stream: Vec<Candidates> = class_code
        .iter()
        .map(|&c| Candidates {
            codes: vec![c],
            labels: vec!["class".into()],
        })
        .collect();
    if !opts.is_none() {
        if let Some((train, held_out)) = split(messages) {
            let exponent = layout.exponent_stream(dtype);
            // Percentage points of the held-out messages' size, in bits.
            let held_bits: u64 = held_out
                .iter()
                .flat_map(|m| &m.hists)
                .map(|h| 8 * h.total())
                .sum();
            let min_gain_bits = opts.min_gain_pp / 100.0 * held_bits as f64;
            for (s, cands) in per_stream.iter_mut().enumerate() {
                let train_h: Vec<&Histogram> = train.iter().map(|m| &m.hists[s]).collect();
                let held_h: Vec<&Histogram> = held_out.iter().map(|m| &m.hists[s]).collect();
                let all_h: Vec<&Histogram> = messages.iter().map(|m| &m.hists[s]).collect();
                let base = rule_code(&train, s, rule, max_len)?;
                let mut trial = vec![base];
                let mut best = total_bits(&held_h, &trial);
                // Shifts, judged one by one against what is kept so far.
                if let Some((e, stride)) = exponent.filter(|&(e, _)| e == s) {
                    debug_assert_eq!(e, s);
                    for &step in opts.shifts.iter().filter(|&&k| k != 0) {
                        trial.push(shift_exponent_lengths(&base, stride, step));
                        let bits = total_bits(&held_h, &trial);
                        if best.saturating_sub(bits) as f64 >= min_gain_bits.max(1.0) {
                            best = bits;
                            cands
                                .codes
                                .push(shift_exponent_lengths(&cands.codes[0], stride, step));
                            cands.labels.push(format!("shift {step:+}"));
                        } else {
                            trial.pop();
                        }
                    }
                }
                // Clusters: grow k while the held-out gain pays.
                let fixed = trial.len();
                let mut k = 0;
                while k < opts.max_clusters && fixed + k + 1 <= MAX_MEMBERS {
                    let centres = lloyd(&trial[..fixed], &train_h, k + 1, max_len)?;
                    let mut with: Vec<Lengths> = trial[..fixed].to_vec();
                    with.extend(&centres);
                    let bits = total_bits(&held_h, &with);
                    if best.saturating_sub(bits) as f64 >= min_gain_bits.max(1.0)
                        && centres.len() == k + 1
                    {
                        best = bits;
                        k += 1;
                    } else {
                        break;
                    }
                }
                if k > 0 {
                    // Rebuilt from every message, around the kept class code and shifts.
                    let kept = cands.codes.clone();
                    for (i, c) in lloyd(&kept, &all_h, k, max_len)?.into_iter().enumerate() {
                        cands.codes.push(c);
                        cands.labels.push(format!("cluster {}", i + 1));
                    }
                }
            }
        }
    }
    let count = per_stream
        .iter()
        .map(|c| c.codes.len())
        .max()
        .unwrap_or(1)
        .min(MAX_MEMBERS);
    let mut members = Vec::with_capacity(count);
    let mut labels = Vec::with_capacity(count);
    for j in 0..count {
        members.push(
            (0..streams)
                .map(|s| {
                    per_stream[s]
                        .codes
                        .get(j)
                        .copied()
                        .unwrap_or(per_stream[s].codes[0])
                })
                .collect(),
        );
        labels.push(if j == 0 {
            "class".to_string()
        } else {
            let parts: Vec<String> = (0..streams)
                .filter(|&s| j < per_stream[s].codes.len())
                .map(|s| {
                    if streams == 1 {
                        per_stream[s].labels[j].clone()
                    } else {
                        format!("stream {s}: {}", per_stream[s].labels[j])
                    }
                })
                .collect();
            parts.join("; ")
        });
    }
    Ok((members, labels))
}

/// The family of `class_book` for `messages`: the class code as member 0, then the members that
/// pay ([`train_members`]), and what made each (empty for a family of one).
pub(crate) fn train_family(class_book: Codebook, messages: &[Message], rule: Rule, max_len: u32, opts: &FamilyOptions) -> Result<(Family, Vec<String>), CodebookError> {
    let (dtype, layout) = (class_book.dtype(), class_book.layout());
    let class_code: Vec<Lengths> = class_book.streams().iter().map(|s| *s.lengths()).collect();
    let (members, labels) = train_members(dtype, layout, &class_code, messages, rule, max_len, opts)?;
    let mut books = vec![Arc::new(class_book)];
    for m in &members[1..] {
        let lengths: Vec<Vec<u8>> = m.iter().map(|l| l.to_vec()).collect();
        books.push(Arc::new(Codebook::from_lengths(dtype, layout, &lengths)?));
    }
    let labels = if books.len() > 1 { labels } else { Vec::new() };
    Ok((Family::new(books).expect("members share the class's dtype and layout, at most MAX_MEMBERS"), labels))
}

/// Training and held-out messages: about half each, by a fixed pseudo-random draw per message
/// (so each batch's messages fall into both halves, and no period in the order messages were
/// added — shards, layers — lines up with the split).
fn split(messages: &[Message]) -> Option<(Vec<&Message>, Vec<&Message>)> {
    let (held, train): (Vec<(usize, &Message)>, Vec<(usize, &Message)>) = messages
        .iter()
        .enumerate()
        .partition(|&(i, _)| splitmix64(i as u64) & 1 == 1);
    let (train, held): (Vec<&Message>, Vec<&Message>) = (
        train.into_iter().map(|p| p.1).collect(),
        held.into_iter().map(|p| p.1).collect(),
    );
    (!held.is_empty() && !train.is_empty()).then_some((train, held))
}

/// SplitMix64's output function: a fixed, well-mixed hash of a counter.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The class code of stream `s` for `messages` under `rule` (per-batch distributions combined).
fn rule_code(
    messages: &[&Message],
    s: usize,
    rule: Rule,
    max_len: u32,
) -> Result<Lengths, CodebookError> {
    let mut batches: std::collections::BTreeMap<u64, Histogram> = std::collections::BTreeMap::new();
    for m in messages {
        batches.entry(m.batch).or_default().merge(&m.hists[s]);
    }
    let dists: Vec<Distribution> = batches
        .values()
        .filter_map(Histogram::distribution)
        .collect();
    let d = rule.combine(&dists).unwrap_or_else(Distribution::uniform);
    code_for(&d, max_len)
}

fn code_for(d: &Distribution, max_len: u32) -> Result<Lengths, CodebookError> {
    Ok(stream_lengths(d, max_len)?.try_into().expect("256 lengths"))
}

/// Σ over messages of the bits of the best code for each.
fn total_bits(messages: &[&Histogram], codes: &[Lengths]) -> u64 {
    messages
        .iter()
        .map(|h| codes.iter().map(|c| h.coded_bits(c)).min().unwrap_or(0))
        .sum()
}

/// `k` cluster codes for `messages`, beside the `fixed` codes (which take part in the assignment but
/// do not move). Clusters that end up empty are dropped, so fewer than `k` may come back.
fn lloyd(
    fixed: &[Lengths],
    messages: &[&Histogram],
    k: usize,
    max_len: u32,
) -> Result<Vec<Lengths>, CodebookError> {
    let best_of = |h: &Histogram, codes: &[Lengths]| -> (usize, u64) {
        codes
            .iter()
            .enumerate()
            .map(|(i, c)| (i, h.coded_bits(c)))
            .min_by_key(|&(i, b)| (b, i))
            .expect("some code")
    };
    let mut codes: Vec<Lengths> = fixed.to_vec();
    // Each message's own entropy in bits, once: recomputed in every seeding round below it was
    // most of the time of training a family (256 logarithms per message per round).
    let own_bits: Vec<f64> = messages.iter().map(|h| h.entropy() * h.total() as f64).collect();
    // Farthest-first: the message with the most bits beyond its own entropy under the codes so far.
    for _ in 0..k {
        let worst = messages
            .iter()
            .zip(&own_bits)
            .map(|(h, own)| (best_of(h, &codes).1 as f64 - own, *h))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match worst {
            Some((excess, h)) if excess > 0.0 => codes.push(code_for(
                &h.distribution().expect("a message with symbols"),
                max_len,
            )?),
            _ => break,
        }
    }
    let mut assignment: Vec<usize> = Vec::new();
    for _round in 0..12 {
        let next: Vec<usize> = messages.iter().map(|h| best_of(h, &codes).0).collect();
        if next == assignment {
            break;
        }
        assignment = next;
        let mut rebuilt = codes[..fixed.len()].to_vec();
        for c in fixed.len()..codes.len() {
            let mut sum = Histogram::new();
            for (h, _) in messages.iter().zip(&assignment).filter(|(_, &a)| a == c) {
                sum.merge(h);
            }
            if let Some(d) = sum.distribution() {
                rebuilt.push(code_for(&d, max_len)?);
            }
        }
        if rebuilt.len() < codes.len() {
            // A cluster emptied: indices moved, so assign again from scratch.
            assignment.clear();
        }
        codes = rebuilt;
    }
    Ok(codes.split_off(fixed.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(center: u8, spread: u32, n: u64) -> Histogram {
        let mut h = Histogram::new();
        for d in 0..spread {
            h.counts[center.wrapping_add(d as u8) as usize] += n >> d.min(40);
        }
        h
    }

    fn msg(batch: u64, h: Histogram) -> Message {
        Message {
            batch,
            hists: vec![h],
        }
    }

    /// The members trained for one-stream `messages`, around their class code.
    fn members_for(messages: &[Message], opts: &FamilyOptions) -> (Vec<Vec<Lengths>>, Vec<String>) {
        let class = [rule_code(&messages.iter().collect::<Vec<_>>(), 0, Rule::Average, 12).unwrap()];
        train_members(DType::U8, Layout::Bytes, &class, messages, Rule::Average, 12, opts).unwrap()
    }

    /// Half the messages around symbol 10, half around 200: one code serves both badly.
    fn two_modes() -> Vec<Message> {
        (0..8).map(|i| msg(i / 2, hist(if i % 2 == 0 { 10 } else { 200 }, 12, 1 << 20))).collect()
    }

    #[test]
    fn two_modes_get_a_member_each_and_one_mode_gets_none() {
        let (members, labels) = members_for(&two_modes(), &FamilyOptions::default());
        assert!(members.len() >= 2, "{labels:?}");
        assert!(labels[1].starts_with("cluster"), "{labels:?}");
        let one: Vec<Message> = (0..8).map(|i| msg(i / 2, hist(10, 12, 1 << 20))).collect();
        assert_eq!(members_for(&one, &FamilyOptions::default()).0.len(), 1, "identical messages need no second member");
    }

    #[test]
    fn no_family_without_options_or_held_out_data() {
        assert_eq!(members_for(&two_modes(), &FamilyOptions::none()).0.len(), 1);
        assert_eq!(members_for(&two_modes()[..1], &FamilyOptions::default()).0.len(), 1, "one message: nothing to hold out");
    }
}
