//! [`CodebookSet`]: versioned, named classes → codebooks, with a readable JSON file format, a compact
//! binary form for embedding, and a C header export for hardware and firmware users.
//!
//! JSON (`format: "shuff-codebooks"`, `format_version: 1`):
//!
//! ```json
//! { "format": "shuff-codebooks", "format_version": 1, "name": "minilm", "version": 1,
//!   "classes": { "ffn1_act": { "dtype": "bf16", "layout": "bytes", "version": 1,
//!       "fingerprint": "9f3a…", "streams": [ { "fingerprint": "…", "lengths": [12, 11, …] } ],
//!       "provenance": { "trained_on": ["step000.safetensors", …], "batches": 4, … } } } }
//! ```
//!
//! A class whose codebook [`Family`] has more members than its codebook lists them after it:
//! JSON `"members": [ { "fingerprint": "…", "streams": [ … ] }, … ]` (members 1, 2, …; member 0
//! is the class's own `streams`), with `"family_fingerprint"`; such a set is written as
//! `format_version: 2` (version 1, without members, is still read and written when no class has
//! any). The provenance's `members` says what made each member.
//!
//! Binary (little-endian; provenance is not kept): `"SHCB"`, u8 format version (2, or 3 when some
//! class has members), u32 set version, u32 name length + name, u32 class count; per class: u32
//! name length + name, u8 dtype id, u8 layout id, u32 class version, u8 stream count, per stream 128
//! bytes of 4-bit `length − 1` (symbol `2i` in the low nibble of byte `i`), then the u64 codebook
//! fingerprint as a check; version 3 then has a u8 count of further members and, per member, its
//! streams and fingerprint the same way. Version 1 (still read) had u8 name lengths and a u16
//! class count: it cut longer names, so two long class names could collide and a cut could split a
//! UTF-8 character.

use crate::codebook::{Codebook, CodebookError, Fingerprint};
use crate::family::Family;
use crate::{DType, Layout};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// Where a class's codebook came from, kept in the JSON file so a reader can judge it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// What it was trained on (file names, step names), in batch order.
    pub trained_on: Vec<String>,
    /// Number of batches averaged.
    pub batches: usize,
    /// Symbols seen in training, over all streams.
    pub symbols: u64,
    /// How batches were combined: `average` (the paper's rule) or `ema(α)`.
    pub rule: String,
    /// The maximum code length requested.
    pub max_len: u32,
    /// Per stream: entropy of the training distribution, bits per symbol.
    pub training_entropy_bits: Vec<f64>,
    /// Per stream: expected code length on the training distribution, bits per symbol.
    pub expected_code_len_bits: Vec<f64>,
    /// The program that made it.
    pub created_by: String,
    /// How this class's tensors were picked from the inputs (a regex over tensor names; empty for
    /// all), so that later commands can assign tensors to classes the same way.
    #[serde(default)]
    pub selector: String,
    /// The class's place in the order classes are tried when assigning a tensor (the order they
    /// were given in training; see `crate::classes`). Ties, and sets without it, go by name.
    #[serde(default)]
    pub order: u32,
    /// What made each member of the class's family (member 0 first: `class`; then e.g. `shift -1`,
    /// `cluster 2`, per stream); empty for a family of one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// One class of a set.
#[derive(Clone, Debug)]
pub struct ClassBook {
    /// The class code: member 0 of `family`.
    pub codebook: Arc<Codebook>,
    /// The codes a frame of this class may use (the class code alone, or with members).
    pub family: Arc<Family>,
    /// Bumped each time the class gets a different code.
    pub version: u32,
    /// Where it came from.
    pub provenance: Provenance,
}

/// Named classes → codebooks, versioned as a whole.
#[derive(Clone, Debug, Default)]
pub struct CodebookSet {
    /// A name for the set (e.g. the model it was trained on).
    pub name: String,
    /// Bumped whenever any class changes.
    pub version: u32,
    classes: BTreeMap<String, ClassBook>,
}

#[derive(Serialize, Deserialize)]
struct SetFile {
    format: String,
    format_version: u32,
    name: String,
    version: u32,
    classes: BTreeMap<String, ClassFile>,
}

