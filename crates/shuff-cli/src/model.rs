//! `shuff compress` / `decompress` / `inspect`: whole model files, self-contained.
//!
//! Unlike messages (which never carry a code), a compressed model file carries its codebooks, so it
//! can be restored anywhere. Tensors are grouped into classes by name with the layer numbers taken
//! out (`encoder.layer.3.attention.self.query.weight` → `encoder.layer.#.attention.self.query.weight`),
//! so that one codebook serves every layer of a kind, as in the paper; each class gets the layout
//! (bytes, exponent or planes) whose code is smallest on its own data. The original safetensors
//! header is kept verbatim and a CRC-32 of the whole restored file is checked, so decompression is
//! bit-identical or fails. Layout of the file: docs/FORMAT.md, "Model files".

use crate::container::{frame_codebook, pieces, take, u64_at, Piece};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use regex::Regex;
use shuff::stats::{stream_histograms, Histogram};
use shuff::{decode_into, encode, Codebook, CodebookSet, DType, EncodeOptions, FrameInfo, Layout, Provenance};
use std::collections::BTreeMap;

const MAGIC: &[u8; 8] = b"SHUFFMD1";
/// Classes smaller than this share one class per dtype: a codebook of their own would not pay for
/// itself (and tiny tensors such as biases and norms say little about a distribution).
const SMALL_CLASS_BYTES: usize = 256 << 10;
const SEG_RAW: u8 = 0;
const SEG_FRAME: u8 = 1;

/// The class of a tensor when the user gives no codebook: its name with layer numbers replaced.
pub fn auto_class(name: &str, dtype: DType) -> String {
    static DIGITS: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let re = DIGITS.get_or_init(|| Regex::new(r"\d+").expect("valid regex"));
    format!("{dtype}:{}", re.replace_all(name, "#"))
}

/// Trains one codebook per class of `file`'s tensors, each in its best layout.
fn train_classes(pieces: &[Piece], name: &str) -> Result<(CodebookSet, BTreeMap<String, String>)> {
    let mut classes: BTreeMap<String, (DType, Vec<usize>)> = BTreeMap::new();
    for (i, p) in pieces.iter().enumerate() {
        if let Some(dtype) = p.dtype {
            classes.entry(auto_class(&p.name, dtype)).or_insert((dtype, Vec::new())).1.push(i);
        }
    }
    // Fold small classes into one per dtype.
    let mut merged: BTreeMap<String, (DType, Vec<usize>)> = BTreeMap::new();
    for (class, (dtype, members)) in classes {
        let bytes: usize = members.iter().map(|&i| pieces[i].data.len()).sum();
        let key = if bytes < SMALL_CLASS_BYTES { format!("{dtype}:small") } else { class };
        merged.entry(key).or_insert((dtype, Vec::new())).1.extend(members);
    }
    let trained: Vec<(String, Codebook, Vec<usize>, u64)> = merged
        .into_par_iter()
        .map(|(class, (dtype, members))| {
            let (book, symbols) = best_codebook(dtype, members.iter().map(|&i| pieces[i].data))?;
            Ok((class, book, members, symbols))
        })
        .collect::<Result<_>>()?;
    let mut set = CodebookSet::new(name);
    let mut class_of = BTreeMap::new();
    for (class, book, members, symbols) in trained {
        for &i in &members {
            class_of.insert(pieces[i].name.clone(), class.clone());
        }
        let provenance = Provenance { batches: 1, symbols, rule: "per-file".into(), created_by: format!("shuff compress {}", env!("CARGO_PKG_VERSION")), ..Default::default() };
        set.insert(class, book, provenance);
    }
    Ok((set, class_of))
}

/// Per-stream histograms of `tensors` under `layout`, over every `stride`-th block of 64 KiB.
fn histograms<'a>(dtype: DType, layout: Layout, tensors: impl Iterator<Item = &'a [u8]>, stride: usize) -> Result<Vec<Histogram>> {
    let block = (64 << 10) / dtype.size() * dtype.size();
    let mut hists = vec![Histogram::new(); layout.stream_count(dtype)];
    for t in tensors {
        for part in t.chunks(block).step_by(stride) {
            for (h, p) in hists.iter_mut().zip(stream_histograms(dtype, layout, part)?) {
                h.merge(&p);
            }
        }
    }
    Ok(hists)
}

