//! `shuff inspect`: the tensors of a container file, how each is stored, per class and in total.

use shuff_container::reader::StoredTensor;
use std::collections::BTreeMap;

/// One row of `shuff inspect --json`.
#[derive(serde::Serialize)]
pub struct InspectRow {
    pub tensor: String,
    pub class: Option<String>,
    pub dtype: Option<String>,
    pub layout: Option<String>,
    pub original_bytes: u64,
    pub stored_bytes: u64,
}

pub fn rows(stored: Vec<StoredTensor>) -> Vec<InspectRow> {
    stored
        .into_iter()
        .map(|t| InspectRow {
            tensor: t.name,
            class: t.class,
            dtype: t.coding.map(|(d, _)| d.to_string()),
            layout: t.coding.map(|(_, l)| l.to_string()),
            original_bytes: t.original_bytes,
            stored_bytes: t.stored_bytes,
        })
        .collect()
}

pub fn print_inspect(rows: &[InspectRow], file_len: u64) {
    let ratio = |o: u64, s: u64| format!("{:.3}", o as f64 / s.max(1) as f64);
    let mut t = crate::table::new(&["tensor", "dtype", "layout", "bytes", "stored", "ratio"], 3);
    for r in rows {
        t.add_row(vec![
            r.tensor.clone(),
            r.dtype.clone().unwrap_or_else(|| "-".into()),
            r.layout.clone().unwrap_or_else(|| "raw".into()),
            r.original_bytes.to_string(),
            r.stored_bytes.to_string(),
            ratio(r.original_bytes, r.stored_bytes),
        ]);
    }
    println!("{t}");
    let mut classes: BTreeMap<&str, (usize, u64, u64)> = BTreeMap::new();
    for r in rows {
        let e = classes.entry(r.class.as_deref().unwrap_or("(raw)")).or_default();
        *e = (e.0 + 1, e.1 + r.original_bytes, e.2 + r.stored_bytes);
    }
    let mut t = crate::table::new(&["class", "tensors", "bytes", "stored", "ratio"], 1);
    for (c, (n, o, s)) in &classes {
        t.add_row(vec![c.to_string(), n.to_string(), o.to_string(), s.to_string(), ratio(*o, *s)]);
    }
    println!("\n{t}");
    let original: u64 = rows.iter().map(|r| r.original_bytes).sum();
    println!("\ndata {original} bytes; file {file_len} bytes with header and codebooks; ratio {:.3}", original as f64 / file_len as f64);
}