#[derive(Serialize, Deserialize)]
struct ClassFile {
    dtype: DType,
    layout: Layout,
    version: u32,
    fingerprint: String,
    streams: Vec<StreamFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    family_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    members: Vec<MemberFile>,
    #[serde(default)]
    provenance: Provenance,
}

#[derive(Serialize, Deserialize)]
struct MemberFile {
    fingerprint: String,
    streams: Vec<StreamFile>,
}

#[derive(Serialize, Deserialize)]
struct StreamFile {
    fingerprint: String,
    lengths: Vec<u8>,
}

const FORMAT: &str = "shuff-codebooks";
/// JSON format version written when some class has members (else 1, which is still read).
const FORMAT_VERSION: u32 = 2;
/// Version of the binary form written when some class has members (else 2); 1 and 2 are still read.
const BINARY_VERSION: u8 = 3;
const MAGIC: &[u8; 4] = b"SHCB";

impl CodebookSet {
    /// An empty set, version 1.
    pub fn new(name: impl Into<String>) -> Self {
        CodebookSet { name: name.into(), version: 1, classes: BTreeMap::new() }
    }

    /// Adds or replaces a class with a single codebook (a family of one).
    pub fn insert(&mut self, class: impl Into<String>, codebook: Codebook, provenance: Provenance) {
        self.insert_family(
            class,
            Family::new(vec![Arc::new(codebook)]).expect("one codebook is a family"),
            provenance,
        );
    }

    /// Adds or replaces a class with a codebook family. Replacing it with different codes bumps the
    /// class's and the set's version (a refreshed family also has a new fingerprint).
    pub fn insert_family(
        &mut self,
        class: impl Into<String>,
        family: Family,
        provenance: Provenance,
    ) {
        let class = class.into();
        let version = match self.classes.get(&class) {
            Some(old) if old.family.fingerprint() == family.fingerprint() => old.version,
            Some(old) => {
                self.version += 1;
                old.version + 1
            }
            None => 1,
        };
        let codebook = Arc::clone(&family.members()[0]);
        self.classes.insert(
            class,
            ClassBook {
                codebook,
                family: Arc::new(family),
                version,
                provenance,
            },
        );
    }

    /// Whether some class has more than one member (the set needs the newer file formats).
    fn has_members(&self) -> bool {
        self.classes.values().any(|c| c.family.members().len() > 1)
    }

    /// The classes in the order a tensor is offered to them (`Provenance::order`, then name).
    pub fn selection_order(&self) -> Vec<(&str, &ClassBook)> {
        let mut v: Vec<(&str, &ClassBook)> = self.classes.iter().map(|(n, c)| (n.as_str(), c)).collect();
        v.sort_by_key(|(n, c)| (c.provenance.order, *n));
        v
    }

    /// The class named `class`.
    pub fn get(&self, class: &str) -> Option<&ClassBook> {
        self.classes.get(class)
    }

    /// The codebook of `class` (member 0 of its family), shared.
    pub fn codebook(&self, class: &str) -> Option<Arc<Codebook>> {
        self.classes.get(class).map(|c| Arc::clone(&c.codebook))
    }

    /// The codebook family of `class`, shared: what encoders of the class use.
    pub fn family(&self, class: &str) -> Option<Arc<Family>> {
        self.classes.get(class).map(|c| Arc::clone(&c.family))
    }

    /// The class whose family has `fingerprint` (for a family of one: its codebook's).
    pub fn find_fingerprint(&self, fingerprint: Fingerprint) -> Option<(&str, &ClassBook)> {
        self.classes
            .iter()
            .find(|(_, c)| c.family.fingerprint() == fingerprint)
            .map(|(n, c)| (n.as_str(), c))
    }

    /// Class names, sorted.
    pub fn class_names(&self) -> impl Iterator<Item = &str> {
        self.classes.keys().map(String::as_str)
    }

    /// Classes, sorted by name.
    pub fn classes(&self) -> impl Iterator<Item = (&str, &ClassBook)> {
        self.classes.iter().map(|(n, c)| (n.as_str(), c))
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.classes.len()
    }

