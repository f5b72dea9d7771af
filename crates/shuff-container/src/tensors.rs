//! safetensors files in and out of containers: the stored header's tensors, and compression of a
//! whole file with bounded memory.

use crate::format::MAX_HEADER_SEGMENT_BYTES;
use crate::source::Source;
use crate::writer::ContainerWriter;
use crate::{ContainerError, BATCH_BYTES, SEGMENT_BYTES};
use rayon::prelude::*;
use regex::Regex;
use safetensors::tensor::Metadata;
use safetensors::Dtype as StDtype;
use shuff::auto::{build_family, plan_classes, sample_block_bytes, LayoutChooser, sample_stride, SAMPLE_TRAINS_FROM_BYTES};
use shuff::stats::{stream_histograms, Histogram};
use shuff::{ClassSelector, CodebookSet, DType, EncodeOptions, Family, FamilyEncodeError};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;

/// One tensor of a safetensors header.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    /// Its name.
    pub name: String,
    /// Its safetensors dtype.
    pub dtype: StDtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Where its bytes start in the file (header included).
    pub start: u64,
    /// Where they end.
    pub end: u64,
}

impl TensorEntry {
    /// The shuff dtype that codes it, if any.
    pub fn shuff_dtype(&self) -> Option<DType> {
        dtype_of(self.dtype)
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// The shuff dtype of a safetensors dtype; `None` for dtypes shuff does not code (ints wider than
/// a byte, f64, bool): those are stored raw.
pub fn dtype_of(d: StDtype) -> Option<DType> {
    Some(match d {
        StDtype::BF16 => DType::Bf16,
        StDtype::F16 => DType::F16,
        StDtype::F32 => DType::F32,
        StDtype::F8_E4M3 => DType::F8E4M3,
        StDtype::F8_E5M2 => DType::F8E5M2,
        StDtype::U8 | StDtype::I8 => DType::U8,
        _ => return None,
    })
}

/// The tensors of a safetensors header (8-byte length prefix + JSON), in data order, with
/// absolute file offsets, for a file of `file_len` bytes. Checks what safetensors checks —
/// tensors tile the data area without gaps or overlaps and end where the file does, each
/// shape × element size is its byte length, with checked arithmetic — and orders tensors of equal
/// offsets by end, so a zero-size tensor never "overlaps" its neighbour.
pub fn parse_header(header: &[u8], file_len: u64) -> Result<Vec<TensorEntry>, ContainerError> {
    let bad = |what: String| ContainerError::Safetensors(what);
    let len: [u8; 8] = header.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("shorter than its length prefix".into()))?;
    let n = u64::from_le_bytes(len);
    if n.checked_add(8) != Some(header.len() as u64) {
        return Err(bad(format!("its length prefix says {n} bytes of JSON, {} follow", header.len() - 8)));
    }
    let json = std::str::from_utf8(&header[8..]).map_err(|_| bad("the JSON is not UTF-8".into()))?;
    let meta: Metadata = serde_json::from_str(json).map_err(|e| bad(format!("not safetensors JSON: {e}")))?;
    type Described = (String, StDtype, Vec<usize>, (usize, usize));
    let mut tensors: Vec<Described> = meta.tensors().into_iter().map(|(name, t)| (name, t.dtype, t.shape.clone(), t.data_offsets)).collect();
    tensors.sort_by(|a, b| (a.3, &a.0).cmp(&(b.3, &b.0)));
    let base = header.len() as u64;
    let mut at = 0usize;
    let mut out = Vec::with_capacity(tensors.len());
    for (name, dtype, shape, (s, e)) in tensors {
        if s != at || e < s {
            return Err(bad(format!("tensor `{name}` has data_offsets [{s}, {e}], but the previous tensor ends at {at}")));
        }
        let bytes = shape.iter().try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
        if bytes != Some(e - s) {
            return Err(bad(format!("tensor `{name}`: shape {shape:?} of {dtype:?} is not {} bytes", e - s)));
        }
        at = e;
        let (start, end) = (base.checked_add(s as u64), base.checked_add(e as u64));
        let (Some(start), Some(end)) = (start, end) else { return Err(bad(format!("tensor `{name}`: offsets overflow"))) };
        out.push(TensorEntry { name, dtype, shape, start, end });
    }
    let extent = out.last().map_or(base, |t| t.end);
    if extent != file_len {
        return Err(bad(format!("its tensors end at byte {extent}, the file at {file_len}")));
    }
    Ok(out)
}

/// A safetensors header (8-byte length prefix and JSON, padded with spaces to a multiple of 8 as
/// safetensors writes it) for tensors laid out back to back in the given order: `(name, dtype as
/// safetensors spells it, e.g. "BF16", shape, byte length)`. Checked like any header read.
pub fn build_header(tensors: &[(&str, &str, &[usize], u64)], metadata: Option<&BTreeMap<String, String>>) -> Result<Vec<u8>, ContainerError> {
    let mut map = serde_json::Map::new();
    if let Some(m) = metadata {
        map.insert("__metadata__".into(), serde_json::to_value(m).expect("strings"));
    }
    let mut at = 0u64;
    for &(name, dtype, shape, len) in tensors {
        if name == "__metadata__" || map.contains_key(name) {
            return Err(ContainerError::Safetensors(format!("tensor name `{name}` is used twice or reserved")));
        }
        let end = at.checked_add(len).ok_or_else(|| ContainerError::Safetensors("tensor sizes overflow".into()))?;
        map.insert(name.into(), serde_json::json!({ "dtype": dtype, "shape": shape, "data_offsets": [at, end] }));
        at = end;
    }
    let mut json = serde_json::to_vec(&map).expect("JSON values serialize");
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut header = (json.len() as u64).to_le_bytes().to_vec();
    header.extend_from_slice(&json);
    // What we write must pass our own reader's checks.
    parse_header(&header, header.len() as u64 + at)?;
    Ok(header)
}

/// Reads and parses the header of a safetensors file, checking its tensors fill the file exactly.
pub fn read_source_header<S: Source + ?Sized>(source: &S) -> Result<(Vec<u8>, Vec<TensorEntry>), ContainerError> {
    let len = source.len();
    let mut prefix = [0u8; 8];
    if len < 8 {
        return Err(ContainerError::Safetensors(format!("a file of {len} bytes is not safetensors")));
    }
    source.read_exact_at(&mut prefix, 0).map_err(ContainerError::io("reading the safetensors header"))?;
    let n = u64::from_le_bytes(prefix);
    let header_len = n
        .checked_add(8)
        .filter(|&h| h <= len && h <= MAX_HEADER_SEGMENT_BYTES)
        .ok_or_else(|| ContainerError::Safetensors(format!("header length {n} does not fit a file of {len} bytes")))?;
    let mut header = vec![0u8; header_len as usize];
    source.read_exact_at(&mut header, 0).map_err(ContainerError::io("reading the safetensors header"))?;
    let tensors = parse_header(&header, len)?;
    Ok((header, tensors))
}

/// Which codebooks code which tensors.
pub enum Coding<'a> {
    /// Classes and codebooks made from the file itself ([`shuff::auto`]); the set is embedded, named `name`.
    Trained {
        /// Name of the set.
        name: &'a str,
        /// Whether classes get family members where they pay ([`shuff::auto::build_family`]);
        /// `false`: one codebook per class.
        families: bool,
    },
    /// The set's classes, tensors assigned by their selectors ([`ClassSelector`]); the set is
    /// embedded. Tensors no class selects are stored raw.
    Set(&'a CodebookSet),
    /// One class's codebook for every tensor of its dtype (that `filter` selects); the set is not
    /// embedded — the file is read with the same set, as a message in a collective is.
    Class {
        /// The set.
        set: &'a CodebookSet,
        /// The class.
        class: &'a str,
        /// Only tensors whose names match.
        filter: Option<&'a Regex>,
    },
}

/// What [`compress`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compressed {
    /// Tensors with at least one coded segment.
    pub tensors_coded: usize,
    /// Classes in the set used.
    pub classes: usize,
    /// Bytes read.
    pub input_bytes: u64,
    /// Bytes written.
    pub output_bytes: u64,
}

