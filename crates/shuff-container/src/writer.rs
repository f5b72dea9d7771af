//! Writing a container front to back: segments as they are ready, the index and trailer at the end.

use crate::format::{preamble, SegmentHeader, SegmentKind, Trailer, FLAG_EMBEDDED_SET, INDEX_MAGIC, MAX_SEGMENT_BYTES};
use crate::ContainerError;
use shuff::{CodebookSet, FrameInfo};
use std::io::Write;

/// Streams a container to `W`. Segments are written in the order of the restored file.
pub struct ContainerWriter<W: Write> {
    out: W,
    pos: u64,
    index: Vec<(u64, SegmentHeader)>,
    restored_crc: crc32fast::Hasher,
    restored_len: u64,
    flags: u32,
}

impl<W: Write> ContainerWriter<W> {
    /// Starts a file; with `set`, the set is embedded so the file can be restored on its own.
    pub fn new(out: W, set: Option<&CodebookSet>) -> Result<Self, ContainerError> {
        let flags = if set.is_some() { FLAG_EMBEDDED_SET } else { 0 };
        let mut w = ContainerWriter { out, pos: 0, index: Vec::new(), restored_crc: crc32fast::Hasher::new(), restored_len: 0, flags };
        w.put(&preamble(flags))?;
        if let Some(set) = set {
            let bytes = set.to_bytes();
            let crc = crc32fast::hash(&bytes);
            w.segment(SegmentHeader { kind: SegmentKind::CodebookSet, crc, stored_len: bytes.len() as u64, restored_len: bytes.len() as u64 }, &bytes)?;
        }
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ContainerError> {
        self.out.write_all(bytes).map_err(ContainerError::io("writing the container"))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn segment(&mut self, h: SegmentHeader, stored: &[u8]) -> Result<(), ContainerError> {
        // What we write must pass our own reader's checks.
        SegmentHeader::parse(&h.to_bytes(), self.index.len() as u64)?;
        self.index.push((self.pos, h));
        self.put(&h.to_bytes())?;
        self.put(stored)?;
        if h.kind.restores() {
            self.restored_crc.combine(&crc32fast::Hasher::new_with_initial_len(h.crc, h.restored_len));
            self.restored_len += h.restored_len;
        }
        Ok(())
    }

    /// The original safetensors header (8-byte length and JSON), stored as it is.
    pub fn safetensors_header(&mut self, header: &[u8]) -> Result<(), ContainerError> {
        let len = header.len() as u64;
        self.segment(SegmentHeader { kind: SegmentKind::SafetensorsHeader, crc: crc32fast::hash(header), stored_len: len, restored_len: len }, header)
    }

    /// Data stored as it is (at most [`MAX_SEGMENT_BYTES`]).
    pub fn raw(&mut self, data: &[u8]) -> Result<(), ContainerError> {
        let len = data.len() as u64;
        debug_assert!(len <= MAX_SEGMENT_BYTES);
        self.segment(SegmentHeader { kind: SegmentKind::Raw, crc: crc32fast::hash(data), stored_len: len, restored_len: len }, data)
    }

    /// Data coded as a shuff frame, which must carry a checksum (its CRC-32 becomes the segment's).
    pub fn frame(&mut self, frame: &[u8]) -> Result<(), ContainerError> {
        let info = FrameInfo::parse(frame).map_err(|e| ContainerError::BadSegment { segment: self.index.len() as u64, what: e.to_string() })?;
        let crc = info.checksum.ok_or_else(|| ContainerError::BadSegment { segment: self.index.len() as u64, what: "frame has no checksum".into() })?;
        let restored_len = info.decoded_len().map_err(|e| ContainerError::BadSegment { segment: self.index.len() as u64, what: e.to_string() })? as u64;
        self.segment(SegmentHeader { kind: SegmentKind::Frame, crc, stored_len: frame.len() as u64, restored_len }, frame)
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Writes the index and trailer; returns the output and the file's length.
    pub fn finish(mut self) -> Result<(W, u64), ContainerError> {
        let index_offset = self.pos;
        let mut index = Vec::with_capacity(INDEX_MAGIC.len() + self.index.len() * 32);
        index.extend_from_slice(&INDEX_MAGIC);
        for (offset, h) in &self.index {
            index.extend_from_slice(&offset.to_le_bytes());
            index.extend_from_slice(&h.to_bytes());
        }
        let trailer = Trailer {
            index_offset,
            segments: self.index.len() as u64,
            restored_len: self.restored_len,
            restored_crc: self.restored_crc.clone().finalize(),
            index_crc: crc32fast::hash(&index),
            flags: self.flags,
        };
        self.put(&index)?;
        self.put(&trailer.to_bytes())?;
        self.out.flush().map_err(ContainerError::io("writing the container"))?;
        Ok((self.out, self.pos))
    }
}