    /// Whether the set has no class.
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The readable JSON form (pretty-printed, lengths one stream per line).
    pub fn to_json(&self) -> String {
        let stream_files = |b: &Codebook| -> Vec<StreamFile> {
            b.streams()
                .iter()
                .map(|s| StreamFile {
                    fingerprint: s.fingerprint().to_string(),
                    lengths: s.lengths().to_vec(),
                })
                .collect()
        };
        let file = SetFile {
            format: FORMAT.into(),
            format_version: if self.has_members() {
                FORMAT_VERSION
            } else {
                1
            },
            name: self.name.clone(),
            version: self.version,
            classes: self
                .classes
                .iter()
                .map(|(name, c)| {
                    let members = &c.family.members()[1..];
                    let cf = ClassFile {
                        dtype: c.codebook.dtype(),
                        layout: c.codebook.layout(),
                        version: c.version,
                        fingerprint: c.codebook.fingerprint().to_string(),
                        streams: stream_files(&c.codebook),
                        family_fingerprint: (!members.is_empty())
                            .then(|| c.family.fingerprint().to_string()),
                        members: members
                            .iter()
                            .map(|m| MemberFile {
                                fingerprint: m.fingerprint().to_string(),
                                streams: stream_files(m),
                            })
                            .collect(),
                        provenance: c.provenance.clone(),
                    };
                    (name.clone(), cf)
                })
                .collect(),
        };
        let pretty = serde_json::to_string_pretty(&file).expect("codebook sets always serialize");
        compact_number_arrays(&pretty)
    }

    /// Parses and validates the JSON form. Every code is checked (complete, every symbol coded,
    /// at most 16 bits) and every stored fingerprint must match the lengths.
    pub fn from_json(text: &str) -> Result<Self, CodebookError> {
        let file: SetFile = serde_json::from_str(text).map_err(|e| CodebookError::Malformed(e.to_string()))?;
        if file.format != FORMAT {
            return Err(CodebookError::Malformed(format!("`format` is `{}`, expected `{FORMAT}`", file.format)));
        }
        if !(1..=FORMAT_VERSION).contains(&file.format_version) {
            return Err(CodebookError::Malformed(format!(
                "format_version {} is not supported (this shuff reads versions 1 to {FORMAT_VERSION})",
                file.format_version
            )));
        }
        let mut set = CodebookSet {
            name: file.name,
            version: file.version,
            classes: BTreeMap::new(),
        };
        let book_of = |what: &str,
                       fingerprint: &str,
                       streams: &[StreamFile],
                       dtype,
                       layout|
         -> Result<Codebook, CodebookError> {
            let lengths: Vec<Vec<u8>> = streams.iter().map(|s| s.lengths.clone()).collect();
            let book =
                Codebook::from_lengths(dtype, layout, &lengths).map_err(|e| in_class(what, e))?;
            check_fingerprint(what, fingerprint, book.fingerprint())?;
            for (k, (s, code)) in streams.iter().zip(book.streams()).enumerate() {
                check_fingerprint(
                    &format!("{what}` stream `{k}"),
                    &s.fingerprint,
                    code.fingerprint(),
                )?;
            }
            Ok(book)
        };
        for (name, c) in file.classes {
            let mut books = vec![Arc::new(book_of(
                &name,
                &c.fingerprint,
                &c.streams,
                c.dtype,
                c.layout,
            )?)];
            for (j, m) in c.members.iter().enumerate() {
                books.push(Arc::new(book_of(
                    &format!("{name}` member `{}", j + 1),
                    &m.fingerprint,
                    &m.streams,
                    c.dtype,
                    c.layout,
                )?));
            }
            let family = Family::new(books)
                .map_err(|e| CodebookError::Malformed(format!("class `{name}`: {e}")))?;
            match &c.family_fingerprint {
                Some(fp) => {
                    check_fingerprint(&format!("{name}` family"), fp, family.fingerprint())?
                }
                None if c.members.is_empty() => {}
                None => {
                    return Err(CodebookError::Malformed(format!(
                        "class `{name}` has members but no `family_fingerprint`"
                    )))
                }
            }
            let codebook = Arc::clone(&family.members()[0]);
            set.classes.insert(
                name,
                ClassBook {
                    codebook,
                    family: Arc::new(family),
                    version: c.version,
                    provenance: c.provenance,
                },
            );
        }
        Ok(set)
    }