/// A stretch of one tensor that becomes one segment.
struct Piece {
    tensor: usize,
    start: u64,
    end: u64,
}

/// Tensors cut into segment-sized pieces, in file order.
fn pieces(tensors: &[TensorEntry]) -> Vec<Piece> {
    let mut out = Vec::new();
    for (t, e) in tensors.iter().enumerate() {
        let mut start = e.start;
        while start < e.end {
            let end = (start + SEGMENT_BYTES).min(e.end);
            out.push(Piece { tensor: t, start, end });
            start = end;
        }
    }
    out
}

/// The pieces grouped into batches of about [`BATCH_BYTES`] (each contiguous in the file).
fn batches(tensors: &[TensorEntry]) -> Vec<Vec<Piece>> {
    let mut out: Vec<Vec<Piece>> = Vec::new();
    let mut bytes = 0;
    for p in pieces(tensors) {
        if out.is_empty() || bytes + (p.end - p.start) > BATCH_BYTES {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += p.end - p.start;
        out.last_mut().expect("one batch").push(p);
    }
    out
}

/// Reads the bytes of a batch (contiguous in the file) into the start of `buf`, which callers
/// reuse: fresh pages for every batch cost more kernel time than the coding.
fn read_batch<S: Source + ?Sized>(source: &S, batch: &[Piece], buf: &mut Vec<u8>) -> Result<(), ContainerError> {
    let (start, end) = (batch[0].start, batch[batch.len() - 1].end);
    let len = (end - start) as usize;
    source.read_exact_at(grown(buf, len), start).map_err(ContainerError::io(format!("reading bytes {start}..{end} of the input")))
}

/// The first `len` bytes of `buf`, which only ever grows: a reused buffer resized down and up
/// again for pieces of varying sizes zero-filled the difference each time (6% of `compress`).
pub(crate) fn grown(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    &mut buf[..len]
}

fn misaligned(t: &TensorEntry, e: shuff::layout::MisalignedTensor) -> ContainerError {
    ContainerError::Tensor { tensor: t.name.clone(), reason: e.to_string() }
}

/// Trains the per-file classes ([`Coding::Trained`]): layouts from a sample, codes from all data.
fn train<S: Source + ?Sized>(source: &S, tensors: &[TensorEntry], name: &str, families: bool) -> Result<(CodebookSet, Vec<Option<String>>), ContainerError> {
    let described: Vec<(&str, Option<DType>, u64)> = tensors.iter().map(|t| (t.name.as_str(), t.shuff_dtype(), t.len())).collect();
    let plan = plan_classes(&described);
    let mut members: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, c) in plan.iter().enumerate() {
        if let Some(c) = c {
            members.entry(c.as_str()).or_default().push(i);
        }
    }
    // Layouts, from a sample of blocks of each tensor (shuff::auto::sample_stride), classes in parallel; large
    // classes take their code from that sample too (shuff::auto::SAMPLE_TRAINS_FROM_BYTES).
    // Per class: its layout, and its code's histograms (and per tensor, for the family) when the
    // sample is enough to train on.
    type Sampled = Option<(shuff::Layout, Option<(Vec<Histogram>, Vec<Vec<Histogram>>)>)>;
    let sampled: BTreeMap<&str, Sampled> = members
        .par_iter()
        .map(|(&class, idx)| {
            let dtype = tensors[idx[0]].shuff_dtype().expect("classed tensors have a dtype");
            let mut chooser = LayoutChooser::new(dtype);
            let block = sample_block_bytes(dtype);
            let stride = sample_stride(idx.iter().map(|&i| tensors[i].len()).sum());
            let mut buf = Vec::new();
            for &i in idx {
                let t = &tensors[i];
                let mut at = t.start;
                while at < t.end {
                    let end = (at + block).min(t.end);
                    buf.resize((end - at) as usize, 0);
                    source.read_exact_at(&mut buf, at).map_err(ContainerError::io("reading the input"))?;
                    chooser.add(&buf).map_err(|e| misaligned(t, e))?;
                    at = at.saturating_add(block * stride);
                }
                chooser.end_message();
            }
            let enough = chooser.sampled_bytes() >= SAMPLE_TRAINS_FROM_BYTES;
            Ok((class, chooser.choose().map(|l| (l, enough.then(|| chooser.into_sample(l))))))
        })
        .collect::<Result<_, ContainerError>>()?;
    // Smaller classes: histograms of all their data in the chosen layout, a piece at a time.
    let pieces = pieces(tensors);
    let parts: Vec<(&str, Vec<Histogram>)> = pieces
        .par_iter()
        .filter_map(|p| {
            let class = plan[p.tensor].as_deref()?;
            let (layout, None) = sampled[class].as_ref()? else { return None };
            let t = &tensors[p.tensor];
            let dtype = t.shuff_dtype()?;
            let mut buf = vec![0u8; (p.end - p.start) as usize];
            let read = source.read_exact_at(&mut buf, p.start).map_err(ContainerError::io("reading the input"));
            Some(read.and_then(|()| stream_histograms(dtype, *layout, &buf).map(|h| (class, h)).map_err(|e| misaligned(t, e))))
        })
        .collect::<Result<_, _>>()?;
    // Per class: all its histograms, and per piece (the messages its family is trained on).
    let mut hists: HashMap<&str, (Vec<Histogram>, Vec<Vec<Histogram>>)> = HashMap::new();
    for (class, h) in parts {
        let acc = hists.entry(class).or_insert_with(|| (vec![Histogram::new(); h.len()], Vec::new()));
        for (a, h) in acc.0.iter_mut().zip(&h) {
            a.merge(h);
        }
        acc.1.push(h);
    }
    let layouts: BTreeMap<&str, Option<shuff::Layout>> = sampled
        .into_iter()
        .map(|(class, s)| {
            let layout = s.as_ref().map(|(l, _)| *l);
            if let Some((_, Some(h))) = s {
                hists.insert(class, h);
            }
            (class, layout)
        })
        .collect();
    // Classes train their families in parallel (each is independent; clustering a class's
    // messages was a single-threaded 0.4 s of compressing a 3 GB checkpoint); the set is filled
    // in class order, so the result does not depend on the schedule.
    let jobs: Vec<(&str, DType, shuff::Layout, (Vec<Histogram>, Vec<Vec<Histogram>>))> = members
        .iter()
        .filter_map(|(&class, idx)| {
            let dtype = tensors[idx[0]].shuff_dtype().expect("classed tensors have a dtype");
            Some((class, dtype, layouts[class]?, hists.remove(class)?))
        })
        .collect();
    let built: Vec<_> = jobs
        .into_par_iter()
        .map(|(class, dtype, layout, (h, messages))| {
            let messages = if families { messages } else { Vec::new() };
            build_family(dtype, layout, &h, messages, concat!("shuff ", env!("CARGO_PKG_VERSION")))
                .map(|built| (class, built))
                .map_err(|e| ContainerError::Codebook(format!("class `{class}`: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let mut set = CodebookSet::new(name);
    for (class, (family, prov)) in built {
        set.insert_family(class, family, prov);
    }
    let plan = plan.into_iter().map(|c| c.filter(|c| set.get(c).is_some())).collect();
    Ok((set, plan))
}

/// Frames name their codebook family by the low 32 bits of its fingerprint: among the different
/// families a file uses, those must be unique (classes with identical families may share one).
fn check_fingerprints(set: &CodebookSet) -> Result<(), ContainerError> {
    let mut seen = BTreeMap::new();
    for (c, cb) in set.classes() {
        let fp = cb.family.fingerprint();
        if let Some((other, _)) = seen.insert(fp.0 as u32, (c, fp)).filter(|(_, f)| *f != fp) {
            return Err(ContainerError::Codebook(format!(
                "classes `{other}` and `{c}` have different codebooks with the same 32-bit fingerprint; retrain one"
            )));
        }
    }
    Ok(())
}

/// How every piece is coded: with a CRC-32 of its bytes in the frame (chunks coded in parallel
/// where the caller's thread pool has room).
const PIECE_OPTIONS: EncodeOptions = EncodeOptions { checksum: true, parallel: true, lanes: None };

/// Codes one piece of tensor bytes into `frame` (resized to the worst case) with the family's
/// members picked from a sample of the piece: the frame's length, or `None` where a frame would
/// not be smaller than the bytes, which are then stored raw (tiny tensors would be a few bytes
/// larger as frames). The one rule pieces are stored by.
fn code_piece(
    family: &Family,
    data: &[u8],
    frame: &mut Vec<u8>,
    opts: EncodeOptions,
) -> Result<Option<usize>, FamilyEncodeError> {
    let frame = grown(frame, shuff::max_frame_len(family.dtype(), family.layout(), data.len()));
    let n = family.encode_into(data, frame, opts, None)?;
    Ok((n < data.len()).then_some(n))
}

/// The bytes a container stores for tensor bytes `data` coded with `family` — its segments (pieces
/// of at most [`SEGMENT_BYTES`], each a frame or raw, and each segment's header) — which is what
/// `shuff inspect` lists as the tensor's stored bytes after `compress` or `encode`. `shuff eval`
/// reports it, so that its figure is the encoder's output to the byte.
pub fn stored_len(family: &Family, data: &[u8]) -> Result<u64, FamilyEncodeError> {
    let mut frame = Vec::new();
    let mut total = 0u64;
    for piece in data.chunks(SEGMENT_BYTES as usize) {
        let stored = code_piece(family, piece, &mut frame, PIECE_OPTIONS)?.unwrap_or(piece.len());
        total += crate::format::SEGMENT_HEADER_BYTES + stored as u64;
    }
    Ok(total)
}

/// One batch on its way through the pipeline: the input bytes of its pieces, and the frames coded
/// from them (buffers reused from batch to batch: fresh pages cost more kernel time than coding).
#[derive(Default)]
struct Batch {
    pieces: Vec<Piece>,
    input: Vec<u8>,
    frames: Vec<Vec<u8>>,
    /// Per piece, the frame's length, or `None` to store the piece raw.
    lens: Vec<Option<usize>>,
}

impl Batch {
    fn code<S: Source + ?Sized>(
        &mut self,
        source: &S,
        pieces: Vec<Piece>,
        tensors: &[TensorEntry],
        books: &[Option<Arc<Family>>],
        opts: EncodeOptions,
    ) -> Result<(), ContainerError> {
        self.pieces = pieces;
        read_batch(source, &self.pieces, &mut self.input)?;
        let base = self.pieces[0].start;
        let input = &self.input;
        self.frames.resize_with(self.frames.len().max(self.pieces.len()), Vec::new);
        // Pieces are coded in parallel; a frame's own chunks too only when there are too few
        // pieces to keep every thread busy (its parallel path stages and copies its chunks).
        let opts = EncodeOptions { parallel: self.pieces.len() < 2 * rayon::current_num_threads(), ..opts };
        self.lens = self
            .pieces
            .par_iter()
            .zip(self.frames.par_iter_mut())
            .map(|(p, frame)| {
                let data = &input[(p.start - base) as usize..(p.end - base) as usize];
                let Some(book) = &books[p.tensor] else { return Ok(None) };
                code_piece(book, data, frame, opts).map_err(|e| ContainerError::Tensor { tensor: tensors[p.tensor].name.clone(), reason: e.to_string() })
            })
            .collect::<Result<_, ContainerError>>()?;
        Ok(())
    }

    fn write<W: Write>(&self, writer: &mut ContainerWriter<W>) -> Result<(), ContainerError> {
        let base = self.pieces[0].start;
        for ((p, n), frame) in self.pieces.iter().zip(&self.lens).zip(&self.frames) {
            match n {
                Some(n) => writer.frame(&frame[..*n])?,
                None => writer.raw(&self.input[(p.start - base) as usize..(p.end - base) as usize])?,
            }
        }
        Ok(())
    }
}

/// Compresses the safetensors file `source` into a container written to `out`, a batch at a time:
/// memory is a few batches ([`BATCH_BYTES`]) whatever the file's size. `progress` gets the input
/// bytes of each batch coded.
pub fn compress<S: Source + ?Sized, W: Write + Send>(
    source: &S,
    coding: Coding,
    out: W,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(W, Compressed), ContainerError> {
    let (header, tensors) = read_source_header(source)?;
    let trained;
    let (books, embed): (Vec<Option<Arc<Family>>>, Option<&CodebookSet>) = match coding {
        Coding::Trained { name, families } => {
            let (set, plan) = train(source, &tensors, name, families)?;
            trained = set;
            (
                plan.iter()
                    .map(|c| c.as_deref().and_then(|c| trained.family(c)))
                    .collect(),
                Some(&trained),
            )
        }
        Coding::Set(set) => {
            let selector = ClassSelector::from_set(set).map_err(|e| ContainerError::Codebook(e.to_string()))?;
            let books = tensors
                .iter()
                .map(|t| {
                    let dtype = t.shuff_dtype()?;
                    let class = selector.class_where(&t.name, |c| {
                        set.codebook(c).is_some_and(|b| b.dtype() == dtype)
                    })?;
                    set.family(class)
                })
                .collect();
            (books, Some(set))
        }
        Coding::Class { set, class, filter } => {
            let book = set.family(class).ok_or_else(|| {
                ContainerError::Codebook(format!("class `{class}` is not in the codebook set"))
            })?;
            let books = tensors
                .iter()
                .map(|t| {
                    let selected = t.shuff_dtype() == Some(book.dtype()) && filter.is_none_or(|re| re.is_match(&t.name));
                    selected.then(|| Arc::clone(&book))
                })
                .collect();
            (books, None)
        }
    };
    let classes = match (&coding, embed) {
        (Coding::Class { set, .. }, _) => {
            check_fingerprints(set)?;
            1
        }
        (_, Some(set)) => {
            check_fingerprints(set)?;
            set.len()
        }
        (_, None) => 0,
    };

    let mut writer = ContainerWriter::new(out, embed)?;
    writer.safetensors_header(&header)?;
    let opts = PIECE_OPTIONS;
    let mut coded = vec![false; tensors.len()];
    // A pipeline of two: the writer thread writes batch k while this one reads and codes batch
    // k + 1 (writing alone kept a core idle a third of the time). Buffers travel back and forth,
    // so memory is two batches whatever the file's size.
    let (to_writer, written) = std::sync::mpsc::sync_channel::<Batch>(0);
    let (recycle, recycled) = std::sync::mpsc::channel::<Batch>();
    let finished = std::thread::scope(|scope| {
        let writer_thread = scope.spawn(move || -> Result<(W, u64), ContainerError> {
            for b in written {
                b.write(&mut writer)?;
                progress(b.input.len() as u64);
                let _ = recycle.send(b);
            }
            writer.finish()
        });
        let coding = (|| -> Result<(), ContainerError> {
            let mut spare = vec![Batch::default(), Batch::default()];
            for pieces in batches(&tensors) {
                let mut b = spare.pop().or_else(|| recycled.recv().ok()).unwrap_or_default();
                b.code(source, pieces, &tensors, &books, opts)?;
                for (p, n) in b.pieces.iter().zip(&b.lens) {
                    coded[p.tensor] |= n.is_some();
                }
                if to_writer.send(b).is_err() {
                    break; // the writer failed: its error is the one to report
                }
            }
            Ok(())
        })();
        drop(to_writer);
        let written = writer_thread.join().expect("the writer thread does not panic");
        coding.and(written)
    });
    let (out, output_bytes) = finished?;
    let summary = Compressed { tensors_coded: coded.iter().filter(|&&c| c).count(), classes, input_bytes: source.len(), output_bytes };
    Ok((out, summary))
}
