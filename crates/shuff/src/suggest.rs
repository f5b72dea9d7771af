//! Classes that fit the data: from tensor names and their symbol statistics, the classes a user
//! can paste into `shuff train` as `--class NAME --match REGEX` pairs (`shuff analyze` prints them).
//!
//! 1. **Names with the numbers taken out**: `layer3.ffn1_act.x.shard5` has the pattern
//!    `layer#.ffn#_act.x.shard#`; tensors of one dtype and pattern start as one class, since layer,
//!    shard and block numbers usually index repeats of one kind of tensor.
//! 2. **Split** where a number names different kinds: a class is split by the number at one place
//!    (`ffn1` vs `ffn2`) when one code per value would code the class at least
//!    [`SPLIT_GAIN_PP`] percentage points smaller than one code for all — measured as the
//!    Kullback–Leibler divergence of each part's symbol distribution from the class's, per stream,
//!    weighted by its symbols. The place that gains most splits first; the parts are split again
//!    the same way. Layers and shards of one kind differ by far less (a few hundredths of a point on
//!    MiniLM), and a family's clustered members absorb such differences anyway.
//! 3. **Merge** classes of one dtype whose distributions are alike: two classes become one when a
//!    shared code costs under [`MERGE_COST_PP`] points — fewer codebooks, more data behind each.

use crate::stats::{Distribution, Histogram};
use crate::DType;
use std::collections::BTreeMap;

/// A split must save at least this many percentage points of the class's size.
pub const SPLIT_GAIN_PP: f64 = 0.5;
/// Two classes merge when a shared code costs less than this many percentage points.
pub const MERGE_COST_PP: f64 = 0.1;

/// One tensor as the suggestion sees it: name, dtype, per-stream symbol histograms (any one
/// layout, the same for all tensors; several steps of one tensor may be summed).
#[derive(Clone, Debug)]
pub struct TensorSummary {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Per-stream histograms.
    pub hists: Vec<Histogram>,
}

/// A suggested class.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SuggestedClass {
    /// Its name: the name pattern (`#` for a number that varies), patterns joined by `+` when merged.
    pub name: String,
    /// A regex over tensor names selecting exactly its tensors' patterns.
    pub selector: String,
    /// Element type.
    pub dtype: DType,
    /// Tensors it holds.
    pub tensors: usize,
    /// Their bytes (symbols of all streams).
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Token {
    Text(String),
    Number(String),
}

fn tokens(name: &str) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::new();
    for c in name.chars() {
        let digit = c.is_ascii_digit();
        match out.last_mut() {
            Some(Token::Number(s)) if digit => s.push(c),
            Some(Token::Text(s)) if !digit => s.push(c),
            _ => out.push(if digit { Token::Number(c.into()) } else { Token::Text(c.into()) }),
        }
    }
    out
}

/// A name pattern: its texts and, per number place, a fixed value or any (`None`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pattern {
    parts: Vec<Token>,
    fixed: Vec<Option<String>>,
}

impl Pattern {
    /// The pattern of a name's tokens: every number place open.
    fn of(toks: &[Token]) -> Pattern {
        let parts: Vec<Token> = toks.iter().map(|t| if let Token::Number(_) = t { Token::Number(String::new()) } else { t.clone() }).collect();
        let numbers = parts.iter().filter(|t| matches!(t, Token::Number(_))).count();
        Pattern { parts, fixed: vec![None; numbers] }
    }

    fn render(&self, text: impl Fn(&str) -> String, any: &str) -> String {
        let mut n = 0;
        let mut out = String::new();
        for t in &self.parts {
            match t {
                Token::Text(s) => out.push_str(&text(s)),
                Token::Number(_) => {
                    out.push_str(self.fixed[n].as_deref().unwrap_or(any));
                    n += 1;
                }
            }
        }
        out
    }

    fn name(&self) -> String {
        self.render(str::to_string, "#")
    }

    fn regex(&self) -> String {
        self.render(regex::escape, r"\d+")
    }
}

/// A class under construction: its patterns and tensors (indices into the input).
#[derive(Clone, Debug)]
struct Group {
    dtype: DType,
    patterns: Vec<Pattern>,
    members: Vec<usize>,
}

