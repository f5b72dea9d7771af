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
use shuff::{decode_into, encode, CodebookSet, EncodeOptions, FrameInfo};

const MAGIC: &[u8; 8] = b"SHUFFST1";

/// Encodes every tensor of `file` that `filter` selects (and whose dtype the class codes) with
/// `class`'s codebook; everything else is kept raw.
pub fn encode_file(file: &[u8], set: &CodebookSet, class: &str, filter: Option<&Regex>) -> Result<(Vec<u8>, usize)> {
    let book = set.codebook(class).with_context(|| format!("class `{class}` is not in the codebook set"))?;
    let st = safetensors::SafeTensors::deserialize(file).context("not a valid safetensors file")?;
    let header_len = 8 + u64::from_le_bytes(file[..8].try_into().expect("validated")) as usize;
    let mut tensors: Vec<(usize, usize, bool)> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| {
            let start = v.data().as_ptr() as usize - file.as_ptr() as usize;
            let coded = crate::tensors::dtype_of(v.dtype()) == Some(book.dtype()) && filter.is_none_or(|re| re.is_match(&name));
            (start, start + v.data().len(), coded)
        })
        .collect();
    tensors.sort();
    let mut out = Vec::with_capacity(file.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header_len as u64).to_le_bytes());
    out.extend_from_slice(&file[..header_len]);
    let mut segments: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut pos = header_len;
    let mut coded = 0;
    for (start, end, code) in tensors {
        if start > pos {
            segments.push((0, file[pos..start].to_vec()));
        }
        if code {
            segments.push((1, encode(&book, &file[start..end], EncodeOptions { checksum: true, parallel: true })?));
            coded += 1;
        } else {
            segments.push((0, file[start..end].to_vec()));
        }
        pos = end.max(pos);
    }
    if pos < file.len() {
        segments.push((0, file[pos..].to_vec()));
    }
    out.extend_from_slice(&(segments.len() as u32).to_le_bytes());
    for (kind, bytes) in segments {
        out.push(kind);
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&bytes);
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
                let info = FrameInfo::parse(bytes).with_context(|| format!("segment {i}"))?;
                let fp = info.fingerprint.with_context(|| format!("segment {i}: a three-stage frame"))?;
                let (_, class) = set
                    .classes()
                    .find(|(_, c)| c.codebook.fingerprint().0 as u32 == fp)
                    .with_context(|| format!("segment {i} was encoded with codebook {fp:08x}…, which is not in this codebook set"))?;
                let start = out.len();
                out.resize(start + info.decoded_len()?, 0);
                decode_into(&class.codebook, bytes, &mut out[start..]).with_context(|| format!("segment {i}"))?;
            }
            k => bail!("segment {i}: unknown kind {k}"),
        }
    }
    if pos != data.len() {
        bail!("{} bytes after the last segment", data.len() - pos);
    }
    Ok(out)
}
