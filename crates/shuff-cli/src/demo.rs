//! `shuff demo`: the main job on the committed sample, built into the binary.

use crate::tensors::TensorFile;
use crate::{analyze, bench, load_book};
use anyhow::{bail, Context, Result};
use regex::Regex;
use shuff::Layout;
use std::path::{Path, PathBuf};

/// `shuff demo`: see the command's help.
/// The committed sample (five MiniLM fine-tuning steps, 3.7 MB), built into the binary so that
/// `shuff demo` runs anywhere, e.g. after `cargo install`, not only in the repository.
const SAMPLE: [(&str, &[u8]); 5] = [
    ("step000.safetensors", include_bytes!("../../../tests/data/minilm-sample/step000.safetensors")),
    ("step001.safetensors", include_bytes!("../../../tests/data/minilm-sample/step001.safetensors")),
    ("step002.safetensors", include_bytes!("../../../tests/data/minilm-sample/step002.safetensors")),
    ("step003.safetensors", include_bytes!("../../../tests/data/minilm-sample/step003.safetensors")),
    ("step004.safetensors", include_bytes!("../../../tests/data/minilm-sample/step004.safetensors")),
];

pub fn run(data: Option<PathBuf>, output: &Path) -> Result<()> {
    let embedded;
    let data = match data {
        Some(d) => d,
        None => {
            embedded = tempfile::tempdir().context("creating a directory for the built-in sample")?;
            for (name, bytes) in SAMPLE {
                std::fs::write(embedded.path().join(name), bytes)?;
            }
            embedded.path().to_path_buf()
        }
    };
    let mut steps: Vec<PathBuf> = std::fs::read_dir(&data)
        .with_context(|| format!("reading the sample capture {} (give --data DIR)", data.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    steps.sort();
    if steps.len() < 2 {
        bail!("{} holds {} step files; the demo needs at least two", data.display(), steps.len());
    }
    println!("shuff demo: real MiniLM fine-tuning tensors (bf16), {} steps × 2 layers × 6 kinds × 8 shards (tests/data/minilm-sample)", steps.len());
    println!("Codebooks: average of the per-step distributions of steps 0..{}; measured on step {} (never seen in training).", steps.len() - 2, steps.len() - 1);
    println!("(The committed sample keeps 24 rows of each tensor, so each shard is small and its own Huffman code fits it");
    println!(" unusually well; on full captures, with codebook families, every class is within 0.24 pp: README, \"Results\".)");
    let naming = analyze::Naming {
        group: Regex::new(r"^layer\d+\.([A-Za-z0-9_]+)\.")?,
        layer: Regex::new(r"layer\d+")?,
        shard: Regex::new(r"shard\d+")?,
    };
    let report = analyze::analyze(
        &steps,
        &naming,
        &[Layout::Bytes, Layout::Exponent],
        &shuff::FamilyOptions::default(),
        output,
    )?;
    println!("{}", analyze::table(&report));

    let held_out = steps.last().expect("≥ 2 steps");
    println!("Single-stage compression of the held-out step with those codebooks (no codebook in the messages):");
    for layout in ["bytes", "exponent"] {
        let set = load_book(&output.join(format!("book-{layout}.json")))?;
        let file = std::fs::read(held_out)?;
        let (packed, _) = shuff_container::compress(&file, shuff_container::Coding::Set(&set), Vec::new(), &|_| ())?;
        let restored = shuff_container::Container::open(&packed)?.restore_to(Vec::new(), &|_| ())?;
        if restored != file {
            bail!("demo round trip differs from the original");
        }
        // The file carries its codebook set so that it restores alone; messages in a collective
        // carry none, so the set is counted apart.
        let set_bytes = set.to_bytes().len() + shuff_container::format::SEGMENT_HEADER_BYTES as usize;
        let coded = packed.len() - set_bytes;
        println!(
            "  {layout:<8}: {} → {coded} bytes ({:.2}% smaller) + {set_bytes} bytes of codebook set in the file, restored bit for bit",
            file.len(),
            100.0 * (1.0 - coded as f64 / file.len() as f64)
        );
    }

    println!("\nSpeed on the held-out ffn1 activations, one core, medians (huff0 = zstd's Huffman coder, same bytes):");
    let file = TensorFile::open(held_out)?;
    let re = Regex::new(r"\.ffn1_act\.x")?;
    for layout in ["bytes", "exponent"] {
        let set = load_book(&output.join(format!("book-{layout}.json")))?;
        let book = set
            .family("ffn1_act")
            .context("the sample has ffn1_act tensors")?;
        let source: Vec<u8> = file
            .tensors(Some(&re))?
            .iter()
            .flat_map(|t| t.data.iter().copied())
            .collect();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
        let rows = pool.install(|| ["4KiB", "64KiB"].iter().map(|s| bench::bench_size(&book, &source, bench::parse_size(s)?, 1, 9)).collect::<Result<Vec<_>>>())?;
        println!("  {layout} layout:");
        bench::print_rows(&rows);
    }
    println!("\nReport: {}/report.html (plots), report.md, report.json", output.display());
    Ok(())
}

