//! `lucid pull`: download catalog models into the local store, with a progress
//! bar on stderr. The pulled file's path goes to stdout, so scripts can use it.

use std::io::Write;

use lucid_store::Store;

use crate::progress::Bar;

#[derive(clap::Args)]
pub struct Args {
    /// Catalog names or aliases of the models to pull (e.g. `smollm2`).
    #[arg(required = true, value_name = "MODEL")]
    models: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::open_default()?;
    let mut stdout = std::io::stdout().lock();
    for model in &args.models {
        let bar = Bar::default();
        let pulled = store.pull(model, &bar);
        bar.clear();
        let path = pulled?;
        eprintln!("pulled {model}");
        if let Err(e) = writeln!(stdout, "{}", path.display()) {
            // A closed pipe (`lucid pull x | head -0`) is not a failure.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    Ok(())
}