    /// The compact binary form (no provenance).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        let with_members = self.has_members();
        out.push(if with_members { BINARY_VERSION } else { 2 });
        out.extend_from_slice(&self.version.to_le_bytes());
        push_name(&mut out, &self.name);
        out.extend_from_slice(&u32::try_from(self.classes.len()).expect("fewer than 2^32 classes").to_le_bytes());
        for (name, c) in &self.classes {
            push_name(&mut out, name);
            let b = &c.codebook;
            out.extend_from_slice(&[b.dtype().id(), b.layout().id()]);
            out.extend_from_slice(&c.version.to_le_bytes());
            out.push(b.streams().len() as u8);
            push_code(&mut out, b);
            if with_members {
                let members = &c.family.members()[1..];
                out.push(members.len() as u8);
                for m in members {
                    push_code(&mut out, m);
                }
            }
        }
        out
    }

    /// Parses either form, told apart by content (the binary form starts with `SHCB`): what a
    /// codebook file holds, whichever its name says.
    pub fn from_either(bytes: &[u8]) -> Result<Self, CodebookError> {
        if bytes.starts_with(MAGIC) {
            return CodebookSet::from_bytes(bytes);
        }
        let text = std::str::from_utf8(bytes).map_err(|_| CodebookError::Malformed("codebook data is neither JSON nor binary (`SHCB`)".into()))?;
        CodebookSet::from_json(text)
    }

    /// Parses and validates the binary form. Never panics, whatever the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CodebookError> {
        let mut r = ByteReader { bytes, pos: 0, wide: false };
        if r.take(4)? != MAGIC {
            return Err(CodebookError::Malformed("not a binary codebook set (magic is not `SHCB`)".into()));
        }
        let v = r.u8()?;
        if !(1..=BINARY_VERSION).contains(&v) {
            return Err(CodebookError::Malformed(format!("binary format version {v} is not supported (this shuff reads 1 to {BINARY_VERSION})")));
        }
        r.wide = v >= 2;
        let version = r.u32()?;
        let name = r.name()?;
        let count = if r.wide { r.u32()? } else { u32::from(r.u16()?) };
        let mut set = CodebookSet { name, version, classes: BTreeMap::new() };
        for _ in 0..count {
            let class = r.name()?;
            let dtype = DType::from_id(r.u8()?).ok_or_else(|| CodebookError::Malformed(format!("class `{class}`: unknown dtype id")))?;
            let layout =
                Layout::from_id(r.u8()?).ok_or_else(|| CodebookError::Malformed(format!("class `{class}`: unknown layout id")))?;
            let cversion = r.u32()?;
            let streams = r.u8()?;
            let mut books = vec![Arc::new(r.code(&class, dtype, layout, streams)?)];
            if v >= 3 {
                for _ in 0..r.u8()? {
                    books.push(Arc::new(r.code(&class, dtype, layout, streams)?));
                }
            }
            let family = Family::new(books)
                .map_err(|e| CodebookError::Malformed(format!("class `{class}`: {e}")))?;
            if set.classes.contains_key(&class) {
                return Err(CodebookError::Malformed(format!("class `{class}` appears twice")));
            }
            let codebook = Arc::clone(&family.members()[0]);
            let provenance = Provenance::default();
            set.classes.insert(
                class,
                ClassBook {
                    codebook,
                    family: Arc::new(family),
                    version: cversion,
                    provenance,
                },
            );
        }
        if r.pos != bytes.len() {
            return Err(CodebookError::Malformed(format!("{} trailing bytes after the last class", bytes.len() - r.pos)));
        }
        Ok(set)
    }

    /// A C header with, per class, each stream's canonical codes (MSB-first) and lengths, and the
    /// fingerprint, for hardware and firmware encoders.
    pub fn to_c_header(&self) -> String {
        let mut h = String::new();
        let guard = format!("SHUFF_{}_H", c_ident(&self.name).to_uppercase());
        let _ = writeln!(h, "/* shuff codebook set `{}` version {} — generated, do not edit.", self.name, self.version);
        let _ = writeln!(h, " * Canonical Huffman codes: code[s] holds the code of symbol s MSB-first in its low len[s]");
        let _ = writeln!(h, " * bits. shuff bitstreams are LSB-first: write the code's bits from its most significant");
        let _ = writeln!(h, " * bit down, each into the next free low bit. */");
        let _ = writeln!(h, "#ifndef {guard}\n#define {guard}\n#include <stdint.h>\n");
        for (name, c) in &self.classes {
            let id = c_ident(name);
            let b = &c.codebook;
            let n = b.streams().len();
            let _ = writeln!(h, "/* class `{name}`: dtype {}, layout {}, {} stream(s) */", b.dtype(), b.layout(), n);
            let _ = writeln!(h, "#define SHUFF_{}_FINGERPRINT 0x{}ULL", id.to_uppercase(), b.fingerprint());
            let _ = writeln!(h, "#define SHUFF_{}_STREAMS {n}", id.to_uppercase());
            let _ = writeln!(
                h,
                "#define SHUFF_{}_MAX_LEN {}",
                id.to_uppercase(),
                b.max_len()
            );
            // A family's further members: frames name the member per stream (docs/FORMAT.md) and
            // carry the family's fingerprint instead of the codebook's.
            let members = c.family.members();
            let _ = writeln!(
                h,
                "#define SHUFF_{}_MEMBERS {}",
                id.to_uppercase(),
                members.len()
            );
            let _ = writeln!(
                h,
                "#define SHUFF_{}_FAMILY_FINGERPRINT 0x{}ULL",
                id.to_uppercase(),
                c.family.fingerprint()
            );
            for (j, m) in members.iter().enumerate() {
                let name = if j == 0 {
                    id.clone()
                } else {
                    format!("{id}_member{j}")
                };
                if j > 0 {
                    let made = c
                        .provenance
                        .members
                        .get(j)
                        .map_or(String::new(), |m| format!(": {}", m.replace("*/", "* /")));
                    let _ = writeln!(
                        h,
                        "/* member {j} of `{}`{made} */",
                        name.replace("*/", "* /")
                    );
                }
                for (table, ty) in [("code", "uint16_t"), ("len", "uint8_t")] {
                    let _ = writeln!(h, "static const {ty} shuff_{name}_{table}[{n}][256] = {{");
                    for s in m.streams() {
                        let vals: Vec<String> = (0..256)
                            .map(|i| {
                                if table == "code" {
                                    format!("0x{:04x}", s.codes()[i])
                                } else {
                                    s.lengths()[i].to_string()
                                }
                            })
                            .collect();
                        let _ = writeln!(h, "  {{");
                        for row in vals.chunks(16) {
                            let _ = writeln!(h, "    {},", row.join(", "));
                        }
                        let _ = writeln!(h, "  }},");
                    }
                    let _ = writeln!(h, "}};");
                }
            }
            h.push('\n');
        }
        let _ = writeln!(h, "#endif /* {guard} */");
        h
    }
}

