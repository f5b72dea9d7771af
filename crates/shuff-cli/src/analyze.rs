//! `shuff analyze`: the paper's study on a capture (one safetensors file per step), as a report.
//!
//! Per tensor class and layout: Shannon bound, per-shard three-stage Huffman (with and without
//! sending its code) and the single-stage fixed codebook trained on all steps but the last and
//! measured on the last — with the same trainer and the same [`measure`] as `shuff train` +
//! `shuff eval`, so the numbers are identical. Then how alike the tensors are (KL divergence across
//! layers, shards and steps), how the fixed code's excess grows with the distance in steps between
//! training and use, and what a maximum code length costs.

use shuff::measure::{measure, Percent, Sizes};
use crate::svg;
use crate::tensors::TensorFile;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use regex::Regex;
use serde::Serialize;
use shuff::stats::{stream_histograms, Distribution, Histogram};
use shuff::train::three_stage;
use shuff::suggest::{as_train_arguments, suggest_classes, TensorSummary};
use shuff::{huffman, Codebook, CodebookSet, DType, FamilyOptions, Layout, Trainer};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// How tensor names map to class, layer and shard.
pub struct Naming {
    pub group: Regex,
    pub layer: Regex,
    pub shard: Regex,
}

impl Naming {
    fn capture(re: &Regex, name: &str) -> Option<String> {
        let c = re.captures(name)?;
        Some(c.get(1).or_else(|| c.get(0))?.as_str().to_string())
    }
}

