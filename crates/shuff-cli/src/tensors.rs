//! Reading tensors from safetensors files, and assigning them to classes.

use anyhow::{bail, Context, Result};
use regex::Regex;
use safetensors::SafeTensors;
use shuff::{ClassSelector, DType};
use std::path::Path;

/// A whole safetensors file in memory.
pub struct TensorFile {
    pub path: String,
    bytes: Vec<u8>,
}

/// One tensor of a file, borrowed from it.
pub struct TensorRef<'a> {
    pub name: String,
    pub dtype: DType,
    pub data: &'a [u8],
}

pub use shuff_container::tensors::dtype_of;

impl TensorFile {
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        SafeTensors::deserialize(&bytes).with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
        Ok(TensorFile { path: path.display().to_string(), bytes })
    }

    /// File name without directories, for display.
    pub fn short_name(&self) -> String {
        Path::new(&self.path).file_name().map_or(self.path.clone(), |n| n.to_string_lossy().into_owned())
    }

    /// Tensors whose name matches `filter` (all if `None`), in file order (by offset), skipping
    /// dtypes shuff does not code.
    pub fn tensors(&self, filter: Option<&Regex>) -> Result<Vec<TensorRef<'_>>> {
        let st = SafeTensors::deserialize(&self.bytes)?;
        let mut out = Vec::new();
        for (name, view) in st.tensors() {
            if filter.is_some_and(|re| !re.is_match(&name)) {
                continue;
            }
            let Some(dtype) = dtype_of(view.dtype()) else { continue };
            let data: &[u8] = view.data();
            // Borrow from our own buffer, not the temporary SafeTensors.
            let start = data.as_ptr() as usize - self.bytes.as_ptr() as usize;
            out.push(TensorRef { name, dtype, data: &self.bytes[start..start + data.len()] });
        }
        out.sort_by_key(|t| t.data.as_ptr() as usize);
        Ok(out)
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
