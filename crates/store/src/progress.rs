//! How long-running store operations report what they are doing, so the CLI
//! can draw a progress bar while the library stays free of terminal code.

/// Receives progress of downloads, copies and verification.
///
/// `start` begins a step (a download, an extraction, a hash check) of `total`
/// bytes when known; `advance` reports bytes done since the last call; `finish`
/// ends the step. A step may be started again (a download that restarts).
pub trait Progress {
    fn start(&self, what: &str, total: Option<u64>);
    fn advance(&self, bytes: u64);
    fn finish(&self);
    /// A one-line note for the user: a source that failed, a lock being waited
    /// for. Ignored unless overridden.
    fn message(&self, _text: &str) {}
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _what: &str, _total: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
}