fn in_class(class: &str, e: CodebookError) -> CodebookError {
    match e {
        CodebookError::Malformed(m) => CodebookError::Malformed(format!("class `{class}`: {m}")),
        other => CodebookError::Malformed(format!("class `{class}`: {other}")),
    }
}

fn check_fingerprint(what: &str, stored: &str, computed: Fingerprint) -> Result<(), CodebookError> {
    let parsed: Fingerprint = stored.parse().map_err(|e| CodebookError::Malformed(format!("`{what}`: {e}")))?;
    if parsed != computed {
        return Err(CodebookError::FingerprintMismatch { class: what.to_string(), stored: parsed, computed });
    }
    Ok(())
}

/// A codebook's streams as 4-bit `length − 1`, then its fingerprint.
fn push_code(out: &mut Vec<u8>, b: &Codebook) {
    for s in b.streams() {
        for pair in s.lengths().chunks_exact(2) {
            out.push((pair[0] - 1) | ((pair[1] - 1) << 4));
        }
    }
    out.extend_from_slice(&b.fingerprint().0.to_le_bytes());
}

fn push_name(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(&u32::try_from(name.len()).expect("names under 4 GiB").to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

fn c_ident(s: &str) -> String {
    let id: String = s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if id.starts_with(|c: char| c.is_ascii_digit()) || id.is_empty() {
        format!("_{id}")
    } else {
        id
    }
}

/// Puts every array of plain numbers on one line: 256 lengths one per line is unreadable.
fn compact_number_arrays(pretty: &str) -> String {
    let mut out = String::with_capacity(pretty.len());
    let mut lines = pretty.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim_end().ends_with('[') {
            let mut items = Vec::new();
            let mut closing = None;
            let mut lookahead = lines.clone();
            for l in lookahead.by_ref() {
                let t = l.trim();
                if t.starts_with(']') {
                    closing = Some(t.to_string());
                    break;
                }
                let item = t.trim_end_matches(',');
                if item.parse::<f64>().is_err() {
                    break;
                }
                items.push(item.to_string());
            }
            if let (Some(close), false) = (closing, items.is_empty()) {
                for _ in 0..=items.len() {
                    lines.next();
                }
                out.push_str(line.trim_end());
                out.push_str(&items.join(", "));
                out.push_str(&close);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

struct ByteReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Version 2: u32 name lengths (version 1: u8).
    wide: bool,
}

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodebookError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            CodebookError::Malformed(format!("truncated: needed {n} bytes at offset {}, have {}", self.pos, self.bytes.len()))
        })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, CodebookError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, CodebookError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, CodebookError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn name(&mut self) -> Result<String, CodebookError> {
        let n = if self.wide { self.u32()? as usize } else { usize::from(self.u8()?) };
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| CodebookError::Malformed("a name is not UTF-8".into()))
    }
    /// One code of `streams` streams and its fingerprint (see the module docs), checked.
    fn code(
        &mut self,
        class: &str,
        dtype: DType,
        layout: Layout,
        streams: u8,
    ) -> Result<Codebook, CodebookError> {
        let mut lengths = Vec::new();
        for _ in 0..streams {
            let packed = self.take(128)?;
            lengths.push(
                packed
                    .iter()
                    .flat_map(|&b| [(b & 15) + 1, (b >> 4) + 1])
                    .collect::<Vec<u8>>(),
            );
        }
        let book =
            Codebook::from_lengths(dtype, layout, &lengths).map_err(|e| in_class(class, e))?;
        let stored = Fingerprint(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ));
        if stored != book.fingerprint() {
            return Err(CodebookError::FingerprintMismatch {
                class: class.to_string(),
                stored,
                computed: book.fingerprint(),
            });
        }
        Ok(book)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Histogram;

    fn sample_set() -> CodebookSet {
        let mut set = CodebookSet::new("test");
        let data: Vec<u8> = (0..5000u32).map(|i| ((i * i) % 37) as u8).collect();
        let d = Histogram::of(&data).distribution().unwrap();
        let b = Codebook::from_distributions(DType::Bf16, Layout::Planes, &[d.clone(), d], 12).unwrap();
        set.insert("weight", b, Provenance { trained_on: vec!["a".into()], batches: 1, ..Default::default() });
        set.insert("raw", Codebook::flat(DType::U8, Layout::Bytes), Provenance::default());
        set
    }

    #[test]
    fn json_round_trips_and_is_readable() {
        let set = sample_set();
        let json = set.to_json();
        assert!(json.contains("\"lengths\": ["), "{json}");
        assert!(json.lines().count() < 120, "lengths should be one line per stream");
        let back = CodebookSet::from_json(&json).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.codebook("weight").unwrap().fingerprint(), set.codebook("weight").unwrap().fingerprint());
        assert_eq!(back.get("weight").unwrap().provenance.trained_on, vec!["a".to_string()]);
    }

    #[test]
    fn binary_round_trips_within_160_bytes_per_stream() {
        let set = sample_set();
        let bytes = set.to_bytes();
        let back = CodebookSet::from_bytes(&bytes).unwrap();
        assert_eq!(back.codebook("weight").unwrap().fingerprint(), set.codebook("weight").unwrap().fingerprint());
        // 3 streams in all: header + names + 3×128 + per-class overhead.
        assert!(bytes.len() <= 3 * 160, "{} bytes", bytes.len());
        for cut in 0..bytes.len() {
            assert!(CodebookSet::from_bytes(&bytes[..cut]).is_err());
        }
    }

    /// Class names over 255 bytes were cut by version 1, so two long names with a common prefix
    /// became one class (and a cut could split a UTF-8 character): they must round-trip whole.
    #[test]
    fn long_class_names_survive_the_binary_form_and_version_1_still_reads() {
        let base = sample_set();
        let book = base.codebook("weight").unwrap();
        let mut set = CodebookSet::new("é".repeat(200));
        let long = "ü".repeat(150); // 300 bytes; a 255-byte cut splits a character
        for suffix in ["a", "b"] {
            set.insert(format!("{long}{suffix}"), (*book).clone(), Provenance::default());
        }
        let back = CodebookSet::from_bytes(&set.to_bytes()).unwrap();
        assert_eq!(back.name, set.name);
        assert_eq!(back.class_names().collect::<Vec<_>>(), set.class_names().collect::<Vec<_>>());

        // Version 1: u8 name lengths, u16 class count.
        let mut one = CodebookSet::new("test");
        one.insert("weight", (*book).clone(), Provenance::default());
        let v2 = one.to_bytes();
        let mut v1 = b"SHCB\x01".to_vec();
        v1.extend_from_slice(&v2[5..9]); // set version
        let name_len = u32::from_le_bytes(v2[9..13].try_into().unwrap()) as usize;
        v1.push(name_len as u8);
        v1.extend_from_slice(&v2[13..13 + name_len]);
        let mut pos = 13 + name_len;
        v1.extend_from_slice(&v2[pos..pos + 2]); // count, low half
        pos += 4;
        let class_len = u32::from_le_bytes(v2[pos..pos + 4].try_into().unwrap()) as usize;
        v1.push(class_len as u8);
        v1.extend_from_slice(&v2[pos + 4..]);
        let old = CodebookSet::from_bytes(&v1).unwrap();
        assert_eq!(old.codebook("weight").unwrap().fingerprint(), book.fingerprint());
    }

    fn set_with_a_family() -> CodebookSet {
        let mut set = sample_set();
        let base = Arc::new(
            Codebook::from_distributions(DType::Bf16, Layout::Exponent, &[skew(3), skew(120)], 16)
                .unwrap(),
        );
        let family = Family::exponent_shift(Arc::clone(&base), &[-1, 2]);
        let prov = Provenance {
            members: vec!["class".into(), "shift -1".into(), "shift +2".into()],
            ..Default::default()
        };
        set.insert_family("grad", family, prov);
        set
    }

    fn skew(center: u8) -> crate::stats::Distribution {
        let data: Vec<u8> = (0..4000u32)
            .map(|i| center.wrapping_add((i % 13) as u8 * (i % 3) as u8))
            .collect();
        Histogram::of(&data).distribution().unwrap()
    }

    #[test]
    fn families_round_trip_in_both_forms_and_sets_without_keep_the_old_versions() {
        let set = set_with_a_family();
        let json = set.to_json();
        assert!(
            json.contains("\"format_version\": 2") && json.contains("\"family_fingerprint\""),
            "{json}"
        );
        let bytes = set.to_bytes();
        assert_eq!(bytes[4], 3);
        for back in [
            CodebookSet::from_json(&json).unwrap(),
            CodebookSet::from_bytes(&bytes).unwrap(),
        ] {
            let (f, g) = (back.family("grad").unwrap(), set.family("grad").unwrap());
            assert_eq!(f.members().len(), 3);
            assert_eq!(f.fingerprint(), g.fingerprint());
            assert_eq!(
                back.codebook("grad").unwrap().fingerprint(),
                g.members()[0].fingerprint()
            );
            assert_eq!(back.find_fingerprint(g.fingerprint()).unwrap().0, "grad");
            // Classes without members are families of one, fingerprinted as their codebook.
            assert_eq!(
                back.family("weight").unwrap().fingerprint(),
                back.codebook("weight").unwrap().fingerprint()
            );
        }
        assert_eq!(
            CodebookSet::from_json(&json)
                .unwrap()
                .get("grad")
                .unwrap()
                .provenance
                .members[2],
            "shift +2"
        );
        for cut in 0..bytes.len() {
            assert!(CodebookSet::from_bytes(&bytes[..cut]).is_err());
        }
        // Without members: the versions every earlier reader reads.
        let plain = sample_set();
        assert!(plain.to_json().contains("\"format_version\": 1"));
        assert_eq!(plain.to_bytes()[4], 2);
        // A damaged member or family fingerprint is refused with a reason.
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["classes"]["grad"]["family_fingerprint"] = "0000000000000001".into();
        assert!(matches!(
            CodebookSet::from_json(&v.to_string()).unwrap_err(),
            CodebookError::FingerprintMismatch { .. }
        ));
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["classes"]["grad"]["members"][1]["streams"][1]["lengths"][7] = 1.into();
        assert!(CodebookSet::from_json(&v.to_string()).is_err());
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["classes"]["grad"]
            .as_object_mut()
            .unwrap()
            .remove("family_fingerprint");
        assert!(CodebookSet::from_json(&v.to_string())
            .unwrap_err()
            .to_string()
            .contains("family_fingerprint"));
    }

    #[test]
    fn damaged_files_give_reasons() {
        let json = sample_set().to_json();
        // An over-long code.
        let bad = json.replacen("\"lengths\": [", "\"lengths\": [17, ", 1);
        let e = CodebookSet::from_json(&bad).unwrap_err().to_string();
        assert!(e.contains("257") || e.contains("expected 256"), "{e}");
        // A symbol without a code.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let mut v2 = v.clone();
        v2["classes"]["raw"]["streams"][0]["lengths"][5] = 0.into();
        let e = CodebookSet::from_json(&v2.to_string()).unwrap_err().to_string();
        assert!(e.contains("symbol 5 has no code"), "{e}");
        let mut v3 = v.clone();
        v3["classes"]["raw"]["streams"][0]["lengths"][5] = 9.into();
        let e = CodebookSet::from_json(&v3.to_string()).unwrap_err().to_string();
        assert!(e.contains("incomplete"), "{e}");
        let mut v4 = v.clone();
        v4["classes"]["raw"]["streams"][0]["lengths"][5] = 20.into();
        let e = CodebookSet::from_json(&v4.to_string()).unwrap_err().to_string();
        assert!(e.contains("longer than the maximum 16"), "{e}");
        let mut v5 = v.clone();
        v5["classes"]["raw"]["fingerprint"] = "0000000000000000".into();
        let e = CodebookSet::from_json(&v5.to_string()).unwrap_err();
        assert!(matches!(e, CodebookError::FingerprintMismatch { .. }), "{e}");
        let mut v6 = v;
        v6["format_version"] = 9.into();
        assert!(CodebookSet::from_json(&v6.to_string()).unwrap_err().to_string().contains("format_version 9"));
        assert!(CodebookSet::from_json("{").is_err());
        assert!(CodebookSet::from_bytes(b"NOPE").unwrap_err().to_string().contains("magic"));
    }

    #[test]
    fn refresh_bumps_versions_only_when_the_code_changes() {
        let mut set = sample_set();
        assert_eq!(set.version, 1);
        set.insert("raw", Codebook::flat(DType::U8, Layout::Bytes), Provenance::default());
        assert_eq!((set.version, set.get("raw").unwrap().version), (1, 1));
        let d = Histogram::of(b"aaaabbc").distribution().unwrap();
        set.insert("raw", Codebook::from_distributions(DType::U8, Layout::Bytes, &[d], 12).unwrap(), Provenance::default());
        assert_eq!((set.version, set.get("raw").unwrap().version), (2, 2));
    }

    #[test]
    fn c_header_lists_codes_and_lengths() {
        let h = sample_set().to_c_header();
        assert!(h.contains("static const uint16_t shuff_weight_code[2][256]"));
        assert!(h.contains("static const uint8_t shuff_raw_len[1][256]"));
        assert!(h.contains("SHUFF_WEIGHT_FINGERPRINT 0x"));
        assert_eq!(h.matches("  {").count(), 6);
        // A family's members follow its codebook, with the fingerprint its frames carry.
        let set = set_with_a_family();
        let h = set.to_c_header();
        assert!(h.contains("#define SHUFF_GRAD_MEMBERS 3"));
        assert!(h.contains(&format!(
            "SHUFF_GRAD_FAMILY_FINGERPRINT 0x{}ULL",
            set.family("grad").unwrap().fingerprint()
        )));
        assert!(
            h.contains("static const uint8_t shuff_grad_member2_len[2][256]")
                && h.contains("shift +2")
        );
    }
}
