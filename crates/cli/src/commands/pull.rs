//! `lucid pull`: download catalog models into the local store, with a progress
//! bar on stderr. The pulled file's path goes to stdout, so scripts can use it.

use std::io::Write;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lucid_store::{Progress, Store};

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

/// An indicatif bar on stderr, one per step the store reports. indicatif
/// draws nothing when stderr is not a terminal.
#[derive(Default)]
struct Bar {
    current: Mutex<Option<ProgressBar>>,
}

impl Bar {
    fn with_current(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        // A panic elsewhere while the lock was held only poisons the bar.
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut current);
    }

    fn clear(&self) {
        self.with_current(|current| {
            if let Some(bar) = current.take() {
                bar.finish_and_clear();
            }
        });
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: Option<u64>) {
        self.with_current(|current| {
            if let Some(bar) = current.take() {
                bar.finish_and_clear();
            }
            let bar = match total {
                Some(total) => ProgressBar::with_draw_target(
                    Some(total),
                    ProgressDrawTarget::stderr(),
                )
                .with_style(
                    ProgressStyle::with_template(
                        "{msg} {wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                ),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                    .with_style(
                        ProgressStyle::with_template("{spinner} {msg} {binary_bytes}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    ),
            };
            bar.set_message(what.to_owned());
            *current = Some(bar);
        });
    }

    fn advance(&self, bytes: u64) {
        self.with_current(|current| {
            if let Some(bar) = current {
                bar.inc(bytes);
            }
        });
    }

    fn finish(&self) {
        self.clear();
    }

    fn message(&self, text: &str) {
        self.with_current(|current| match current {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        });
    }
}