/// A regex selecting exactly the tensors whose `group` capture is `class`: the group regex with its
/// first capturing group replaced by the class literally. Stored in the codebooks `analyze` writes,
/// so that `shuff eval` / `compress` assign tensors to the same classes.
pub fn selector_for(group: &str, class: &str) -> String {
    let b = group.as_bytes();
    let (mut i, mut in_class) = (0, false);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' => in_class = true,
            b']' => in_class = false,
            b'(' if !in_class && b.get(i + 1) != Some(&b'?') => {
                // Find the matching parenthesis.
                let (mut depth, mut j, mut cls) = (0, i, false);
                while j < b.len() {
                    match b[j] {
                        b'\\' => j += 1,
                        b'[' => cls = true,
                        b']' => cls = false,
                        b'(' if !cls => depth += 1,
                        b')' if !cls => {
                            depth -= 1;
                            if depth == 0 {
                                return format!("{}({}){}", &group[..i], regex::escape(class), &group[j + 1..]);
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                break;
            }
            _ => {}
        }
        i += 1;
    }
    regex::escape(class)
}

/// One tensor's statistics in one layout.
struct TensorStats {
    step: usize,
    class: String,
    layer: String,
    shard: String,
    dtype: DType,
    hists: Vec<Histogram>,
    /// Per-shard Huffman payload bits (max length = the layout's default).
    huffman_bits: u64,
    bytes: usize,
}

#[derive(Serialize)]
pub struct ClassReport {
    pub dtype: String,
    pub sizes: Sizes,
    pub percent: Percent,
    /// Labels and KL(row ‖ column) in bits per element, per grouping.
    pub kl_layers: (Vec<String>, Vec<Vec<f64>>),
    pub kl_shards: (Vec<String>, Vec<Vec<f64>>),
    pub kl_steps: (Vec<String>, Vec<Vec<f64>>),
    /// (distance in steps, mean excess of a one-step codebook over per-shard Huffman, pp).
    pub excess_by_distance: Vec<(usize, f64)>,
    /// (max code length, compressibility of the fixed codebook on the last step, %), and the
    /// same with an unlimited-length code.
    pub by_max_len: Vec<(u32, f64)>,
    pub unlimited: f64,
    /// Symbols per code length of the trained codebook, first stream that is coded.
    pub code_length_counts: Vec<u64>,
    /// Probability of each symbol of the main stream (the exponent stream where there is one),
    /// per layer, averaged over shards and steps.
    pub layer_distributions: Vec<(String, Vec<f64>)>,
}

#[derive(Serialize)]
pub struct LayoutReport {
    pub layout: String,
    pub classes: BTreeMap<String, ClassReport>,
    pub total: (Sizes, Percent),
}

#[derive(Serialize)]
pub struct Report {
    pub inputs: Vec<String>,
    pub trained_on: Vec<String>,
    pub held_out: String,
    pub layouts: Vec<LayoutReport>,
    /// Classes that fit the data (`shuff::suggest`), from every tensor of every step.
    pub suggested_classes: Vec<shuff::suggest::SuggestedClass>,
    /// The same as `--class/--match` arguments for `shuff train`.
    pub suggested_train_arguments: String,
    pub seconds: f64,
}

/// KL divergence in bits with `q` floored at 1e-9 per symbol (codebooks give every symbol a code,
/// so an unseen symbol costs a long code, not infinity).
fn kl(p: &Distribution, q: &Distribution) -> f64 {
    p.p.iter().zip(&q.p).filter(|(&a, _)| a > 0.0).map(|(&a, &b)| a * (a / b.max(1e-9)).log2()).sum()
}

/// KL matrix between groups of tensors, summed over streams (bits per element).
fn kl_matrix<'a>(items: impl Iterator<Item = (&'a str, &'a [Histogram])>) -> (Vec<String>, Vec<Vec<f64>>) {
    let mut groups: BTreeMap<String, Vec<Histogram>> = BTreeMap::new();
    for (key, hists) in items {
        let g = groups.entry(key.to_string()).or_insert_with(|| vec![Histogram::new(); hists.len()]);
        for (a, h) in g.iter_mut().zip(hists) {
            a.merge(h);
        }
    }
    let labels: Vec<String> = groups.keys().cloned().collect();
    let dists: Vec<Vec<Distribution>> = groups.values().map(|hs| hs.iter().filter_map(Histogram::distribution).collect()).collect();
    let m = dists.iter().map(|p| dists.iter().map(|q| p.iter().zip(q).map(|(a, b)| kl(a, b)).sum()).collect()).collect();
    (labels, m)
}

/// Sorts labels like "layer10" after "layer9".
fn natural_key(s: &str) -> (String, u64) {
    let digits: String = s.chars().rev().take_while(char::is_ascii_digit).collect::<Vec<_>>().into_iter().rev().collect();
    (s[..s.len() - digits.len()].to_string(), digits.parse().unwrap_or(0))
}

fn sorted_matrix((labels, m): (Vec<String>, Vec<Vec<f64>>)) -> (Vec<String>, Vec<Vec<f64>>) {
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by_key(|&i| natural_key(&labels[i]));
    (order.iter().map(|&i| labels[i].clone()).collect(), order.iter().map(|&i| order.iter().map(|&j| m[i][j]).collect()).collect())
}

pub fn analyze(
    inputs: &[PathBuf],
    naming: &Naming,
    layouts: &[Layout],
    family: &FamilyOptions,
    out_dir: &Path,
) -> Result<Report> {
    let started = std::time::Instant::now();
    if inputs.len() < 2 {
        bail!("analyze needs at least two steps: codebooks are trained on all but the last");
    }
    let last = inputs.len() - 1;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut reports = Vec::new();
    // Per layout: every tensor's histograms, one file at a time.
    let mut stats: Vec<Vec<TensorStats>> = layouts.iter().map(|_| Vec::new()).collect();
    let mut held_out: Option<TensorFile> = None;
    // Every tensor, whatever --group says, summed over steps: for the class suggestions.
    let mut summaries: BTreeMap<String, TensorSummary> = BTreeMap::new();
    for (step, path) in inputs.iter().enumerate() {
        let file = TensorFile::open(path)?;
        file.for_each_group(None, |tensors| {
            let counted: Vec<(String, DType, Vec<Histogram>)> = tensors
                .par_iter()
                .map(|t| Ok((t.name.clone(), t.dtype, stream_histograms(t.dtype, layouts[0], &t.data).with_context(|| format!("tensor `{}`", t.name))?)))
                .collect::<Result<_>>()?;
            for (name, dtype, hists) in counted {
                let s = summaries.entry(name.clone()).or_insert_with(|| TensorSummary { name, dtype, hists: vec![Histogram::new(); hists.len()] });
                if s.dtype == dtype && s.hists.len() == hists.len() {
                    s.hists.iter_mut().zip(&hists).for_each(|(a, h)| a.merge(h));
                }
            }
            for (li, &layout) in layouts.iter().enumerate() {
                let mut part: Vec<TensorStats> = tensors
                    .par_iter()
                    .filter_map(|t| {
                        let class = Naming::capture(&naming.group, &t.name)?;
                        Some((class, t))
                    })
                    .map(|(class, t)| {
                        let hists = stream_histograms(t.dtype, layout, &t.data).with_context(|| format!("tensor `{}`", t.name))?;
                        let huffman_bits = three_stage(&hists, layout.default_max_len())?.payload_bits;
                        Ok(TensorStats {
                            step,
                            layer: Naming::capture(&naming.layer, &t.name).unwrap_or_else(|| "-".into()),
                            shard: Naming::capture(&naming.shard, &t.name).unwrap_or_else(|| "-".into()),
                            class,
                            dtype: t.dtype,
                            hists,
                            huffman_bits,
                            bytes: t.data.len(),
                        })
                    })
                    .collect::<Result<_>>()?;
                stats[li].append(&mut part);
            }
            Ok(())
        })?;
        if step == last {
            held_out = Some(file);
        }
    }
    let held_out = held_out.expect("at least two inputs");
    for (li, &layout) in layouts.iter().enumerate() {
        let st = &stats[li];
        if st.is_empty() {
            bail!("no tensor name matches --group `{}`; the last step has: {}", naming.group.as_str(), held_out.some_names());
        }
        let max_len = layout.default_max_len();
        let classes: BTreeMap<&str, DType> = st.iter().map(|t| (t.class.as_str(), t.dtype)).collect();
        // Train exactly as `shuff train` does: batch = step, all steps but the last.
        let trainer_for = |max_len: u32, steps: &dyn Fn(usize) -> bool| -> Result<Trainer> {
            let mut tr = Trainer::new(max_len).with_family(family.clone());
            for t in st.iter().filter(|t| steps(t.step)) {
                tr.add_histograms(&t.class, t.dtype, layout, t.step as u64, &t.hists, &inputs[t.step].display().to_string())?;
            }
            Ok(tr)
        };
        let trainer = trainer_for(max_len, &|s| s < last)?;
        let mut set = CodebookSet::new("analyze");
        for &class in classes.keys() {
            let (members, mut prov) = trainer.build_family(class)?;
            prov.selector = selector_for(naming.group.as_str(), class);
            set.insert_family(class, members, prov);
        }
        // The held-out step, measured exactly as `shuff eval` measures it.
        let mut measured: Vec<(String, Sizes)> = Vec::new();
        held_out.for_each_group(None, |tensors| {
            let mut part: Vec<(String, Sizes)> = tensors
                .par_iter()
                .filter_map(|t| Naming::capture(&naming.group, &t.name).map(|c| (c, t)))
                .map(|(c, t)| {
                    let sizes = measure(
                        &set.family(&c).expect("trained"),
                        &t.data,
                        max_len,
                        shuff_container::SEGMENT_BYTES as usize,
                    )?;
                    Ok((c, sizes))
                })
                .collect::<Result<_>>()?;
            measured.append(&mut part);
            Ok(())
        })?;
        let mut class_sizes: BTreeMap<String, Sizes> = BTreeMap::new();
        let mut total = Sizes::default();
        for (c, s) in &measured {
            class_sizes.entry(c.clone()).or_default().add(s);
            total.add(s);
        }
        let steps = inputs.len();
        let mut class_reports = BTreeMap::new();
        for (&class, &dtype) in &classes {
            let of_class: Vec<&TensorStats> = st.iter().filter(|t| t.class == class).collect();
            let kl_layers = sorted_matrix(kl_matrix(of_class.iter().map(|t| (t.layer.as_str(), t.hists.as_slice()))));
            let kl_shards = sorted_matrix(kl_matrix(of_class.iter().map(|t| (t.shard.as_str(), t.hists.as_slice()))));
            let step_names: Vec<String> = (0..steps).map(|s| format!("step{s}")).collect();
            let kl_steps = sorted_matrix(kl_matrix(of_class.iter().map(|t| (step_names[t.step].as_str(), t.hists.as_slice()))));
            // Drift: a codebook from step s used on step s + d.
            let mut by_d: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
            for s in 0..steps {
                let book = trainer_for(max_len, &|x| x == s)?.build_class(class)?.0;
                for u in s + 1..steps {
                    let on: Vec<&&TensorStats> = of_class.iter().filter(|t| t.step == u).collect();
                    let original: u64 = on.iter().map(|t| 8 * t.bytes as u64).sum();
                    let fixed: u64 = on.iter().map(|t| book.coded_bits(&t.hists)).sum();
                    let huff: u64 = on.iter().map(|t| t.huffman_bits).sum();
                    let e = by_d.entry(u - s).or_default();
                    e.0 += 100.0 * (huff as f64 - fixed as f64) / original as f64;
                    e.1 += 1;
                }
            }
            // Maximum code length: codebooks from the same training, measured on the last step.
            let last_of_class: Vec<&&TensorStats> = of_class.iter().filter(|t| t.step == last).collect();
            let original: u64 = last_of_class.iter().map(|t| 8 * t.bytes as u64).sum();
            let dists = trainer.distributions(class)?;
            let mut by_max_len = Vec::new();
            for l in 8..=16 {
                let book = Codebook::from_distributions(dtype, layout, &dists, l)?;
                let bits: u64 = last_of_class.iter().map(|t| book.coded_bits(&t.hists)).sum();
                by_max_len.push((l, 100.0 * (1.0 - bits as f64 / original as f64)));
            }
            let unlimited_lengths: Vec<Vec<u8>> = dists.iter().map(|d| huffman::huffman_lengths(&shuff::codebook::floored_weights(d))).collect();
            let unlimited_bits: u64 = last_of_class
                .iter()
                .map(|t| t.hists.iter().zip(&unlimited_lengths).map(|(h, l)| h.counts.iter().zip(l).map(|(&c, &l)| c * u64::from(l)).sum::<u64>()).sum::<u64>())
                .sum();
            let book = set.codebook(class).expect("trained");
            let main_stream = layout.exponent_stream(dtype).map_or(0, |(s, _)| s);
            let mut code_length_counts = vec![0u64; 17];
            for &l in book.streams()[main_stream].lengths() {
                code_length_counts[usize::from(l)] += 1;
            }
            let mut per_layer: BTreeMap<String, Histogram> = BTreeMap::new();
            for t in &of_class {
                per_layer.entry(t.layer.clone()).or_default().merge(&t.hists[main_stream]);
            }
            let mut layer_distributions: Vec<(String, Vec<f64>)> = per_layer.into_iter().filter_map(|(l, h)| Some((l, h.distribution()?.p.to_vec()))).collect();
            layer_distributions.sort_by_key(|(l, _)| natural_key(l));
            let sizes = class_sizes.get(class).copied().unwrap_or_default();
            class_reports.insert(
                class.to_string(),
                ClassReport {
                    dtype: dtype.to_string(),
                    percent: sizes.percent(),
                    sizes,
                    kl_layers,
                    kl_shards,
                    kl_steps,
                    excess_by_distance: by_d.into_iter().map(|(d, (sum, n))| (d, sum / n as f64)).collect(),
                    by_max_len,
                    unlimited: 100.0 * (1.0 - unlimited_bits as f64 / original as f64),
                    code_length_counts,
                    layer_distributions,
                },
            );
        }
        crate::write_atomic(&out_dir.join(format!("book-{layout}.json")), set.to_json().as_bytes())?;
        reports.push(LayoutReport { layout: layout.to_string(), classes: class_reports, total: (total, total.percent()) });
    }
    let summaries: Vec<TensorSummary> = summaries.into_values().collect();
    let suggested_classes = suggest_classes(&summaries);
    let report = Report {
        inputs: inputs.iter().map(|p| p.display().to_string()).collect(),
        trained_on: inputs[..last].iter().map(|p| p.display().to_string()).collect(),
        held_out: inputs[last].display().to_string(),
        layouts: reports,
        suggested_train_arguments: as_train_arguments(&suggested_classes),
        suggested_classes,
        seconds: started.elapsed().as_secs_f64(),
    };
    crate::write_atomic(&out_dir.join("report.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    crate::write_atomic(&out_dir.join("report.md"), markdown(&report).as_bytes())?;
    crate::write_atomic(&out_dir.join("report.html"), html(&report).as_bytes())?;
    Ok(report)
}

/// The paper-style table: one row per class, per layout.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    for l in &r.layouts {
        writeln!(s, "\n{} layout — trained on {} steps, measured on {}", l.layout, r.trained_on.len(), short(&r.held_out)).unwrap();
        let mut t = crate::table::new(&["class", "Shannon %", "per-shard Huffman %", "+ code %", "single-stage fixed %", "fixed − Huffman pp", "fixed − Shannon pp"], 1);
        let rows = l.classes.iter().map(|(c, cr)| (c.as_str(), &cr.percent)).chain(std::iter::once(("**all**", &l.total.1)));
        for (c, p) in rows {
            t.add_row(std::iter::once(c.to_string()).chain(paper_row(p)).collect::<Vec<_>>());
        }
        writeln!(s, "{t}").unwrap();
    }
    s
}

/// A class's numbers in the paper-style table (report.md, the console and report.html alike):
/// Shannon, per-shard Huffman, + code, fixed (%), then fixed − Huffman and fixed − Shannon (pp).
fn paper_row(p: &Percent) -> [String; 6] {
    let pct = |v: f64| format!("{v:.2}");
    let pp = |v: f64| format!("{v:+.2}");
    [pct(p.shannon), pct(p.huffman), pct(p.huffman_with_code), pct(p.fixed), pp(p.fixed_vs_huffman_pp), pp(p.fixed_vs_shannon_pp)]
}

fn short(p: &str) -> String {
    Path::new(p).file_name().map_or(p.to_string(), |n| n.to_string_lossy().into_owned())
}

fn markdown(r: &Report) -> String {
    let mut s = String::from("# shuff analyze\n\nCompressibility = 1 − coded size / original size. ");
    writeln!(s, "Codebooks trained on {} (average of per-step distributions), measured on `{}`.", r.trained_on.iter().map(|p| format!("`{}`", short(p))).collect::<Vec<_>>().join(", "), short(&r.held_out)).unwrap();
    s.push_str(&table(r));
    for l in &r.layouts {
        writeln!(s, "\n## {} layout: drift and code length\n", l.layout).unwrap();
        let mut t = crate::table::new(&["class", "excess vs Huffman by step distance (pp)", "loss at max length 8 / 10 / 12 / 16 vs unlimited (pp)"], 3);
        for (c, cr) in &l.classes {
            let drift: Vec<String> = cr.excess_by_distance.iter().map(|(d, e)| format!("{d}: {e:+.2}")).collect();
            let at = |len: u32| cr.by_max_len.iter().find(|(l, _)| *l == len).map_or(f64::NAN, |(_, v)| v - cr.unlimited);
            t.add_row(vec![c.clone(), drift.join(", "), format!("{:+.3} / {:+.3} / {:+.3} / {:+.3}", at(8), at(10), at(12), at(16))]);
        }
        writeln!(s, "{t}").unwrap();
    }
    s.push_str(&suggestions(r));
    s
}

/// The suggested classes, as a table and as arguments to paste into `shuff train`.
pub fn suggestions(r: &Report) -> String {
    let mut s = String::from("\n## Suggested classes\n\nName patterns with the numbers taken out, split where a number names different kinds and merged where kinds are alike (`shuff::suggest`):\n\n");
    let mut t = crate::table::new(&["class", "dtype", "tensors", "bytes", "selector"], 2);
    for c in &r.suggested_classes {
        t.add_row(vec![c.name.clone(), c.dtype.to_string(), c.tensors.to_string(), c.bytes.to_string(), c.selector.clone()]);
    }
    writeln!(s, "{t}\n\n    shuff train --layout exponent \\\n    {} \\\n    -o book.json STEP…", r.suggested_train_arguments).unwrap();
    s
}

/// Classes that get plots of their own in report.html (the largest; the table lists them all):
/// a file with a thousand classes made a 1.2 GB report.
const MAX_PLOTTED_CLASSES: usize = 24;

const CSS: &str = "body{font-family:sans-serif;max-width:1340px;margin:auto;padding:1em}\
    table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th:first-child,td:first-child{text-align:left}\
    .plots{display:flex;flex-wrap:wrap;gap:8px}h2{margin-top:1.5em}";

/// report.html. Written with maud, which escapes every value it is given (tensor and class names
/// come from files); the charts are SVG built by `svg`, which escapes its own text.
fn html(r: &Report) -> String {
    use crate::svg::Style;
    use maud::{html, PreEscaped, DOCTYPE};
    let page = html! {
        (DOCTYPE)
        html {
            head { meta charset="utf-8"; title { "shuff analyze" } style { (PreEscaped(CSS)) } }
            body {
                h1 { "shuff analyze" }
                p {
                    "Codebooks trained on " (r.trained_on.len()) " step(s) (average of per-step distributions), measured on "
                    code { (short(&r.held_out)) } ". Compressibility = 1 − coded/original. Run took " (format!("{:.1}", r.seconds)) " s."
                }
                @for l in &r.layouts {
                    h2 { (l.layout) " layout" }
                    table {
                        tr { th { "class" } th { "Shannon %" } th { "per-shard Huffman %" } th { "+ code %" } th { "fixed %" } th { "fixed − Huffman pp" } th { "fixed − Shannon pp" } }
                        @for (c, p) in l.classes.iter().map(|(c, cr)| (c.as_str(), &cr.percent)).chain(std::iter::once(("all", &l.total.1))) {
                            tr { td { (c) } @for v in paper_row(p) { td { (v) } } }
                        }
                    }
                    @let plotted = plotted_classes(l);
                    @if plotted.len() < l.classes.len() {
                        p { "Plots show the " (plotted.len()) " largest of " (l.classes.len()) " classes." }
                    }
                    div.plots { (PreEscaped(overview_charts(l, &plotted))) }
                    p { small {
                        "Bars: the Shannon bound, each shard's own Huffman code (payload, then with the 128 bytes per stream of sending it), \
                        and the single-stage codebook. Drift: a codebook built from one step, used k steps later, against each shard's own code (0 = as good). \
                        Max code length: the fixed codebook built with a length limit, against the same code unlimited."
                    } }
                    @for (c, cr) in &plotted {
                        h3 { (l.layout) " — " (c) }
                        p { small {
                            "KL(row ‖ column) of the symbol distributions, bits per element: how much a code built for the column costs extra on the row. \
                            Small, uniform values are what makes one fixed codebook per class work."
                        } }
                        div.plots {
                            (PreEscaped(svg::heatmap(&format!("KL across layers, bits/element ({c})"), &cr.kl_layers.0, &cr.kl_layers.1)))
                            (PreEscaped(svg::heatmap(&format!("KL across shards ({c})"), &cr.kl_shards.0, &cr.kl_shards.1)))
                            (PreEscaped(svg::heatmap(&format!("KL across steps ({c})"), &cr.kl_steps.0, &cr.kl_steps.1)))
                            @let dist: Vec<(String, Vec<(f64, f64)>)> = cr.layer_distributions.iter().take(16).map(|(lay, p)| (lay.clone(), p.iter().enumerate().map(|(i, &v)| (i as f64, v)).collect())).collect();
                            (PreEscaped(svg::lines(&format!("Symbol distribution per layer ({c}, main stream)"), "symbol value", "probability", &dist, true, Style::Steps)))
                            @let lengths: Vec<String> = (1..=16).map(|l| l.to_string()).collect();
                            (PreEscaped(svg::bars(&format!("Code lengths of the trained codebook ({c})"), "symbols", &lengths, &[("symbols", cr.code_length_counts[1..].iter().map(|&v| v as f64).collect())])))
                        }
                    }
                }
            }
        }
    };
    page.into_string() + "\n"
}

/// The classes of a layout that get plots of their own: the [`MAX_PLOTTED_CLASSES`] largest, by name.
fn plotted_classes(l: &LayoutReport) -> Vec<(&String, &ClassReport)> {
    let mut plotted: Vec<(&String, &ClassReport)> = l.classes.iter().collect();
    plotted.sort_by_key(|(_, c)| std::cmp::Reverse(c.sizes.original_bits));
    plotted.truncate(MAX_PLOTTED_CLASSES);
    plotted.sort_by_key(|(c, _)| *c);
    plotted
}

/// A layout's three overview charts (SVG): compressibility by class, drift, max code length.
fn overview_charts(l: &LayoutReport, plotted: &[(&String, &ClassReport)]) -> String {
    use crate::svg::Style;
    let cats: Vec<String> = plotted.iter().map(|(c, _)| (*c).clone()).collect();
    let col = |f: &dyn Fn(&Percent) -> f64| plotted.iter().map(|(_, c)| f(&c.percent)).collect::<Vec<f64>>();
    let mut s = svg::bars(
        &format!("Compressibility by class ({})", l.layout),
        "%",
        &cats,
        &[("Shannon", col(&|p| p.shannon)), ("Huffman", col(&|p| p.huffman)), ("Huffman + code", col(&|p| p.huffman_with_code)), ("single-stage", col(&|p| p.fixed))],
    );
    let drift: Vec<(String, Vec<(f64, f64)>)> = plotted.iter().map(|(c, cr)| ((*c).clone(), cr.excess_by_distance.iter().map(|&(d, e)| (d as f64, e)).collect())).collect();
    s += &svg::lines(&format!("Fixed − Huffman vs steps between training and use ({})", l.layout), "steps", "pp", &drift, false, Style::Lines);
    // From 10 bits: 8 and 9 cost whole points and would flatten the interesting part (report.md has them).
    let lens: Vec<(String, Vec<(f64, f64)>)> = plotted.iter().map(|(c, cr)| ((*c).clone(), cr.by_max_len.iter().filter(|&&(m, _)| m >= 10).map(|&(m, v)| (f64::from(m), v - cr.unlimited)).collect())).collect();
    s += &svg::lines(&format!("Max code length: compressibility vs unlimited ({})", l.layout), "max code length (bits)", "pp", &lens, false, Style::Lines);
    s
}

/// How `analyze` orders its inputs into steps.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum StepOrder {
    /// Command-line order.
    Given,
    /// File names in natural order (step2 before step10).
    Name,
    /// The files' safetensors metadata "step" value.
    Metadata,
}

