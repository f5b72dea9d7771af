//! Reading tensors from safetensors files a group at a time: the header is checked against the
//! file's size before anything else is read (the container crate's parser), and tensor data is
//! read in groups of about [`GROUP_BYTES`], so memory follows the largest tensor, not the file.

use anyhow::{bail, Context, Result};
use regex::Regex;
use shuff::{ClassSelector, DType};
use shuff_container::source::{FileSource, Source};
use shuff_container::tensors::{read_source_header, TensorEntry};
use std::path::Path;

/// Tensors are read and processed (in parallel) in groups of about this many bytes.
const GROUP_BYTES: u64 = 256 << 20;

/// An open safetensors file.
pub struct TensorFile {
    pub path: String,
    source: FileSource,
    entries: Vec<TensorEntry>,
}

/// One tensor, read from its file.
pub struct Tensor {
    pub name: String,
    pub dtype: DType,
    pub data: Vec<u8>,
}

impl TensorFile {
    pub fn open(path: &Path) -> Result<Self> {
        let source = FileSource::open(path).with_context(|| format!("reading {}", path.display()))?;
        let (_, entries) = read_source_header(&source).with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
        Ok(TensorFile { path: path.display().to_string(), source, entries })
    }

    /// File name without directories, for display.
    pub fn short_name(&self) -> String {
        Path::new(&self.path).file_name().map_or(self.path.clone(), |n| n.to_string_lossy().into_owned())
    }

    /// A few of the file's tensor names, for an error saying a selector matched nothing.
    pub fn some_names(&self) -> String {
        let names: Vec<&str> = self.entries.iter().take(8).map(|t| t.name.as_str()).collect();
        let more = if self.entries.len() > names.len() { format!(", … ({} tensors)", self.entries.len()) } else { String::new() };
        format!("{}{more}", names.join(", "))
    }

    /// Calls `f` on the tensors whose name matches `filter` (all if `None`) and whose dtype shuff
    /// codes, in file order, a group of about [`GROUP_BYTES`] at a time.
    pub fn for_each_group(&self, filter: Option<&Regex>, mut f: impl FnMut(Vec<Tensor>) -> Result<()>) -> Result<()> {
        let mut group: Vec<Tensor> = Vec::new();
        let mut bytes = 0;
        for e in &self.entries {
            let Some(dtype) = e.shuff_dtype() else { continue };
            if filter.is_some_and(|re| !re.is_match(&e.name)) {
                continue;
            }
            if bytes + e.len() > GROUP_BYTES && !group.is_empty() {
                f(std::mem::take(&mut group))?;
                bytes = 0;
            }
            let mut data = vec![0u8; e.len() as usize];
            self.source.read_exact_at(&mut data, e.start).with_context(|| format!("reading tensor `{}` of {}", e.name, self.path))?;
            bytes += e.len();
            group.push(Tensor { name: e.name.clone(), dtype, data });
        }
        if !group.is_empty() {
            f(group)?;
        }
        Ok(())
    }

    /// All the tensors `filter` selects, at once (for commands that need them together: bench and
    /// the demo, on one class's tensors).
    pub fn tensors(&self, filter: Option<&Regex>) -> Result<Vec<Tensor>> {
        let mut all = Vec::new();
        self.for_each_group(filter, |mut g| {
            all.append(&mut g);
            Ok(())
        })?;
        Ok(all)
    }
}

/// The class selector of `train`'s `--class NAME --match REGEX` pairs, in the order given (the
/// policy itself is the library's: `shuff::ClassSelector`). One class with no regex takes every
/// tensor.
pub fn selector_from_args(classes: &[String], matches: &[String]) -> Result<ClassSelector> {
    if classes.is_empty() {
        bail!("give at least one --class NAME");
    }
    if matches.len() > classes.len() || (classes.len() > 1 && matches.len() != classes.len()) {
        bail!(
            "give one --match REGEX per --class NAME ({} classes, {} matches); a single class may omit --match",
            classes.len(),
            matches.len()
        );
    }
    let rules: Vec<(&str, &str)> = classes.iter().enumerate().map(|(i, c)| (c.as_str(), matches.get(i).map_or("", String::as_str))).collect();
    Ok(ClassSelector::new(&rules)?)
}
