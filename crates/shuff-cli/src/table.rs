//! Console tables: Markdown (they paste into notes and issues and render there), columns as wide as
//! their contents, text columns left-aligned and number columns right-aligned. Every table the CLI
//! prints, and report.md's, has this one look.

use comfy_table::{presets, CellAlignment, Table};

/// A table with `header`; the first `text_columns` columns are text, the rest numbers.
pub fn new(header: &[&str], text_columns: usize) -> Table {
    let mut t = Table::new();
    t.load_style(presets::ASCII_MARKDOWN);
    t.set_header(header.to_vec());
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_cell_alignment(if i < text_columns { CellAlignment::Left } else { CellAlignment::Right });
    }
    t
}