/// Summed histograms of `members`, per stream.
fn summed(tensors: &[TensorSummary], members: &[usize]) -> Vec<Histogram> {
    let streams = tensors[members[0]].hists.len();
    let mut acc = vec![Histogram::new(); streams];
    for &m in members {
        for (a, h) in acc.iter_mut().zip(&tensors[m].hists) {
            a.merge(h);
        }
    }
    acc
}

/// Bits one code for all of `parts` costs beyond one code per part (ideal codes): Σ over parts and
/// streams of symbols × KL(part ‖ whole).
fn sharing_cost_bits(parts: &[Vec<Histogram>]) -> f64 {
    let streams = parts[0].len();
    let mut cost = 0.0;
    for s in 0..streams {
        let mut whole = Histogram::new();
        for p in parts {
            whole.merge(&p[s]);
        }
        let Some(q) = whole.distribution() else { continue };
        for p in parts {
            if let Some(d) = p[s].distribution() {
                cost += p[s].total() as f64 * kl(&d, &q);
            }
        }
    }
    cost
}

fn kl(p: &Distribution, q: &Distribution) -> f64 {
    // q is the mixture p is part of: q > 0 wherever p > 0.
    p.p.iter().zip(&q.p).filter(|(&a, _)| a > 0.0).map(|(&a, &b)| a * (a / b).log2()).sum()
}

fn bits_of(h: &[Histogram]) -> f64 {
    8.0 * h.iter().map(Histogram::total).sum::<u64>() as f64
}

/// Number-place values of tensor `m` in a group of one token layout.
fn number_at(tensors: &[TensorSummary], m: usize, place: usize) -> String {
    tokens(&tensors[m].name)
        .into_iter()
        .filter_map(|t| match t {
            Token::Number(n) => Some(n),
            Token::Text(_) => None,
        })
        .nth(place)
        .expect("tensors of a group share a token layout")
}

/// Splits a single-pattern group by the number place that gains most, recursively.
fn split(tensors: &[TensorSummary], g: Group, out: &mut Vec<Group>) {
    let pattern = &g.patterns[0];
    let total_bits = bits_of(&summed(tensors, &g.members));
    let mut best: Option<(f64, usize, BTreeMap<String, Vec<usize>>)> = None;
    for place in (0..pattern.fixed.len()).filter(|&p| pattern.fixed[p].is_none()) {
        let mut by_value: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for &m in &g.members {
            by_value.entry(number_at(tensors, m, place)).or_default().push(m);
        }
        if by_value.len() < 2 {
            continue;
        }
        let parts: Vec<Vec<Histogram>> = by_value.values().map(|ms| summed(tensors, ms)).collect();
        let gain_pp = 100.0 * sharing_cost_bits(&parts) / total_bits.max(1.0);
        if gain_pp >= SPLIT_GAIN_PP && best.as_ref().is_none_or(|b| gain_pp > b.0) {
            best = Some((gain_pp, place, by_value));
        }
    }
    match best {
        None => out.push(g),
        Some((_, place, by_value)) => {
            for (value, members) in by_value {
                let mut p = pattern.clone();
                p.fixed[place] = Some(value);
                split(tensors, Group { dtype: g.dtype, patterns: vec![p], members }, out);
            }
        }
    }
}

