//! Reading a container: everything is checked against the bytes present before it is trusted, and
//! memory stays bounded by the format's constants whatever the file claims.

use crate::format::{
    parse_preamble, SegmentHeader, SegmentKind, Trailer, FLAG_EMBEDDED_SET, INDEX_ENTRY_BYTES, INDEX_MAGIC, PREAMBLE_BYTES, SEGMENT_HEADER_BYTES,
    TRAILER_BYTES,
};
use crate::source::Source;
use crate::tensors::{grown, parse_header, TensorEntry};
use crate::{ContainerError, BATCH_BYTES};
use rayon::prelude::*;
use shuff::{CodebookSet, Family, FrameInfo};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

/// One segment, as the index places it.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    /// Its header.
    pub header: SegmentHeader,
    /// File offset of the header (the stored bytes follow it).
    pub offset: u64,
    /// Where its restored bytes start in the restored file (segments that restore nothing: where
    /// the next one starts).
    pub restored_start: u64,
}

/// The codebook families frames can name, by the 32-bit fingerprint they carry.
enum Book {
    One(Arc<Family>),
    /// Two classes share a 32-bit fingerprint: a frame naming it cannot be decoded with certainty.
    Ambiguous(String, String),
}

/// An open container. Opening reads and checks the preamble, trailer, index, embedded codebook
/// set and safetensors header; data segments are read on demand.
pub struct Container<S: Source> {
    source: S,
    flags: u32,
    trailer: Trailer,
    segments: Vec<Segment>,
    embedded: Option<CodebookSet>,
    books: HashMap<u32, Book>,
    header: Vec<u8>,
    tensors: Vec<TensorEntry>,
    /// The first data segment: the layout rules put the set (if any) and the safetensors header
    /// before it, and only data segments after it.
    data_start: usize,
}

fn codebooks_by_fingerprint(set: &CodebookSet) -> HashMap<u32, Book> {
    // Classes with identical families share a fingerprint harmlessly; only different families
    // under one 32-bit fingerprint make a frame ambiguous.
    let mut books: HashMap<u32, (String, Book)> = HashMap::new();
    for (name, c) in set.classes() {
        let fp = c.family.fingerprint();
        match books.get(&(fp.0 as u32)) {
            Some((_, Book::One(b))) if b.fingerprint() == fp => {}
            Some((other, _)) => {
                let other = other.clone();
                books.insert(fp.0 as u32, (other.clone(), Book::Ambiguous(other, name.to_string())));
            }
            None => {
                books.insert(
                    fp.0 as u32,
                    (name.to_string(), Book::One(Arc::clone(&c.family))),
                );
            }
        }
    }
    books.into_iter().map(|(fp, (_, b))| (fp, b)).collect()
}