/// Bits `book` codes `hists` in, a stream that does not shrink being stored raw.
fn coded_bits(book: &Codebook, hists: &[Histogram]) -> u64 {
    book.streams().iter().zip(hists).map(|(s, h)| s.coded_bits(h).min(8 * h.total())).sum()
}

/// The codebook, over every layout, that codes `tensors` in the fewest bits. The layout is chosen
/// on a 1/8 sample of 64 KiB blocks (it is never close: layouts differ by whole percent), then the
/// code is built from all of the data in that layout.
fn best_codebook<'a>(dtype: DType, tensors: impl Iterator<Item = &'a [u8]> + Clone) -> Result<(Codebook, u64)> {
    let mut best: Option<(u64, Layout)> = None;
    for layout in Layout::ALL {
        let hists = histograms(dtype, layout, tensors.clone(), 8)?;
        let Some(dists) = hists.iter().map(Histogram::distribution).collect::<Option<Vec<_>>>() else { continue };
        let book = Codebook::from_distributions(dtype, layout, &dists, layout.default_max_len())?;
        let bits = coded_bits(&book, &hists);
        if best.is_none_or(|(b, _)| bits < b) {
            best = Some((bits, layout));
        }
    }
    let (_, layout) = best.context("no tensor data")?;
    let hists = histograms(dtype, layout, tensors, 1)?;
    let dists: Vec<_> = hists.iter().map(Histogram::distribution).collect::<Option<_>>().context("no tensor data")?;
    let book = Codebook::from_distributions(dtype, layout, &dists, layout.default_max_len())?;
    Ok((book, hists.iter().map(Histogram::total).sum()))
}

/// What `compress` did, for the summary line and for tests.
pub struct Compressed {
    pub bytes: Vec<u8>,
    pub tensors: usize,
    pub classes: usize,
}

