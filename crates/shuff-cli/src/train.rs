//! `shuff train`: codebooks from safetensors files, one file per batch, with the library's trainer.

use crate::tensors::{selector_from_args, TensorFile};
use crate::{progress, write_atomic};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use shuff::{ClassSelector, CodebookSet, FamilyOptions, Layout, Rule, Trainer};
use std::path::{Path, PathBuf};

#[allow(clippy::too_many_arguments)] // the command's options, one by one
pub fn run(
    layout: Layout,
    max_len: Option<u32>,
    classes: &[String],
    matches: &[String],
    rule: &str,
    family: &FamilyOptions,
    name: &str,
    output: &Path,
    binary: Option<&Path>,
    c_header: Option<&Path>,
    inputs: &[PathBuf],
) -> Result<()> {
    let rule = parse_rule(rule)?;
    let map = selector_from_args(classes, matches)?;
    // 0: the layout's default, the library's rule (shuff::Trainer::new).
    let max_len = max_len.unwrap_or(0);
    let set = train(&map, layout, max_len, rule, family, name, inputs)?;
    write_atomic(output, set.to_json().as_bytes())?;
    if let Some(p) = binary {
        write_atomic(p, &set.to_bytes())?;
    }
    if let Some(p) = c_header {
        write_atomic(p, set.to_c_header().as_bytes())?;
    }
    for (name, c) in set.classes() {
        let p = &c.provenance;
        eprintln!(
                    "{name}: {}/{} {} batches, {} symbols, entropy {} bits, expected code length {} bits, fingerprint {}",
                    c.codebook.dtype(),
                    c.codebook.layout(),
                    p.batches,
                    p.symbols,
                    fmt_bits(&p.training_entropy_bits),
                    fmt_bits(&p.expected_code_len_bits),
                    c.family.fingerprint()
                );
        for (j, made) in p.members.iter().enumerate().skip(1) {
            eprintln!("  member {j}: {made}");
        }
    }
    eprintln!("wrote {}", output.display());
    Ok(())
}

fn parse_rule(s: &str) -> Result<Rule> {
    if s == "average" {
        return Ok(Rule::Average);
    }
    if let Some(a) = s.strip_prefix("ema:") {
        let a: f64 = a.parse().context("bad EMA weight")?;
        if !(0.0..=1.0).contains(&a) {
            bail!("EMA weight {a} is outside 0..=1");
        }
        return Ok(Rule::Ema(a));
    }
    bail!("unknown --rule `{s}` (average or ema:ALPHA)")
}

fn fmt_bits(v: &[f64]) -> String {
    v.iter().map(|b| format!("{b:.3}")).collect::<Vec<_>>().join("/")
}

fn train(
    map: &ClassSelector,
    layout: Layout,
    max_len: u32,
    rule: Rule,
    family: &FamilyOptions,
    name: &str,
    inputs: &[PathBuf],
) -> Result<CodebookSet> {
    let mut trainer = Trainer::new(max_len)
        .with_rule(rule)
        .with_family(family.clone());
    let pb = progress(inputs.len(), "train");
    for (batch, path) in inputs.iter().enumerate() {
        let file = TensorFile::open(path)?;
        file.for_each_group(None, |tensors| {
            let assigned: Vec<_> = tensors.iter().filter_map(|t| map.class_of(&t.name).map(|c| (c, t))).collect();
            let hists: Vec<_> = assigned
                .par_iter()
                .map(|(c, t)| {
                    shuff::stats::stream_histograms(t.dtype, layout, &t.data)
                        .map(|h| (*c, t, h))
                        .with_context(|| format!("{}: tensor `{}`", file.path, t.name))
                })
                .collect::<Result<_>>()?;
            for (class, t, h) in hists {
                trainer.add_histograms(class, t.dtype, layout, batch as u64, &h, &file.short_name()).with_context(|| format!("{}: tensor `{}`", file.path, t.name))?;
            }
            Ok(())
        })?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let mut set = CodebookSet::new(name);
    for (order, (class, re)) in map.rules().iter().enumerate() {
        let (family, mut prov) = trainer
            .build_family(class)
            .with_context(|| format!("class `{class}` matched no tensor"))?;
        prov.selector = re
            .as_ref()
            .map(|r| r.as_str().to_string())
            .unwrap_or_default();
        // Later commands try the classes in this order, as train did (shuff::classes).
        prov.order = order as u32;
        set.insert_family(class.clone(), family, prov);
    }
    Ok(set)
}