impl<S: Source> Container<S> {
    /// Opens and checks a container.
    pub fn open(source: S) -> Result<Self, ContainerError> {
        let len = source.len();
        let min = PREAMBLE_BYTES + INDEX_MAGIC.len() as u64 + TRAILER_BYTES;
        let mut preamble = [0u8; PREAMBLE_BYTES as usize];
        let head = (len as usize).min(preamble.len());
        source.read_exact_at(&mut preamble[..head], 0).map_err(ContainerError::io("reading the preamble"))?;
        let flags = parse_preamble(&preamble[..head])?;
        if len < min {
            return Err(ContainerError::Truncated(format!("{len} bytes is less than an empty container")));
        }
        let mut tb = [0u8; TRAILER_BYTES as usize];
        source.read_exact_at(&mut tb, len - TRAILER_BYTES).map_err(ContainerError::io("reading the trailer"))?;
        let trailer = Trailer::parse(&tb, len)?;
        if trailer.flags != flags {
            return Err(ContainerError::BadIndex(format!("the trailer's flags {:#x} differ from the preamble's {flags:#x}", trailer.flags)));
        }
        // Trailer::parse proved that the index fills the bytes before the trailer: its size is
        // bounded by the file's.
        let index_len = (len - TRAILER_BYTES - trailer.index_offset) as usize;
        let mut index = vec![0u8; index_len];
        source.read_exact_at(&mut index, trailer.index_offset).map_err(ContainerError::io("reading the index"))?;
        if index[..8] != INDEX_MAGIC {
            return Err(ContainerError::BadIndex("no index magic where the trailer says the index starts".into()));
        }
        let crc = crc32fast::hash(&index);
        if crc != trailer.index_crc {
            return Err(ContainerError::Checksum(format!("index CRC-32 is {crc:08x}, the trailer says {:08x}", trailer.index_crc)));
        }

        let mut segments = Vec::with_capacity(trailer.segments as usize);
        let (mut at, mut restored) = (PREAMBLE_BYTES, 0u64);
        let mut whole = crc32fast::Hasher::new();
        for (i, entry) in index[8..].chunks_exact(INDEX_ENTRY_BYTES as usize).enumerate() {
            let i = i as u64;
            let offset = crate::format::u64_at(entry, 0);
            let header = SegmentHeader::parse(entry[8..].try_into().expect("24 bytes"), i)?;
            if offset != at {
                return Err(ContainerError::BadIndex(format!("segment {i} is indexed at byte {offset}, but the previous one ends at {at}")));
            }
            at = offset
                .checked_add(SEGMENT_HEADER_BYTES)
                .and_then(|n| n.checked_add(header.stored_len))
                .filter(|&end| end <= trailer.index_offset)
                .ok_or_else(|| ContainerError::BadIndex(format!("segment {i} ({} bytes at {offset}) runs into the index", header.stored_len)))?;
            segments.push(Segment { header, offset, restored_start: restored });
            if header.kind.restores() {
                restored = restored
                    .checked_add(header.restored_len)
                    .ok_or_else(|| ContainerError::BadIndex("restored length overflows".into()))?;
                whole.combine(&crc32fast::Hasher::new_with_initial_len(header.crc, header.restored_len));
            }
        }
        if at != trailer.index_offset {
            return Err(ContainerError::BadIndex(format!("{} bytes between the last segment and the index", trailer.index_offset - at)));
        }
        if restored != trailer.restored_len {
            return Err(ContainerError::BadIndex(format!("segments restore {restored} bytes, the trailer says {}", trailer.restored_len)));
        }
        let crc = whole.finalize();
        if crc != trailer.restored_crc {
            return Err(ContainerError::Checksum(format!(
                "the segments' CRC-32s combine to {crc:08x}, the trailer says {:08x} (segments dropped, repeated or reordered?)",
                trailer.restored_crc
            )));
        }

        // Layout rules: [set] then the safetensors header, then data segments.
        let mut kinds = segments.iter().map(|s| s.header.kind);
        let mut first = kinds.next();
        let has_set = first == Some(SegmentKind::CodebookSet);
        if has_set != (flags & FLAG_EMBEDDED_SET != 0) {
            return Err(ContainerError::BadIndex("the flags and the first segment disagree on an embedded codebook set".into()));
        }
        if has_set {
            first = kinds.next();
        }
        if first != Some(SegmentKind::SafetensorsHeader) {
            return Err(ContainerError::BadIndex("no safetensors header where it belongs".into()));
        }
        if let Some(k) = kinds.find(|k| !matches!(k, SegmentKind::Raw | SegmentKind::Frame)) {
            return Err(ContainerError::BadIndex(format!("a {k:?} segment among the data segments")));
        }

        let header_at = usize::from(has_set);
        let data_start = header_at + 1;
        let mut c = Container { source, flags, trailer, segments, embedded: None, books: HashMap::new(), header: Vec::new(), tensors: Vec::new(), data_start };
        if has_set {
            let bytes = c.read_plain(0)?;
            let set = CodebookSet::from_bytes(&bytes).map_err(|e| ContainerError::Codebook(format!("embedded set: {e}")))?;
            c.books = codebooks_by_fingerprint(&set);
            c.embedded = Some(set);
        }
        c.header = c.read_plain(header_at)?;
        c.tensors = parse_header(&c.header, c.trailer.restored_len)?;
        Ok(c)
    }

    /// Decodes frames with `set` (for files that do not embed theirs, like `shuff encode`'s; it
    /// replaces an embedded one).
    pub fn with_codebooks(mut self, set: &CodebookSet) -> Self {
        self.books = codebooks_by_fingerprint(set);
        self
    }

    /// Whether the file carries its codebook set.
    pub fn embeds_codebooks(&self) -> bool {
        self.flags & FLAG_EMBEDDED_SET != 0
    }

    /// The embedded codebook set.
    pub fn embedded_codebooks(&self) -> Option<&CodebookSet> {
        self.embedded.as_ref()
    }

