//! `shuff encode` / `shuff decode` of whole safetensors files: the file's header is kept verbatim
//! and every selected tensor becomes one shuff frame, so decoding restores the file bit for bit.
//! Codebooks are *not* stored (the book is named on both sides, as in a collective); a frame made
//! with another book is detected by its fingerprint.
//!
//! Layout (little-endian): `"SHUFFST1"`, u64 length of the original header (the safetensors 8-byte
//! length prefix and JSON), that header, u32 segment count, then per segment: u8 kind (0 = raw
//! bytes, 1 = shuff frame), u64 length, the bytes. Segments, in order, rebuild the data area.

use anyhow::{bail, Context, Result};
use regex::Regex;
use shuff::{decode_into, encode, Codebook, CodebookSet, DType, EncodeOptions, FrameInfo};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"SHUFFST1";

/// One tensor (or a gap between tensors) of the data area, in file order.
pub(crate) struct Piece<'a> {
    pub name: String,
    pub dtype: Option<DType>,
    pub data: &'a [u8],
}

/// The data area of a safetensors file cut into tensors and gaps, so that concatenating the
/// pieces restores it exactly (even for files with unusual ordering or padding).
pub(crate) fn pieces(file: &[u8]) -> Result<(usize, Vec<Piece<'_>>)> {
    let st = safetensors::SafeTensors::deserialize(file).context("not a valid safetensors file")?;
    let header_len = 8 + u64::from_le_bytes(file[..8].try_into().expect("validated")) as usize;
    let mut tensors: Vec<(usize, Piece)> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let start = v.data().as_ptr() as usize - file.as_ptr() as usize;
            (start, Piece { name, dtype: crate::tensors::dtype_of(v.dtype()), data: &file[start..start + v.data().len()] })
        })
        .collect();
    tensors.sort_by_key(|(start, _)| *start);
    let mut out = Vec::new();
    let mut pos = header_len;
    for (start, piece) in tensors {
        if start < pos {
            bail!("tensor `{}` overlaps the previous one", piece.name);
        }
        if start > pos {
            out.push(Piece { name: String::new(), dtype: None, data: &file[pos..start] });
        }
        pos = start + piece.data.len();
        out.push(piece);
    }
    if pos < file.len() {
        out.push(Piece { name: String::new(), dtype: None, data: &file[pos..] });
    }
    Ok((header_len, out))
}

/// The codebook of `set` a frame was made with, found by the fingerprint the frame carries.
pub(crate) fn frame_codebook<'s>(set: &'s CodebookSet, frame: &[u8]) -> Result<(&'s str, Arc<Codebook>)> {
    let fp = FrameInfo::parse(frame)?.fingerprint.context("a three-stage frame, which carries its own code")?;
    set.classes()
        .find(|(_, c)| c.codebook.fingerprint().0 as u32 == fp)
        .map(|(n, c)| (n, Arc::clone(&c.codebook)))
        .with_context(|| format!("frame made with codebook {fp:08x}…, which is not in this codebook set"))
}

/// Encodes every tensor of `file` that `filter` selects (and whose dtype the class codes) with
/// `class`'s codebook; everything else is kept raw.
pub fn encode_file(file: &[u8], set: &CodebookSet, class: &str, filter: Option<&Regex>) -> Result<(Vec<u8>, usize)> {
    let book = set.codebook(class).with_context(|| format!("class `{class}` is not in the codebook set"))?;
    let (header_len, pieces) = pieces(file)?;
    let mut out = Vec::with_capacity(file.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header_len as u64).to_le_bytes());
    out.extend_from_slice(&file[..header_len]);
    out.extend_from_slice(&(pieces.len() as u32).to_le_bytes());
    let mut coded = 0;
    for p in pieces {
        let code = !p.name.is_empty() && p.dtype == Some(book.dtype()) && filter.is_none_or(|re| re.is_match(&p.name));
        let frame;
        let (kind, bytes) = if code {
            coded += 1;
            frame = encode(&book, p.data, EncodeOptions { checksum: true, parallel: true, ..Default::default() })?;
            (1u8, frame.as_slice())
        } else {
            (0u8, p.data)
        };
        out.push(kind);
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    Ok((out, coded))
}

pub(crate) fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize, what: &str) -> Result<&'a [u8]> {
    let end = pos.checked_add(n).filter(|&e| e <= buf.len()).with_context(|| format!("truncated shuff file: {what}"))?;
    let s = &buf[*pos..end];
    *pos = end;
    Ok(s)
}

pub(crate) fn u64_at(buf: &[u8], pos: &mut usize, what: &str) -> Result<usize> {
    let v = u64::from_le_bytes(take(buf, pos, 8, what)?.try_into().expect("8 bytes"));
    usize::try_from(v).with_context(|| format!("{what} is too large"))
}

/// Restores the original safetensors bytes.
pub fn decode_file(data: &[u8], set: &CodebookSet) -> Result<Vec<u8>> {
    let mut pos = 0;
    if take(data, &mut pos, 8, "magic")? != MAGIC {
        bail!("not a file written by `shuff encode` (bad magic)");
    }
    let header_len = u64_at(data, &mut pos, "header length")?;
    let mut out = take(data, &mut pos, header_len, "header")?.to_vec();
    let count = u32::from_le_bytes(take(data, &mut pos, 4, "segment count")?.try_into().expect("4 bytes"));
    for i in 0..count {
        let kind = take(data, &mut pos, 1, "segment kind")?[0];
        let len = u64_at(data, &mut pos, "segment length")?;
        let bytes = take(data, &mut pos, len, "segment")?;
        match kind {
            0 => out.extend_from_slice(bytes),
            1 => {
                let (_, book) = frame_codebook(set, bytes).with_context(|| format!("segment {i}"))?;
                let start = out.len();
                out.resize(start + FrameInfo::parse(bytes)?.decoded_len()?, 0);
                decode_into(&book, bytes, &mut out[start..]).with_context(|| format!("segment {i}"))?;
            }
            k => bail!("segment {i}: unknown kind {k}"),
        }
    }
    if pos != data.len() {
        bail!("{} bytes after the last segment", data.len() - pos);
    }
    Ok(out)
}
