//! `shuff`: train fixed Huffman codebooks for tensor classes and measure them on real tensors.

mod analyze;
mod bench;
mod demo;
mod eval;
mod files;
mod huff0;
mod inspect;
mod svg;
mod table;
mod tensors;
mod train;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use regex::Regex;
use shuff::{CodebookSet, FamilyOptions, Layout};
use std::path::{Path, PathBuf};

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
        /// Codebook families: `auto` adds, per class, exponent-shifted and clustered members where
        /// they pay on the last input (held out while choosing); `shift`, `cluster` one kind only;
        /// `none` the class code alone. Encoders pick each message's members from a sample.
        #[arg(long, default_value = "auto")]
        family: String,
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
        /// Without --book: `auto` gives classes family members where they save ≥ 0.1 pp of
        /// held-out tensors, `none` one codebook per class.
        #[arg(long, default_value = "auto", value_parser = ["auto", "none"])]
        family: String,
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
        #[arg(long, value_enum, default_value_t = analyze::StepOrder::Given)]
        step_order: analyze::StepOrder,
        /// Codebook families, as `shuff train --family` (auto, shift, cluster, none).
        #[arg(long, default_value = "auto")]
        family: String,
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
        Command::Train {
            layout,
            max_len,
            classes,
            matches,
            rule,
            family,
            name,
            output,
            binary,
            c_header,
            inputs,
        } => {
            let family = FamilyOptions::named(&family).map_err(anyhow::Error::msg)?;
            train::run(
                layout,
                max_len,
                &classes,
                &matches,
                &rule,
                &family,
                &name,
                &output,
                binary.as_deref(),
                c_header.as_deref(),
                &inputs,
            )
        }
        Command::Eval {
            book,
            filter,
            class,
            summary,
            json,
            inputs,
        } => eval::run(
            &book,
            filter.as_deref(),
            class.as_deref(),
            summary,
            json,
            &inputs,
        ),
        Command::Bench {
            book,
            class,
            filter,
            sizes,
            threads,
            samples,
            json,
            input,
        } => bench::run(
            &book, &class, filter, &sizes, threads, samples, json, &input,
        ),
        Command::Encode {
            book,
            class,
            filter,
            force,
            input,
            output,
        } => {
            let set = load_book(&book)?;
            let filter = filter.map(|f| Regex::new(&f)).transpose().context("bad --match regex")?;
            files::encode(&set, &class, filter.as_ref(), &input, &output, force)
        }
        Command::Decode { book, force, input, output } => files::restore_file(&input, &output, Some(&load_book(&book)?), force, false),
        Command::Compress { book, family, output, force, quiet, input } => {
            let set = book.as_deref().map(load_book).transpose()?;
            files::compress_cmd(set.as_ref(), family == "auto", &input, &output, force, quiet)
        }
        Command::Decompress { output, force, book, quiet, input } => {
            let set = book.as_deref().map(load_book).transpose()?;
            files::restore_file(&input, &output, set.as_ref(), force, !quiet)
        }
        Command::Inspect { json, input } => files::inspect_cmd(&input, json),
        Command::Analyze {
            group,
            layer,
            shard,
            layouts,
            step_order,
            family,
            output,
            mut inputs,
        } => {
            let family = FamilyOptions::named(&family).map_err(anyhow::Error::msg)?;
            analyze::order_steps(&mut inputs, step_order)?;
            let naming = analyze::Naming {
                group: Regex::new(&group).context("bad --group regex")?,
                layer: Regex::new(&layer).context("bad --layer regex")?,
                shard: Regex::new(&shard).context("bad --shard regex")?,
            };
            let report = analyze::analyze(&inputs, &naming, &layouts, &family, &output)?;
            println!("{}", analyze::table(&report));
            println!("{}", analyze::suggestions(&report));
            eprintln!("analyzed {} steps in {:.1} s; wrote {}/report.html, report.json, report.md", inputs.len(), report.seconds, output.display());
            Ok(())
        }
        Command::Demo { data, output } => demo::run(data, &output),
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