/// The suggested classes for `tensors`, largest first.
pub fn suggest_classes(tensors: &[TensorSummary]) -> Vec<SuggestedClass> {
    // 1. One group per dtype and name pattern.
    let mut by_pattern: BTreeMap<(DType, Pattern), Vec<usize>> = BTreeMap::new();
    for (i, t) in tensors.iter().enumerate() {
        if t.hists.iter().all(|h| h.total() == 0) {
            continue;
        }
        by_pattern.entry((t.dtype, Pattern::of(&tokens(&t.name)))).or_default().push(i);
    }
    // 2. Split where a number names different kinds.
    let mut groups = Vec::new();
    for ((dtype, pattern), members) in by_pattern {
        split(tensors, Group { dtype, patterns: vec![pattern], members }, &mut groups);
    }
    // 3. Merge alike groups of one dtype, cheapest first.
    let mut sums: Vec<Vec<Histogram>> = groups.iter().map(|g| summed(tensors, &g.members)).collect();
    loop {
        let mut cheapest: Option<(f64, usize, usize)> = None;
        for a in 0..groups.len() {
            for b in a + 1..groups.len() {
                if groups[a].dtype != groups[b].dtype || sums[a].len() != sums[b].len() {
                    continue;
                }
                let pair = [sums[a].clone(), sums[b].clone()];
                let cost_pp = 100.0 * sharing_cost_bits(&pair) / (bits_of(&sums[a]) + bits_of(&sums[b])).max(1.0);
                if cost_pp < MERGE_COST_PP && cheapest.is_none_or(|c| cost_pp < c.0) {
                    cheapest = Some((cost_pp, a, b));
                }
            }
        }
        let Some((_, a, b)) = cheapest else { break };
        let gb = groups.remove(b);
        let sb = sums.remove(b);
        groups[a].patterns.extend(gb.patterns);
        groups[a].members.extend(gb.members);
        for (x, y) in sums[a].iter_mut().zip(&sb) {
            x.merge(y);
        }
    }
    let mut out: Vec<SuggestedClass> = groups
        .iter()
        .zip(&sums)
        .map(|(g, s)| {
            let mut patterns = g.patterns.clone();
            patterns.sort();
            let names: Vec<String> = patterns.iter().map(Pattern::name).collect();
            let regexes: Vec<String> = patterns.iter().map(Pattern::regex).collect();
            let selector = if regexes.len() == 1 { format!("^{}$", regexes[0]) } else { format!("^(?:{})$", regexes.join("|")) };
            SuggestedClass {
                name: names.join("+"),
                selector,
                dtype: g.dtype,
                tensors: g.members.len(),
                bytes: s.iter().map(Histogram::total).sum(),
            }
        })
        .collect();
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    out
}

/// `--class NAME --match REGEX` pairs for a shell, single-quoted.
pub fn as_train_arguments(classes: &[SuggestedClass]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    classes.iter().map(|c| format!("--class {} --match {}", quote(&c.name), quote(&c.selector))).collect::<Vec<_>>().join(" \\\n    ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(center: u8, n: u64) -> Vec<Histogram> {
        let mut h = Histogram::new();
        for d in 0..8u8 {
            h.counts[center.wrapping_add(d) as usize] += n >> d;
        }
        vec![h]
    }

    fn t(name: &str, h: Vec<Histogram>) -> TensorSummary {
        TensorSummary { name: name.into(), dtype: DType::U8, hists: h }
    }

    #[test]
    fn numbers_that_name_kinds_split_layers_do_not_and_alike_kinds_merge() {
        let mut ts = Vec::new();
        for layer in 0..4 {
            for shard in 0..2 {
                // ffn1 and ffn2 differ; layers and shards barely.
                ts.push(t(&format!("layer{layer}.ffn1.shard{shard}"), hist(10, 1 << 16)));
                ts.push(t(&format!("layer{layer}.ffn2.shard{shard}"), hist(100, 1 << 16)));
                // Weights of q and k: alike, names of different patterns.
                ts.push(t(&format!("layer{layer}.q_weight"), hist(200, 1 << 14)));
                ts.push(t(&format!("layer{layer}.k_weight"), hist(200, 1 << 14)));
            }
        }
        let s = suggest_classes(&ts);
        let names: Vec<&str> = s.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["layer#.ffn1.shard#", "layer#.ffn2.shard#", "layer#.k_weight+layer#.q_weight"], "{s:?}");
        let re = regex::Regex::new(&s[0].selector).unwrap();
        assert!(re.is_match("layer7.ffn1.shard3") && !re.is_match("layer7.ffn2.shard3") && !re.is_match("xlayer7.ffn1.shard3"));
        assert!(regex::Regex::new(&s[2].selector).unwrap().is_match("layer3.q_weight"));
        assert_eq!((s[0].tensors, s[2].tensors), (8, 16));
        let args = as_train_arguments(&s);
        assert!(args.starts_with(r"--class 'layer#.ffn1.shard#' --match '^layer\d+\.ffn1\.shard\d+$'"), "{args}");
    }
}
