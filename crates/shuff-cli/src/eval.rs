//! `shuff eval`: a codebook set measured on tensors, per tensor, class and in total.

use crate::tensors::TensorFile;
use crate::{load_book, progress};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use regex::Regex;
use serde::Serialize;
use shuff::measure::{self, measure, Sizes};
use shuff::{ClassSelector, CodebookSet};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn run(
    book: &Path,
    filter: Option<&str>,
    class: Option<&str>,
    summary: bool,
    json: bool,
    inputs: &[PathBuf],
) -> Result<()> {
    let set = load_book(book)?;
    let filter = filter
        .map(Regex::new)
        .transpose()
        .context("bad --match regex")?;
    let report = eval(&set, filter.as_ref(), class, inputs)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        // The class-code column only where some class has a family that can differ from it.
        let families = set.classes().any(|(_, c)| c.family.members().len() > 1);
        print_eval(&report, summary, families);
    }
    Ok(())
}

#[derive(Serialize)]
struct TensorRow {
    file: String,
    name: String,
    class: String,
    dtype: String,
    layout: String,
    sizes: Sizes,
    percent: measure::Percent,
}

#[derive(Serialize)]
struct Summary {
    sizes: Sizes,
    percent: measure::Percent,
}

#[derive(Serialize)]
struct EvalReport {
    book: String,
    book_version: u32,
    tensors: Vec<TensorRow>,
    classes: BTreeMap<String, Summary>,
    total: Summary,
}

fn summary(s: Sizes) -> Summary {
    Summary { sizes: s, percent: s.percent() }
}

fn eval(
    set: &CodebookSet,
    filter: Option<&Regex>,
    forced: Option<&str>,
    inputs: &[PathBuf],
) -> Result<EvalReport> {
    let map = match forced {
        Some(c) => {
            set.get(c).with_context(|| format!("class `{c}` is not in the codebook set"))?;
            ClassSelector::new(&[(c, "")])?
        }
        None => ClassSelector::from_set(set)?,
    };
    let mut rows = Vec::new();
    let pb = progress(inputs.len(), "eval");
    for path in inputs {
        let file = TensorFile::open(path)?;
        file.for_each_group(filter, |tensors| {
            let mut part: Vec<TensorRow> = tensors
                .par_iter()
                .filter_map(|t| map.class_of(&t.name).map(|c| (c, t)))
                .map(|(class, t)| {
                    let cb = set.get(class).expect("selectors come from the set");
                    let book = &cb.codebook;
                    if book.dtype() != t.dtype {
                        bail!("tensor `{}` is {} but class `{class}` codes {}", t.name, t.dtype, book.dtype());
                    }
                    let max_len = measure::reference_max_len(book, Some(&cb.provenance));
                    // As the container codes it: pieces of a segment, members picked per piece.
                    let mut sizes = measure(
                        &cb.family,
                        &t.data,
                        max_len,
                        shuff_container::SEGMENT_BYTES as usize,
                    )
                    .with_context(|| format!("tensor `{}`", t.name))?;
                    // The encoder's own output, to the byte: what `encode`/`compress` store for it.
                    sizes.stored_bits =
                        8 * shuff_container::tensors::stored_len(&cb.family, &t.data)
                            .with_context(|| format!("tensor `{}`", t.name))?;
                    Ok(TensorRow {
                        file: file.short_name(),
                        name: t.name.clone(),
                        class: class.to_string(),
                        dtype: t.dtype.to_string(),
                        layout: book.layout().to_string(),
                        percent: sizes.percent(),
                        sizes,
                    })
                })
                .collect::<Result<_>>()?;
            rows.append(&mut part);
            Ok(())
        })?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    if rows.is_empty() {
        bail!("no tensor matched any class of the codebook set");
    }
    let mut classes: BTreeMap<String, Sizes> = BTreeMap::new();
    let mut total = Sizes::default();
    for r in &rows {
        classes.entry(r.class.clone()).or_default().add(&r.sizes);
        total.add(&r.sizes);
    }
    Ok(EvalReport {
        book: set.name.clone(),
        book_version: set.version,
        tensors: rows,
        classes: classes.into_iter().map(|(k, v)| (k, summary(v))).collect(),
        total: summary(total),
    })
}

fn print_eval(r: &EvalReport, summary_only: bool, families: bool) {
    let mut header = vec![
        "tensor",
        "elements",
        "shannon %",
        "huffman %",
        "+code %",
        "fixed %",
        "fix-huf pp",
        "fix-sha pp",
        "stored %",
    ];
    if families {
        header.extend(["class code %", "family gain pp"]);
    }
    let mut t = crate::table::new(&header, 1);
    let mut line = |name: String, s: &Sizes| {
        let p = s.percent();
        let mut row = vec![name, s.elements.to_string()];
        row.extend([p.shannon, p.huffman, p.huffman_with_code, p.fixed].map(|v| format!("{v:.2}")));
        row.extend([p.fixed_vs_huffman_pp, p.fixed_vs_shannon_pp].map(|v| format!("{v:+.3}")));
        row.push(format!("{:.2}", p.stored));
        if families {
            row.extend([
                format!("{:.2}", p.class_code),
                format!("{:+.3}", p.family_gain_pp),
            ]);
        }
        t.add_row(row);
    };
    if !summary_only {
        for tensor in &r.tensors {
            line(format!("{}:{}", tensor.file, tensor.name), &tensor.sizes);
        }
    }
    for (c, s) in &r.classes {
        line(format!("class {c}"), &s.sizes);
    }
    line("total".into(), &r.total.sizes);
    println!("{t}");
}