    /// All segments, in file order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The tensors of the stored safetensors header, in data order.
    pub fn tensors(&self) -> &[TensorEntry] {
        &self.tensors
    }

    /// The stored safetensors header (length prefix and JSON).
    pub fn safetensors_header(&self) -> &[u8] {
        &self.header
    }

    /// Bytes of the restored file.
    pub fn restored_len(&self) -> u64 {
        self.trailer.restored_len
    }

    /// Bytes of the container file.
    pub fn file_len(&self) -> u64 {
        self.source.len()
    }

    /// The codebook family a frame segment was coded with, by the fingerprint in its header.
    pub fn family_of(&self, frame: &[u8]) -> Result<Arc<Family>, ContainerError> {
        let info = FrameInfo::parse(frame).map_err(|e| ContainerError::Codebook(e.to_string()))?;
        self.codebook_named(&info)
    }

    /// The codebook family a frame with header `info` names.
    fn codebook_named(&self, info: &FrameInfo) -> Result<Arc<Family>, ContainerError> {
        let fp = info
            .fingerprint
            .ok_or_else(|| ContainerError::Codebook("a three-stage frame in a container".into()))?;
        match self.books.get(&fp) {
            Some(Book::One(b)) => Ok(Arc::clone(b)),
            Some(Book::Ambiguous(a, b)) => {
                Err(ContainerError::Codebook(format!("classes `{a}` and `{b}` share the 32-bit fingerprint {fp:08x} that a frame names")))
            }
            None if self.books.is_empty() => Err(ContainerError::MissingCodebook(format!(
                "frames coded with codebook {fp:08x}…, and the file carries no codebook set: give the set it was encoded with"
            ))),
            None => Err(ContainerError::MissingCodebook(format!("frame made with codebook {fp:08x}…, which is not in this codebook set"))),
        }
    }

    /// The stored bytes of segments `range` (headers included), read in one go, each header
    /// checked against the index.
    /// (Into `buf`, which callers reuse: fresh pages for every batch cost more kernel time
    /// than the decoding.)
    /// Returns the bytes read, at the start of `buf` (which only grows: see [`grown`]).
    fn read_stored(&self, range: std::ops::Range<usize>, buf: &mut Vec<u8>) -> Result<usize, ContainerError> {
        let (first, last) = (&self.segments[range.start], &self.segments[range.end - 1]);
        let end = last.offset + SEGMENT_HEADER_BYTES + last.header.stored_len;
        // Bounded: segments are at most MAX_SEGMENT_BYTES (+ frame overhead) each, and callers
        // read at most a batch.
        let len = (end - first.offset) as usize;
        self.source.read_exact_at(grown(buf, len), first.offset).map_err(ContainerError::io(format!("reading segments {}..{}", range.start, range.end)))?;
        for (i, s) in self.segments[range.clone()].iter().enumerate() {
            let at = (s.offset - first.offset) as usize;
            let stored = SegmentHeader::parse(buf[at..at + SEGMENT_HEADER_BYTES as usize].try_into().expect("24 bytes"), (range.start + i) as u64)?;
            if stored != s.header {
                return Err(ContainerError::BadSegment { segment: (range.start + i) as u64, what: "its header differs from the index's copy".into() });
            }
        }
        Ok(len)
    }

    /// A segment stored as it is (set, header), checked.
    fn read_plain(&self, i: usize) -> Result<Vec<u8>, ContainerError> {
        let mut buf = Vec::new();
        let len = self.read_stored(i..i + 1, &mut buf)?;
        buf.truncate(len);
        buf.drain(..SEGMENT_HEADER_BYTES as usize);
        let crc = crc32fast::hash(&buf);
        if crc != self.segments[i].header.crc {
            return Err(ContainerError::Checksum(format!("segment {i}: CRC-32 {crc:08x}, stored {:08x}", self.segments[i].header.crc)));
        }
        Ok(buf)
    }