/// Orders capture files into steps (see `analyze --step-order`).
pub fn order_steps(inputs: &mut [PathBuf], order: StepOrder) -> Result<()> {
    match order {
        StepOrder::Given => {}
        StepOrder::Name => {
            // Natural order: runs of digits compare as numbers.
            let re = Regex::new(r"\d+|\D+").expect("valid regex");
            inputs.sort_by_cached_key(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                re.find_iter(&name)
                    .map(|m| m.as_str().parse::<u64>().map_or((1, 0, m.as_str().to_string()), |n| (0, n, String::new())))
                    .collect::<Vec<_>>()
            });
        }
        StepOrder::Metadata => {
            let mut keyed = Vec::with_capacity(inputs.len());
            for p in inputs.iter() {
                // The header only (checked against the file's size), not the whole file.
                let source = shuff_container::source::FileSource::open(p).with_context(|| format!("reading {}", p.display()))?;
                let (header, _) = shuff_container::tensors::read_source_header(&source).with_context(|| format!("{} is not a safetensors file", p.display()))?;
                let json: serde_json::Value = serde_json::from_slice(&header[8..]).context("safetensors JSON")?;
                let step = json["__metadata__"]["step"].as_str().and_then(|s| s.parse::<u64>().ok());
                keyed.push((step.with_context(|| format!("{} has no numeric \"step\" in its metadata", p.display()))?, p.clone()));
            }
            keyed.sort();
            for (slot, (_, p)) in inputs.iter_mut().zip(keyed) {
                *slot = p;
            }
        }
    }
    Ok(())
}

