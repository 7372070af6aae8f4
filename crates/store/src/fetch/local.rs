//! A model file already on this machine: an offline mirror (a directory in
//! `LUCID_LOCAL_MODELS`) or an absolute path. The file is copied, not linked,
//! so the store owns its files and a later change to the mirror cannot alter a
//! verified model.
//!
//! The file is looked for at the source's `path`, or else at its own name
//! under the source's `dir` (or alone): a file `1_Pooling/config.json` of an
//! entry whose local source has `dir = "all-MiniLM-L6-v2"` is
//! `<mirror>/all-MiniLM-L6-v2/1_Pooling/config.json`, the layout of the
//! checkpoint directory as published.

use std::path::{Path, PathBuf};

use lucid_catalog::{LocalSource, ModelFile};

use super::{Ctx, copy_with_progress, verify_or_remove};
use crate::FetchError;

pub(super) fn fetch(
    ctx: &Ctx<'_>,
    source: &LocalSource,
    file: &ModelFile,
    partial: &Path,
) -> Result<String, FetchError> {
    let wanted = match (&source.path, &source.dir) {
        (Some(path), _) => path.clone(),
        (None, Some(dir)) => under(dir, &file.name),
        (None, None) => under(Path::new(""), &file.name),
    };
    let candidates: Vec<PathBuf> = match wanted {
        path if path.is_absolute() => vec![path],
        relative => {
            if ctx.config.local_dirs.is_empty() {
                return Err(FetchError::NoLocalDirs);
            }
            ctx.config
                .local_dirs
                .iter()
                .map(|dir| dir.join(&relative))
                .collect()
        }
    };
    let Some(found) = candidates.iter().find(|p| p.is_file()) else {
        return Err(FetchError::LocalNotFound { tried: candidates });
    };
    // A wrong size is caught before copying hundreds of megabytes.
    let size = fs_err::metadata(found)?.len();
    if size != file.size {
        return Err(FetchError::SizeMismatch {
            what: found.display().to_string(),
            expected: file.size,
            actual: size,
        });
    }
    let mut reader = fs_err::File::open(found)?;
    let mut writer = fs_err::File::create(partial)?;
    ctx.progress
        .start(&format!("copying {}", file.name), Some(size));
    copy_with_progress(&mut reader, &mut writer, ctx.progress)?;
    writer.sync_all()?;
    drop(writer);
    ctx.progress.finish();
    verify_or_remove(partial, file, ctx.progress)?;
    Ok(format!("local {}", found.display()))
}

/// `dir` joined with the `/`-separated parts of a catalog file name, so that
/// the path uses the platform's separator.
fn under(dir: &Path, name: &str) -> PathBuf {
    name.split('/')
        .fold(dir.to_owned(), |path, part| path.join(part))
}
