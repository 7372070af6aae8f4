//! Download progress on stderr.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lucid_store::Progress;

/// An indicatif bar on stderr, one per step the store reports; when stderr
/// is not a terminal (a log, a pipe), where indicatif draws nothing, one
/// plain line per step instead.
#[derive(Default)]
pub struct Bar {
    current: Mutex<Option<ProgressBar>>,
}

impl Bar {
    fn with_current(&self, f: impl FnOnce(&mut Option<ProgressBar>)) {
        // A panic elsewhere while the lock was held only poisons the bar.
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut current);
    }

    pub fn clear(&self) {
        self.with_current(|current| {
            if let Some(bar) = current.take() {
                bar.finish_and_clear();
            }
        });
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: Option<u64>) {
        if !std::io::stderr().is_terminal() {
            match total {
                Some(total) => eprintln!("lucid: {what} ({})", indicatif::HumanBytes(total)),
                None => eprintln!("lucid: {what}"),
            }
            return;
        }
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
