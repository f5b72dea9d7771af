//! `shuff`: train fixed Huffman codebooks for tensor classes and measure them on real tensors.

mod analyze;
mod bench;
mod files;
mod huff0;
mod inspect;
mod svg;
mod tensors;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use shuff::measure::{self, measure, Sizes};
use rayon::prelude::*;
use regex::Regex;
use serde::Serialize;
use shuff::{CodebookSet, Layout, Rule, Trainer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use shuff::ClassSelector;
use tensors::{selector_from_args, TensorFile};

#[derive(Parser)]
#[command(name = "shuff", version, about = "Single-stage Huffman compression of ML tensors with fixed, pre-trained codebooks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a codebook set from safetensors files, one file per batch/step, in order.
    ///
    /// Each class's codebook is the optimal length-limited Huffman code of the average of the
    /// per-batch symbol distributions (the paper's rule). Several classes fill one set with repeated
    /// `--class NAME --match REGEX` pairs; a tensor goes to the first class whose regex matches.
    ///
    /// Example (on the committed sample):
    ///
    ///     shuff train --layout exponent --class ffn1_act --match 'ffn1_act\.x' \
    ///         --class weight --match '\.weight' -o book.json \
    ///         tests/data/minilm-sample/step000.safetensors tests/data/minilm-sample/step001.safetensors
    #[command(verbatim_doc_comment)]
    Train {
        /// How element bytes become symbol streams: bytes (the paper's), planes, exponent.
        #[arg(long, default_value = "bytes")]
        layout: Layout,
        /// Maximum code length in bits (≤ 16; default 12 for bytes, 16 for planes/exponent).
        #[arg(long)]
        max_len: Option<u32>,
        /// Class name (repeatable; pairs with --match by position).
        #[arg(long = "class", required = true)]
        classes: Vec<String>,
        /// Regex over tensor names selecting the class's tensors (repeatable).
        #[arg(long = "match")]
        matches: Vec<String>,
        /// Combine batches by `average` (the paper's rule) or `ema:ALPHA`.
        #[arg(long, default_value = "average")]
        rule: String,
        /// Name stored in the set.
        #[arg(long, default_value = "shuff")]
        name: String,
        /// Output codebook set (JSON). `--binary` and `--c-header` write the other forms too.
        #[arg(short, long)]
        output: PathBuf,
        /// Also write the compact binary form here.
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Also write a C header with codes and lengths here.
        #[arg(long)]
        c_header: Option<PathBuf>,
        /// Input safetensors files, one per batch, in order.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Measure a codebook set on tensors: per tensor, per class and in total, the Shannon bound,
    /// each tensor's own Huffman code (with and without the cost of sending it) and the fixed
    /// codebook, as compressibility (1 − coded bits / original bits).
    ///
    /// Tensors are assigned to classes by the regex each class was trained with (or `--class`).
    Eval {
        /// Codebook set (JSON or binary).
        #[arg(long)]
        book: PathBuf,
        /// Only tensors whose name matches this regex.
        #[arg(long = "match")]
        filter: Option<String>,
        /// Use this class for every tensor instead of the classes' own selectors.
        #[arg(long)]
        class: Option<String>,
        /// Print only the per-class and total rows, not every tensor.
        #[arg(long)]
        summary: bool,
        /// Also measure the exponent-shift family: per tensor, the best of the class codebook moved
        /// by −1, 0, +1 exponent steps, picked from a 1/17 sample (exponent layout only).
        #[arg(long)]
        shift_family: bool,
        /// Machine-readable output (schema in docs/CLI.md).
        #[arg(long)]
        json: bool,
        /// Input safetensors files.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Measure encode/decode speed against huff0 (zstd's Huffman coder) and memcpy, side by side on
    /// the same real bytes: the class's tensors from INPUT, concatenated (and repeated to fill the
    /// larger sizes). Prints medians in GB/s, ratios to huff0 and compressed sizes.
    Bench {
        /// Codebook set (JSON or binary).
        #[arg(long)]
        book: PathBuf,
        /// Class whose codebook codes the messages.
        #[arg(long)]
        class: String,
        /// Tensors to use (default: the class's own selector).
        #[arg(long = "match")]
        filter: Option<String>,
        /// Message sizes.
        #[arg(long, value_delimiter = ',', default_value = "4KiB,64KiB,1MiB,16MiB")]
        sizes: Vec<String>,
        /// Threads for shuff (huff0 is single-threaded; compare it at 1).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Timing samples per measurement (the median is reported).
        #[arg(long, default_value_t = 15)]
        samples: usize,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Input safetensors file.
        input: PathBuf,
    },
    /// Compress the tensors of a safetensors file with one class's codebook (all tensors of the
    /// codebook's dtype, or those `--match` selects; the rest stay raw). The codebook is not stored:
    /// decode with the same book.
    Encode {
        /// Codebook set (JSON or binary).
        #[arg(long)]
        book: PathBuf,
        /// Class whose codebook codes the tensors.
        #[arg(long)]
        class: String,
        /// Only tensors whose name matches this regex.
        #[arg(long = "match")]
        filter: Option<String>,
        /// Replace OUTPUT if it exists.
        #[arg(short, long)]
        force: bool,
        /// Input safetensors file.
        input: PathBuf,
        /// Output file.
        output: PathBuf,
    },
    /// Restore a file written by `shuff encode`, bit for bit.
    Decode {
        /// The codebook set it was encoded with.
        #[arg(long)]
        book: PathBuf,
        /// Replace OUTPUT if it exists.
        #[arg(short, long)]
        force: bool,
        /// File written by `shuff encode`.
        input: PathBuf,
        /// Restored safetensors file.
        output: PathBuf,
    },
    /// Compress a whole safetensors model file into a self-contained `.shuff` file that carries its
    /// codebooks. Without `--book`, tensors are grouped by name with layer numbers taken out, and
    /// each group gets its own codebook in whichever layout codes it smallest.
    Compress {
        /// Use this codebook set's classes (by their selectors) instead of training from the file.
        #[arg(long)]
        book: Option<PathBuf>,
        /// Output file (written atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// Replace the output if it exists.
        #[arg(short, long)]
        force: bool,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// Input safetensors file.
        input: PathBuf,
    },
    /// Restore the original safetensors file from `shuff compress` output, bit for bit (checked
    /// with CRC-32s per tensor and for the whole file).
    Decompress {
        /// Output safetensors file (written atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// Replace the output if it exists.
        #[arg(short, long)]
        force: bool,
        /// Decode with this codebook set instead of the one the file carries (needed for files
        /// written by `shuff encode`, which carry none).
        #[arg(long)]
        book: Option<PathBuf>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// File written by `shuff compress` (or `shuff encode`).
        input: PathBuf,
    },
    /// List the tensors of a `shuff compress` file: class, layout, sizes and ratio.
    Inspect {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// File written by `shuff compress`.
        input: PathBuf,
    },
    /// The paper's study on a capture (one safetensors file per step, in order): per class and
    /// layout, Shannon / per-shard Huffman / single-stage fixed codebook (trained on all steps but
    /// the last, measured on the last), KL divergence across layers, shards and steps, drift with
    /// the distance in steps, and the cost of a maximum code length. Writes report.html (inline
    /// SVG plots), report.json, report.md and the trained codebooks (book-LAYOUT.json).
    Analyze {
        /// Regex over tensor names whose first capture group is the class.
        #[arg(long, default_value = r"^layer\d+\.([A-Za-z0-9_]+)\.")]
        group: String,
        /// Regex whose first capture group (or whole match) names the layer.
        #[arg(long, default_value = r"layer\d+")]
        layer: String,
        /// Regex whose first capture group (or whole match) names the shard.
        #[arg(long, default_value = r"shard\d+")]
        shard: String,
        /// Layouts to study.
        #[arg(long, value_delimiter = ',', default_value = "bytes,exponent")]
        layouts: Vec<Layout>,
        /// How the inputs are ordered into steps: `given` (command-line order), `name` (file names
        /// in natural order: step2 before step10), or `metadata` (the files' safetensors metadata
        /// "step" value, as tools/capture_minilm.py writes it). The last step is held out.
        #[arg(long, value_enum, default_value_t = StepOrder::Given)]
        step_order: StepOrder,
        /// Report directory.
        #[arg(short, long)]
        output: PathBuf,
        /// One safetensors file per step.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// The main job, on the committed real sample (MiniLM fine-tuning, 5 steps): trains codebooks
    /// on the first four steps, measures and compresses the fifth, prints the paper-style table and
    /// encode/decode speed beside huff0, and writes the report.
    Demo {
        /// Directory with the capture (step000.safetensors, …).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Report directory.
        #[arg(short, long, default_value = "shuff-demo-report")]
        output: PathBuf,
    },
    /// Print a shell completion script: `shuff completions bash > /etc/bash_completion.d/shuff`,
    /// `shuff completions zsh > ~/.zfunc/_shuff`, `shuff completions fish > ~/.config/fish/completions/shuff.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Convert a codebook set between its forms: JSON, compact binary, C header.
    Export {
        /// Codebook set (JSON or binary).
        #[arg(long)]
        book: PathBuf,
        /// Output format.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// How `analyze` orders its inputs into steps.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum StepOrder {
    /// Command-line order.
    Given,
    /// File names in natural order (step2 before step10).
    Name,
    /// The files' safetensors metadata "step" value.
    Metadata,
}

/// The forms of a codebook set.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ExportFormat {
    /// The readable JSON form, with provenance.
    Json,
    /// The compact binary form (`SHCB`).
    #[value(alias = "bin")]
    Binary,
    /// A C header with codes and lengths.
    #[value(alias = "h")]
    C,
}

fn main() {
    // SAFETY: called first thing, before any other thread exists; SIG_DFL is a valid action.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train { layout, max_len, classes, matches, rule, name, output, binary, c_header, inputs } => {
            let rule = parse_rule(&rule)?;
            let map = selector_from_args(&classes, &matches)?;
            // 0: the layout's default, the library's rule (shuff::Trainer::new).
            let max_len = max_len.unwrap_or(0);
            let set = train(&map, layout, max_len, rule, &name, &inputs)?;
            write_atomic(&output, set.to_json().as_bytes())?;
            if let Some(p) = binary {
                write_atomic(&p, &set.to_bytes())?;
            }
            if let Some(p) = c_header {
                write_atomic(&p, set.to_c_header().as_bytes())?;
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
                    c.codebook.fingerprint()
                );
            }
            eprintln!("wrote {}", output.display());
            Ok(())
        }
        Command::Eval { book, filter, class, summary, shift_family, json, inputs } => {
            let set = load_book(&book)?;
            let filter = filter.map(|f| Regex::new(&f)).transpose().context("bad --match regex")?;
            let report = eval(&set, filter.as_ref(), class.as_deref(), shift_family, &inputs)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_eval(&report, summary, shift_family);
            }
            Ok(())
        }
        Command::Bench { book, class, filter, sizes, threads, samples, json, input } => {
            let set = load_book(&book)?;
            let cb = set.get(&class).with_context(|| format!("class `{class}` is not in the codebook set"))?;
            let pattern = filter.unwrap_or_else(|| cb.provenance.selector.clone());
            let re = (!pattern.is_empty()).then(|| Regex::new(&pattern)).transpose().context("bad --match regex")?;
            let file = TensorFile::open(&input)?;
            let source: Vec<u8> = file
                .tensors(re.as_ref())?
                .iter()
                .filter(|t| t.dtype == cb.codebook.dtype())
                .flat_map(|t| t.data.iter().copied())
                .collect();
            if source.is_empty() {
                bail!("no {} tensor in {} matches `{pattern}`; it has: {}", cb.codebook.dtype(), input.display(), file.some_names());
            }
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build()?;
            let rows = pool.install(|| {
                sizes
                    .iter()
                    .map(|s| bench::bench_size(&cb.codebook, &source, bench::parse_size(s)?, threads.max(1), samples))
                    .collect::<Result<Vec<_>>>()
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                eprintln!(
                    "class {class}: {}/{}, {} bytes of real tensor data; huff0 in {} KiB blocks, single-threaded",
                    cb.codebook.dtype(),
                    cb.codebook.layout(),
                    source.len(),
                    huff0::BLOCK >> 10
                );
                bench::print_rows(&rows);
            }
            Ok(())
        }
        Command::Encode { book, class, filter, force, input, output } => {
            let set = load_book(&book)?;
            let filter = filter.map(|f| Regex::new(&f)).transpose().context("bad --match regex")?;
            files::encode(&set, &class, filter.as_ref(), &input, &output, force)
        }
        Command::Decode { book, force, input, output } => files::restore_file(&input, &output, Some(&load_book(&book)?), force, false),
        Command::Compress { book, output, force, quiet, input } => {
            let set = book.as_deref().map(load_book).transpose()?;
            files::compress_cmd(set.as_ref(), &input, &output, force, quiet)
        }
        Command::Decompress { output, force, book, quiet, input } => {
            let set = book.as_deref().map(load_book).transpose()?;
            files::restore_file(&input, &output, set.as_ref(), force, !quiet)
        }
        Command::Inspect { json, input } => files::inspect_cmd(&input, json),
        Command::Analyze { group, layer, shard, layouts, step_order, output, mut inputs } => {
            order_steps(&mut inputs, step_order)?;
            let naming = analyze::Naming {
                group: Regex::new(&group).context("bad --group regex")?,
                layer: Regex::new(&layer).context("bad --layer regex")?,
                shard: Regex::new(&shard).context("bad --shard regex")?,
            };
            let report = analyze::analyze(&inputs, &naming, &layouts, &output)?;
            println!("{}", analyze::table(&report));
            eprintln!("analyzed {} steps in {:.1} s; wrote {}/report.html, report.json, report.md", inputs.len(), report.seconds, output.display());
            Ok(())
        }
        Command::Demo { data, output } => demo(data, &output),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "shuff", &mut std::io::stdout());
            Ok(())
        }
        Command::Export { book, format, output } => {
            let set = load_book(&book)?;
            let bytes = match format {
                ExportFormat::Json => set.to_json().into_bytes(),
                ExportFormat::Binary => set.to_bytes(),
                ExportFormat::C => set.to_c_header().into_bytes(),
            };
            write_atomic(&output, &bytes)
        }
    }
}

