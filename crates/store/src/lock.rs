//! One writer per model at a time, across threads and processes.
//!
//! A pull or a removal holds an exclusive advisory lock on
//! `locks/<name>.lock` (`flock` on Unix, `LockFileEx` on Windows, through
//! `std::fs::File::lock`). The operating system drops the lock when the
//! process dies, so a killed pull never leaves the model locked. Lock files
//! are never deleted: removing one while another process waits on it would let
//! a third process lock a new file of the same name and run concurrently.

use std::fs::TryLockError;
use std::io;
use std::path::Path;

use crate::Progress;

/// Holds the lock until dropped.
#[derive(Debug)]
pub(crate) struct ModelLock {
    _file: fs_err::File,
}

/// Takes the lock for `model`, waiting (and saying so) if another pull holds
/// it.
pub(crate) fn lock(path: &Path, model: &str, progress: &dyn Progress) -> io::Result<ModelLock> {
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    let file = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    let with_path =
        |e: io::Error| io::Error::new(e.kind(), format!("failed to lock {}: {e}", path.display()));
    match file.file().try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            progress.message(&format!(
                "waiting for another lucid process to finish with `{model}`"
            ));
            file.file().lock().map_err(with_path)?;
        }
        Err(TryLockError::Error(e)) => return Err(with_path(e)),
    }
    Ok(ModelLock { _file: file })
}
