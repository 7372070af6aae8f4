//! `lucid list`: the models in the local store, one per line on stdout,
//! then the user models made with `lucid create`.

use std::io::Write;

use indicatif::HumanBytes;
use lucid_store::Store;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    let store = Store::open_default()?;
    let models = store.list()?;
    let users = store.user_models()?;
    if models.is_empty() && users.is_empty() {
        eprintln!(
            "no models in {}; pull one with `lucid pull smollm2`",
            store.home().display()
        );
        return Ok(());
    }
    let mut rows: Vec<[String; 4]> = models
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                HumanBytes(m.size).to_string(),
                m.license.clone(),
                m.path.display().to_string(),
            ]
        })
        .collect();
    // User models (`lucid create`): their weights are the model they are
    // made from.
    rows.extend(users.into_iter().map(|(name, user)| {
        [
            name,
            "-".to_owned(),
            "-".to_owned(),
            format!("(from {})", user.from),
        ]
    }));
    let header = ["NAME", "SIZE", "LICENSE", "PATH"].map(str::to_owned);
    let mut widths = [0; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
        if let Err(e) = writeln!(out, "{}", line.trim_end()) {
            // `lucid list | head -1` closes the pipe early; that is fine.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    Ok(())
}