/// Compresses a whole safetensors file. With `book`, tensors go to its classes by their selectors
/// (tensors no class selects stay raw); without, classes are trained from the file itself.
pub fn compress(file: &[u8], book: Option<&CodebookSet>, name: &str, progress: bool) -> Result<Compressed> {
    let (header_len, pieces) = pieces(file)?;
    let (set, class_of) = match book {
        Some(set) => {
            let mut class_of = BTreeMap::new();
            let selector = shuff::ClassSelector::from_set(set)?;
            for p in &pieces {
                let codes_it = |c: &str| p.dtype == Some(set.codebook(c).expect("listed").dtype());
                if let Some(c) = selector.class_where(&p.name, codes_it) {
                    class_of.insert(p.name.clone(), c.to_string());
                }
            }
            (set.clone(), class_of)
        }
        None => train_classes(&pieces, name)?,
    };
    // Frames name their codebook by the low 32 bits of its fingerprint: those must be unique.
    let mut seen = BTreeMap::new();
    for (c, cb) in set.classes() {
        if let Some(other) = seen.insert(cb.codebook.fingerprint().0 as u32, c) {
            bail!("classes `{other}` and `{c}` have codebooks with the same 32-bit fingerprint; rename or retrain one");
        }
    }
    let bar = ProgressBar::new(file.len() as u64);
    if progress {
        bar.set_style(ProgressStyle::with_template("compressing [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {elapsed}").expect("valid template").progress_chars("=> "));
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let opts = EncodeOptions { checksum: true, parallel: true, ..Default::default() };
    let segments: Vec<(u8, &str, std::borrow::Cow<[u8]>)> = pieces
        .par_iter()
        .map(|p| {
            let coded = class_of.get(&p.name).filter(|_| !p.name.is_empty()).map(|c| set.codebook(c).expect("class in set"));
            let seg = match coded {
                Some(book) => {
                    let frame = encode(&book, p.data, opts).with_context(|| format!("tensor `{}`", p.name))?;
                    // The frame keeps tiny tensors that do not shrink at most a few bytes larger;
                    // store those raw.
                    if frame.len() < p.data.len() {
                        (SEG_FRAME, p.name.as_str(), frame.into())
                    } else {
                        (SEG_RAW, p.name.as_str(), p.data.into())
                    }
                }
                None => (SEG_RAW, p.name.as_str(), p.data.into()),
            };
            bar.inc(p.data.len() as u64);
            Ok(seg)
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let set_bytes = set.to_bytes();
    let mut out = Vec::with_capacity(file.len() / 2);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header_len as u64).to_le_bytes());
    out.extend_from_slice(&file[..header_len]);
    out.extend_from_slice(&(set_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&set_bytes);
    out.extend_from_slice(&(segments.len() as u32).to_le_bytes());
    let mut tensors = 0;
    for (kind, name, bytes) in &segments {
        tensors += usize::from(*kind == SEG_FRAME);
        out.push(*kind);
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(&crc32fast::hash(file).to_le_bytes());
    Ok(Compressed { bytes: out, tensors, classes: set.len() })
}

/// One segment of a compressed model file.
pub struct Segment<'a> {
    pub name: &'a str,
    pub frame: bool,
    pub stored: &'a [u8],
}

/// A parsed compressed model file (nothing decoded yet).
pub struct ModelFile<'a> {
    pub header: &'a [u8],
    pub set: CodebookSet,
    pub segments: Vec<Segment<'a>>,
    pub crc: u32,
}

pub fn parse(data: &[u8]) -> Result<ModelFile<'_>> {
    let mut pos = 0;
    if take(data, &mut pos, 8, "magic")? != MAGIC {
        bail!("not a file written by `shuff compress` (bad magic)");
    }
    let header_len = u64_at(data, &mut pos, "header length")?;
    let header = take(data, &mut pos, header_len, "header")?;
    let set_len = u64_at(data, &mut pos, "codebook length")?;
    let set = CodebookSet::from_bytes(take(data, &mut pos, set_len, "codebooks")?).context("embedded codebooks")?;
    let count = u32::from_le_bytes(take(data, &mut pos, 4, "segment count")?.try_into().expect("4 bytes"));
    let mut segments = Vec::new();
    for i in 0..count {
        let kind = take(data, &mut pos, 1, "segment kind")?[0];
        let name_len = u16::from_le_bytes(take(data, &mut pos, 2, "name length")?.try_into().expect("2 bytes"));
        let name = std::str::from_utf8(take(data, &mut pos, usize::from(name_len), "name")?).with_context(|| format!("segment {i}: name is not UTF-8"))?;
        let len = u64_at(data, &mut pos, "segment length")?;
        let stored = take(data, &mut pos, len, "segment")?;
        if kind > SEG_FRAME {
            bail!("segment {i}: unknown kind {kind}");
        }
        segments.push(Segment { name, frame: kind == SEG_FRAME, stored });
    }
    let crc = u32::from_le_bytes(take(data, &mut pos, 4, "checksum")?.try_into().expect("4 bytes"));
    if pos != data.len() {
        bail!("{} bytes after the checksum", data.len() - pos);
    }
    Ok(ModelFile { header, set, segments, crc })
}

impl ModelFile<'_> {
    /// The codebook a frame was made with, by fingerprint.
    pub fn class_of(&self, frame: &[u8]) -> Result<(&str, std::sync::Arc<Codebook>)> {
        frame_codebook(&self.set, frame)
    }

    /// Bytes each segment restores to.
    pub fn restored_len(&self, seg: &Segment) -> Result<usize> {
        Ok(if seg.frame { FrameInfo::parse(seg.stored)?.decoded_len()? } else { seg.stored.len() })
    }
}

/// Tensor name → byte size, from a stored safetensors header (8-byte length + JSON).
fn declared_sizes(header: &[u8]) -> Result<BTreeMap<String, usize>> {
    let json = header.get(8..).context("stored header is shorter than its length prefix")?;
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(json).context("stored header is not safetensors JSON")?;
    map.into_iter()
        .filter(|(name, _)| name != "__metadata__")
        .map(|(name, v)| {
            let offsets = v["data_offsets"].as_array().filter(|a| a.len() == 2).and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)));
            let (start, end) = offsets.filter(|(s, e)| s <= e).with_context(|| format!("tensor `{name}` has bad data_offsets"))?;
            Ok((name, usize::try_from(end - start)?))
        })
        .collect()
}

