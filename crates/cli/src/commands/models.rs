//! `lucid models`: list catalog and local models with kind, size, license and presence on disk.
//!
//! One line per catalog model, then one per model in the local store that the
//! catalog does not list. PARAMS is the parameter count (exact where the
//! catalog records it, else the publisher's label); SIZE is the size of the
//! files lucid can pull or has pulled; ON DISK says whether the model is in
//! the store (`-` for API models, which have nothing to pull).

use std::io::Write;

use indicatif::HumanBytes;
use lucid_catalog::{Catalog, ModelEntry, ModelKind};
use lucid_store::Store;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    let store = Store::open_default()?;
    let local = store.list()?;
    let header = ["NAME", "KIND", "PARAMS", "SIZE", "LICENSE", "ON DISK"].map(str::to_owned);
    let mut rows: Vec<[String; 6]> = Vec::new();
    let mut not_pullable = 0;
    for entry in Catalog::builtin().models() {
        let pulled = local.iter().find(|m| m.name == entry.name);
        let on_disk = match (entry.kind, pulled) {
            (ModelKind::ProprietaryApi, _) => "-".to_owned(),
            (_, Some(m)) => format!("yes ({})", m.path.display()),
            (_, None) if entry.is_downloadable() => "no".to_owned(),
            // Only the upstream release is recorded: nothing lucid can pull.
            (_, None) => {
                not_pullable += 1;
                "no (not pullable*)".to_owned()
            }
        };
        rows.push([
            entry.name.clone(),
            entry.kind.to_string(),
            params(entry),
            size(entry, pulled.map(|m| m.size)),
            entry.license.to_string(),
            on_disk,
        ]);
    }
    for m in local
        .iter()
        .filter(|m| m.entry.is_none() && Catalog::builtin().find(&m.name).is_none())
    {
        rows.push([
            m.name.clone(),
            "local".to_owned(),
            "-".to_owned(),
            HumanBytes(m.size).to_string(),
            m.license.clone(),
            format!("yes ({})", m.path.display()),
        ]);
    }
    let mut widths = [0; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        if let Err(e) = writeln!(out, "{}", line.trim_end()) {
            // `lucid models | head` closes the pipe early; that is fine.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    if not_pullable > 0 {
        eprintln!(
            "\n* {not_pullable} models are not pullable: the catalog records the publisher's \
             release but no file lucid can download and verify. Download a GGUF file or \
             checkpoint from the model's homepage and give lucid its path \
             (`lucid run ./model.gguf`)."
        );
    }
    Ok(())
}

fn params(entry: &ModelEntry) -> String {
    match (entry.parameters, &entry.size_label) {
        (Some(n), _) => format!("{:.0}M", n as f64 / 1e6),
        (None, Some(label)) => label.clone(),
        (None, None) => "-".to_owned(),
    }
}

fn size(entry: &ModelEntry, pulled: Option<u64>) -> String {
    match pulled {
        Some(bytes) => HumanBytes(bytes).to_string(),
        None if entry.is_downloadable() => HumanBytes(entry.total_size()).to_string(),
        None => "-".to_owned(),
    }
}