    /// Restores data segment `i` from its stored bytes into `out` (its restored length),
    /// checking its CRC.
    fn restore_segment(&self, i: usize, stored: &[u8], out: &mut [u8]) -> Result<(), ContainerError> {
        let h = self.segments[i].header;
        let bad = |what: String| ContainerError::BadSegment { segment: i as u64, what };
        match h.kind {
            SegmentKind::Frame => {
                let info = FrameInfo::parse(stored).map_err(|e| bad(e.to_string()))?;
                if info.checksum != Some(h.crc) || info.decoded_len().ok() != Some(out.len()) {
                    return Err(bad("the frame's header disagrees with the segment's (length or CRC)".into()));
                }
                let family = self.codebook_named(&info)?;
                family
                    .decode_into(stored, out)
                    .map_err(|e| bad(e.to_string()))
            }
            _ => {
                out.copy_from_slice(stored);
                let crc = crc32fast::hash(out);
                if crc != h.crc {
                    return Err(ContainerError::Checksum(format!("segment {i}: CRC-32 {crc:08x}, stored {:08x}", h.crc)));
                }
                Ok(())
            }
        }
    }

    /// Restores segments `range` into `out` (their restored bytes, back to back), in parallel.
    fn restore_segments(&self, range: std::ops::Range<usize>, stored: &mut Vec<u8>, out: &mut [u8]) -> Result<(), ContainerError> {
        self.read_stored(range.clone(), stored)?;
        let base = self.segments[range.start].offset;
        let mut jobs = Vec::with_capacity(range.len());
        let mut rest = out;
        for i in range {
            let s = &self.segments[i];
            let (dst, tail) = rest.split_at_mut(s.header.restored_len as usize);
            rest = tail;
            let at = (s.offset - base + SEGMENT_HEADER_BYTES) as usize;
            jobs.push((i, &stored[at..at + s.header.stored_len as usize], dst));
        }
        jobs.into_par_iter().try_for_each(|(i, src, dst)| self.restore_segment(i, src, dst))
    }

    /// The restored bytes `start..end` (e.g. one tensor), reading only the segments they lie in.
    pub fn read_range(&self, start: u64, end: u64) -> Result<Vec<u8>, ContainerError> {
        if start > end || end > self.trailer.restored_len {
            return Err(ContainerError::Tensor { tensor: format!("bytes {start}..{end}"), reason: "outside the file".into() });
        }
        let mut out = vec![0u8; (end - start) as usize];
        self.read_range_into(start, &mut out)?;
        Ok(out)
    }

    /// Fills `out` with the restored bytes from `start` on, reading only the segments they lie in.
    pub fn read_range_into(&self, start: u64, out: &mut [u8]) -> Result<(), ContainerError> {
        if start.checked_add(out.len() as u64).is_none_or(|end| end > self.trailer.restored_len) {
            return Err(ContainerError::Tensor { tensor: format!("bytes from {start}"), reason: "outside the file".into() });
        }
        // Every segment that restores: the safetensors header's, then the data segments.
        let base = self.data_start - 1;
        let restoring = &self.segments[base..];
        // The first of them whose restored bytes reach past `start`.
        let mut k = restoring.partition_point(|s| s.restored_start + s.header.restored_len <= start);
        let mut filled = 0usize;
        let (mut buf, mut stored) = (Vec::new(), Vec::new());
        while filled < out.len() {
            let Some(&s) = restoring.get(k) else {
                return Err(ContainerError::BadIndex("the data segments end before the restored length".into()));
            };
            let i = base + k;
            let from = (start + filled as u64).saturating_sub(s.restored_start) as usize;
            let n = (s.header.restored_len as usize - from).min(out.len() - filled);
            if from == 0 && n == s.header.restored_len as usize {
                self.restore_segments(i..i + 1, &mut stored, &mut out[filled..filled + n])?;
            } else {
                buf.resize(s.header.restored_len as usize, 0);
                self.restore_segments(i..i + 1, &mut stored, &mut buf)?;
                out[filled..filled + n].copy_from_slice(&buf[from..from + n]);
            }
            filled += n;
            k += 1;
        }
        Ok(())
    }

    /// The bytes of the tensor called `name`.
    pub fn tensor(&self, name: &str) -> Result<(&TensorEntry, Vec<u8>), ContainerError> {
        let t = self.tensors.iter().find(|t| t.name == name).ok_or_else(|| ContainerError::NoSuchTensor(name.into()))?;
        Ok((t, self.read_range(t.start, t.end)?))
    }