/// Restores the original safetensors file, checking every frame's CRC and the whole file's.
pub fn decompress(data: &[u8]) -> Result<Vec<u8>> {
    let m = parse(data)?;
    let lens: Vec<usize> = m.segments.iter().map(|s| m.restored_len(s)).collect::<Result<_>>()?;
    // Before allocating: every tensor must restore to the size the stored header gives it, and the
    // whole data area to the header's extent (a damaged or hostile file could otherwise ask for an
    // allocation of thousands of times its own size).
    let declared = declared_sizes(m.header)?;
    for (seg, &len) in m.segments.iter().zip(&lens) {
        if let Some(&size) = declared.get(seg.name) {
            if size != len {
                bail!("tensor `{}` restores to {len} bytes, its header entry says {size}", seg.name);
            }
        } else if seg.frame {
            bail!("segment `{}` is not a tensor of the stored header", seg.name);
        }
    }
    let data_len: usize = lens.iter().sum();
    let extent = declared.values().sum::<usize>();
    if data_len < extent || data_len > extent + (1 << 20) {
        bail!("segments restore to {data_len} bytes, the header's tensors take {extent}");
    }
    let total = m.header.len() + data_len;
    let mut out = vec![0u8; total];
    out[..m.header.len()].copy_from_slice(m.header);
    let mut rest = &mut out[m.header.len()..];
    let mut jobs = Vec::with_capacity(m.segments.len());
    for (seg, &len) in m.segments.iter().zip(&lens) {
        let (dst, tail) = rest.split_at_mut(len);
        jobs.push((seg, dst));
        rest = tail;
    }
    jobs.into_par_iter().try_for_each(|(seg, dst)| -> Result<()> {
        if seg.frame {
            let (_, book) = m.class_of(seg.stored)?;
            decode_into(&book, seg.stored, dst).with_context(|| format!("tensor `{}`", seg.name))?;
        } else {
            dst.copy_from_slice(seg.stored);
        }
        Ok(())
    })?;
    let crc = crc32fast::hash(&out);
    if crc != m.crc {
        bail!("restored file's CRC-32 {crc:08x} differs from the stored {:08x}", m.crc);
    }
    Ok(out)
}

/// One row of `shuff inspect`.
#[derive(serde::Serialize)]
pub struct InspectRow {
    pub tensor: String,
    pub class: Option<String>,
    pub dtype: Option<String>,
    pub layout: Option<String>,
    pub original_bytes: usize,
    pub stored_bytes: usize,
}

/// Lists the segments of a compressed model file without decoding them.
pub fn inspect(data: &[u8]) -> Result<Vec<InspectRow>> {
    let m = parse(data)?;
    m.segments
        .iter()
        .map(|seg| {
            let (class, book) = if seg.frame {
                let (c, b) = m.class_of(seg.stored)?;
                (Some(c.to_string()), Some(b))
            } else {
                (None, None)
            };
            Ok(InspectRow {
                tensor: if seg.name.is_empty() { "(padding)".into() } else { seg.name.to_string() },
                class,
                dtype: book.as_ref().map(|b| b.dtype().to_string()),
                layout: book.as_ref().map(|b| b.layout().to_string()),
                original_bytes: m.restored_len(seg)?,
                stored_bytes: seg.stored.len(),
            })
        })
        .collect()
}

pub fn print_inspect(rows: &[InspectRow], file_len: usize) {
    println!("{:<60} {:<10} {:<9} {:>12} {:>12} {:>7}", "tensor", "dtype", "layout", "bytes", "stored", "ratio");
    for r in rows {
        println!(
            "{:<60} {:<10} {:<9} {:>12} {:>12} {:>7.3}",
            r.tensor,
            r.dtype.as_deref().unwrap_or("-"),
            r.layout.as_deref().unwrap_or("raw"),
            r.original_bytes,
            r.stored_bytes,
            r.original_bytes as f64 / r.stored_bytes.max(1) as f64
        );
    }
    let mut classes: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for r in rows {
        let e = classes.entry(r.class.as_deref().unwrap_or("(raw)")).or_default();
        *e = (e.0 + 1, e.1 + r.original_bytes, e.2 + r.stored_bytes);
    }
    println!("\n{:<70} {:>7} {:>12} {:>12} {:>7}", "class", "tensors", "bytes", "stored", "ratio");
    for (c, (n, o, s)) in &classes {
        println!("{c:<70} {n:>7} {o:>12} {s:>12} {:>7.3}", *o as f64 / (*s).max(1) as f64);
    }
    let original: usize = rows.iter().map(|r| r.original_bytes).sum();
    println!("\ndata {original} bytes; file {file_len} bytes with header and codebooks; ratio {:.3}", original as f64 / file_len as f64);
}
