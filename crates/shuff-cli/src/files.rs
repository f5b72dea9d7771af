//! `encode`, `decode`, `compress`, `decompress`, `inspect`: thin skins over `shuff-container`,
//! which owns the file format, the checks and the bounded-memory streaming.

use crate::inspect;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use regex::Regex;
use shuff::CodebookSet;
use shuff_container::source::{FileSource, Source};
use shuff_container::{compress, AtomicFile, Coding, Compressed, Container};
use std::io::Write;
use std::path::Path;

/// The input file, or for `-` standard input spooled to an anonymous temporary file (the
/// container is read out of order: index first, then any tensor).
fn open_input(path: &Path) -> Result<FileSource> {
    if path == Path::new("-") {
        let mut spool = tempfile::tempfile().context("creating a temporary file for standard input")?;
        std::io::copy(&mut std::io::stdin().lock(), &mut spool).context("reading standard input")?;
        return FileSource::from_file(spool).context("reading standard input");
    }
    FileSource::open(path).with_context(|| format!("reading {}", path.display()))
}

/// Where an output goes: a file written atomically, or standard output for `-`.
enum Output {
    File(AtomicFile),
    Stdout(std::io::BufWriter<std::io::Stdout>),
}

impl Output {
    fn create(path: &Path, force: bool, input: &Path) -> Result<Self> {
        if path == Path::new("-") {
            return Ok(Output::Stdout(std::io::BufWriter::with_capacity(1 << 20, std::io::stdout())));
        }
        Ok(Output::File(AtomicFile::create(path, force, &[input])?))
    }

    fn commit(self) -> Result<()> {
        match self {
            Output::File(f) => Ok(f.commit()?),
            Output::Stdout(mut w) => Ok(w.flush().context("writing standard output")?),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::File(f) => f.write(buf),
            Output::Stdout(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::File(f) => f.flush(),
            Output::Stdout(w) => w.flush(),
        }
    }
}

fn bar(total: u64, what: &str, show: bool) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if show {
        let template = format!("{what} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} {{elapsed}}");
        bar.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

/// Compresses `input` into a container at `output` (see [`Coding`]).
pub fn compress_file(input: &Path, output: &Path, coding: Coding, force: bool, progress: bool) -> Result<Compressed> {
    let source = open_input(input)?;
    let out = Output::create(output, force, input)?;
    let bar = bar(source.len(), "compressing", progress);
    let (out, summary) = compress(&source, coding, out, &|n| bar.inc(n)).with_context(|| format!("compressing {}", input.display()))?;
    bar.finish_and_clear();
    out.commit()?;
    Ok(summary)
}

/// Restores the safetensors file of the container `input` at `output`, decoding frames with
/// `book` or else the set the file embeds.
pub fn restore_file(input: &Path, output: &Path, book: Option<&CodebookSet>, force: bool, progress: bool) -> Result<()> {
    let mut c = Container::open(open_input(input)?).with_context(|| format!("reading {}", input.display()))?;
    if let Some(set) = book {
        c = c.with_codebooks(set);
    }
    let out = Output::create(output, force, input)?;
    let bar = bar(c.restored_len(), "restoring", progress);
    let out = c.restore_to(out, &|n| bar.inc(n)).with_context(|| format!("restoring {}", input.display()))?;
    bar.finish_and_clear();
    out.commit()?;
    Ok(())
}

pub fn encode(set: &CodebookSet, class: &str, filter: Option<&Regex>, input: &Path, output: &Path, force: bool) -> Result<()> {
    let s = compress_file(input, output, Coding::Class { set, class, filter }, force, false)?;
    eprintln!(
        "{}: {} tensors coded, {} → {} bytes ({:.2}% smaller)",
        input.display(),
        s.tensors_coded,
        s.input_bytes,
        s.output_bytes,
        100.0 * (1.0 - s.output_bytes as f64 / s.input_bytes as f64)
    );
    Ok(())
}

pub fn compress_cmd(set: Option<&CodebookSet>, families: bool, input: &Path, output: &Path, force: bool, quiet: bool) -> Result<()> {
    let name = input.file_stem().map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let coding = match set {
        Some(set) => Coding::Set(set),
        None => Coding::Trained { name: &name, families },
    };
    let t = std::time::Instant::now();
    let s = compress_file(input, output, coding, force, !quiet)?;
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "{}: {} tensors in {} classes, {} → {} bytes (ratio {:.3}, {:.2}% smaller) in {:.2} s ({:.0} MB/s)",
        input.display(),
        s.tensors_coded,
        s.classes,
        s.input_bytes,
        s.output_bytes,
        s.input_bytes as f64 / s.output_bytes as f64,
        100.0 * (1.0 - s.output_bytes as f64 / s.input_bytes as f64),
        secs,
        s.input_bytes as f64 / secs / 1e6
    );
    Ok(())
}

pub fn inspect_cmd(input: &Path, json: bool) -> Result<()> {
    let c = Container::open(open_input(input)?).with_context(|| format!("reading {}", input.display()))?;
    let rows = inspect::rows(c.stored_tensors().with_context(|| format!("reading {}", input.display()))?);
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        inspect::print_inspect(&rows, c.file_len());
    }
    Ok(())
}