/// Orders capture files into steps (see `analyze --step-order`).
fn order_steps(inputs: &mut [PathBuf], order: StepOrder) -> Result<()> {
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

fn demo(data: Option<PathBuf>, output: &Path) -> Result<()> {
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
    println!(" unusually well; on the full capture the single-stage gap is 0.36 pp in bytes layout: README, \"Results\".)");
    let naming = analyze::Naming {
        group: Regex::new(r"^layer\d+\.([A-Za-z0-9_]+)\.")?,
        layer: Regex::new(r"layer\d+")?,
        shard: Regex::new(r"shard\d+")?,
    };
    let report = analyze::analyze(&steps, &naming, &[Layout::Bytes, Layout::Exponent], output)?;
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
        println!("  {layout:<8}: {} → {} bytes ({:.2}% smaller), restored bit for bit", file.len(), packed.len(), 100.0 * (1.0 - packed.len() as f64 / file.len() as f64));
    }

    println!("\nSpeed on the held-out ffn1 activations, one core, medians (huff0 = zstd's Huffman coder, same bytes):");
    let file = TensorFile::open(held_out)?;
    let re = Regex::new(r"\.ffn1_act\.x")?;
    for layout in ["bytes", "exponent"] {
        let set = load_book(&output.join(format!("book-{layout}.json")))?;
        let book = set.codebook("ffn1_act").context("the sample has ffn1_act tensors")?;
        let source: Vec<u8> = file.tensors(Some(&re))?.iter().flat_map(|t| t.data.iter().copied()).collect();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
        let rows = pool.install(|| ["4KiB", "64KiB"].iter().map(|s| bench::bench_size(&book, &source, bench::parse_size(s)?, 1, 9)).collect::<Result<Vec<_>>>())?;
        println!("  {layout} layout:");
        bench::print_rows(&rows);
    }
    println!("\nReport: {}/report.html (plots), report.md, report.json", output.display());
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

/// Loads a codebook set, JSON or binary by content.
pub fn load_book(path: &Path) -> Result<CodebookSet> {
    let bytes = std::fs::read(path).with_context(|| format!("reading codebook {}", path.display()))?;
    CodebookSet::from_either(&bytes).with_context(|| format!("loading codebook {}", path.display()))
}

/// Writes `bytes` to `path` atomically (see `shuff_container::output`), replacing it if it exists.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(shuff_container::AtomicFile::create(path, true, &[])?.write_all_and_commit(bytes)?)
}

