//! Columns of text on stdout, as `lucid list` and `lucid ps` print them:
//! a header, then one row per line, each column as wide as its widest cell.

use std::io::Write;

/// Prints `header` and `rows`; the columns in `right` are right-aligned
/// (sizes), the others left-aligned. A pipe closed early (`| head -1`) is
/// not an error.
pub fn print<const N: usize>(
    header: [&str; N],
    rows: &[[String; N]],
    right: &[usize],
) -> anyhow::Result<()> {
    let header = header.map(str::to_owned);
    let mut widths = [0; N];
    for row in std::iter::once(&header).chain(rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if right.contains(&i) {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        if let Err(e) = writeln!(out, "{}", cells.join("  ").trim_end()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    Ok(())
}