    /// Restores the whole original file into `out`, a batch of segments at a time (memory: about
    /// two batches, whatever the file's size). `progress` gets the restored bytes of each batch.
    /// On error, what was written so far is incomplete: write to an [`crate::AtomicFile`].
    pub fn restore_to<W: Write + Send>(&self, mut out: W, progress: &(dyn Fn(u64) + Sync)) -> Result<W, ContainerError> {
        out.write_all(&self.header).map_err(ContainerError::io("writing the restored file"))?;
        let data_start = self.data_start;
        // A pipeline of two, as in compression: the writer thread writes batch k while this one
        // reads and decodes batch k + 1; the (restored, stored) buffers travel back and forth
        // with the batch's restored length, as they only grow (resizing them to each batch
        // zero-filled the difference: 1% of decompressing a checkpoint).
        type Buffers = (Vec<u8>, Vec<u8>, usize);
        let (to_writer, written) = std::sync::mpsc::sync_channel::<Buffers>(0);
        let (recycle, recycled) = std::sync::mpsc::channel::<Buffers>();
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> Result<W, ContainerError> {
                for (buf, stored, len) in written {
                    out.write_all(&buf[..len]).map_err(ContainerError::io("writing the restored file"))?;
                    progress(len as u64);
                    let _ = recycle.send((buf, stored, len));
                }
                out.flush().map_err(ContainerError::io("writing the restored file"))?;
                Ok(out)
            });
            let decoding = (|| -> Result<(), ContainerError> {
                let mut spare = vec![Buffers::default(), Buffers::default()];
                let mut i = data_start;
                while i < self.segments.len() {
                    let (mut j, mut bytes) = (i, 0u64);
                    while j < self.segments.len() && (j == i || bytes + self.segments[j].header.restored_len <= BATCH_BYTES) {
                        bytes += self.segments[j].header.restored_len;
                        j += 1;
                    }
                    let (mut buf, mut stored, _) = spare.pop().or_else(|| recycled.recv().ok()).unwrap_or_default();
                    self.restore_segments(i..j, &mut stored, grown(&mut buf, bytes as usize))?;
                    if to_writer.send((buf, stored, bytes as usize)).is_err() {
                        break; // the writer failed: its error is the one to report
                    }
                    i = j;
                }
                Ok(())
            })();
            drop(to_writer);
            let written = writer.join().expect("the writer thread does not panic");
            decoding.and(written)
        })
    }
}

/// One tensor as stored, for listings (`shuff inspect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTensor {
    /// Tensor name.
    pub name: String,
    /// Class of the codebook of its frames (`None`: stored raw, or a codebook not at hand).
    pub class: Option<String>,
    /// shuff dtype and layout of its frames' codebook.
    pub coding: Option<(shuff::DType, shuff::Layout)>,
    /// Its size in bytes.
    pub original_bytes: u64,
    /// Bytes its segments take in the file (headers included).
    pub stored_bytes: u64,
}

impl<S: Source> Container<S> {
    /// Per tensor: how it is stored, from the index and each frame's header (nothing is decoded).
    pub fn stored_tensors(&self) -> Result<Vec<StoredTensor>, ContainerError> {
        let names: HashMap<u32, &str> = self
            .embedded
            .iter()
            .flat_map(|set| set.classes())
            .map(|(name, c)| (c.family.fingerprint().0 as u32, name))
            .collect();
        let mut rows: Vec<StoredTensor> = self
            .tensors
            .iter()
            .map(|t| StoredTensor { name: t.name.clone(), class: None, coding: None, original_bytes: t.len(), stored_bytes: 0 })
            .collect();
        for s in self.segments.iter().filter(|s| matches!(s.header.kind, SegmentKind::Raw | SegmentKind::Frame)) {
            // The tensor this segment's bytes start in.
            let t = self.tensors.partition_point(|t| t.end <= s.restored_start);
            let Some(row) = rows.get_mut(t) else { continue };
            row.stored_bytes += SEGMENT_HEADER_BYTES + s.header.stored_len;
            if s.header.kind == SegmentKind::Frame {
                let mut head = [0u8; shuff::frame::MAX_HEADER_BYTES];
                let n = (s.header.stored_len as usize).min(head.len());
                self.source.read_exact_at(&mut head[..n], s.offset + SEGMENT_HEADER_BYTES).map_err(ContainerError::io("reading a frame header"))?;
                let info = FrameInfo::parse(&head[..n]).map_err(|e| ContainerError::BadSegment { segment: 0, what: e.to_string() })?;
                row.coding = Some((info.dtype, info.layout));
                row.class = info.fingerprint.and_then(|fp| names.get(&fp)).map(|n| n.to_string());
            }
        }
        Ok(rows)
    }
}