fn progress(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}").expect("valid template").progress_chars("=> "));
    pb.set_message(what.to_string());
    pb
}

fn train(map: &ClassSelector, layout: Layout, max_len: u32, rule: Rule, name: &str, inputs: &[PathBuf]) -> Result<CodebookSet> {
    let mut trainer = Trainer::new(max_len).with_rule(rule);
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
        let (book, mut prov) = trainer.build_class(class).with_context(|| format!("class `{class}` matched no tensor"))?;
        prov.selector = re.as_ref().map(|r| r.as_str().to_string()).unwrap_or_default();
        // Later commands try the classes in this order, as train did (shuff::classes).
        prov.order = order as u32;
        set.insert(class.clone(), book, prov);
    }
    Ok(set)
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

fn eval(set: &CodebookSet, filter: Option<&Regex>, forced: Option<&str>, shift_family: bool, inputs: &[PathBuf]) -> Result<EvalReport> {
    let families: BTreeMap<&str, Vec<shuff::Codebook>> = set
        .classes()
        .map(|(n, c)| (n, if shift_family { shuff::select::exponent_family(&c.codebook, &[-1, 0, 1]) } else { Vec::new() }))
        .collect();
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
                    let family = families.get(class).map(Vec::as_slice);
                    let sizes = measure(book, &t.data, max_len, family).with_context(|| format!("tensor `{}`", t.name))?;
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

fn print_eval(r: &EvalReport, summary_only: bool, shift: bool) {
    print!(
        "{:<40} {:>12} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "tensor", "elements", "shannon", "huffman", "+code", "fixed", "fix-huf pp", "fix-sha pp"
    );
    println!("{}", if shift { format!(" {:>9} {:>10} {:>8}", "shift±1", "shf-huf pp", "est.err") } else { String::new() });
    let line = |name: &str, s: &Sizes| {
        let p = s.percent();
        print!(
            "{:<40} {:>12} {:>8.2}% {:>8.2}% {:>8.2}% {:>8.2}% {:>+10.3} {:>+10.3}",
            name, s.elements, p.shannon, p.huffman, p.huffman_with_code, p.fixed, p.fixed_vs_huffman_pp, p.fixed_vs_shannon_pp
        );
        if shift {
            print!(" {:>8.2}% {:>+10.3} {:>7.3}%", p.shift_family, p.shift_family - p.huffman, p.estimate_error);
        }
        println!();
    };
    if !summary_only {
        for t in &r.tensors {
            line(&format!("{}:{}", t.file, t.name), &t.sizes);
        }
        println!();
    }
    for (c, s) in &r.classes {
        line(&format!("class {c}"), &s.sizes);
    }
    line("total", &r.total.sizes);
}
