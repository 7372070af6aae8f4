//! The small JSON record written next to a pulled model. Its presence is what
//! makes a model "pulled": it is written, atomically, only after every file is
//! verified and in place, and removed first when the model is removed.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The layout version written by this build.
const MANIFEST_VERSION: u32 = 1;

/// What was pulled, from where, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// The catalog name of the model.
    pub name: String,
    /// The license id from the catalog at the time of the pull, so the store
    /// can be listed even if the catalog later drops the model.
    pub license: String,
    pub files: Vec<ManifestFile>,
    /// When the pull finished, RFC 3339 in UTC.
    pub pulled_at: String,
}

/// One verified file of a pulled model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub name: String,
    pub sha256: String,
    pub size: u64,
    /// The source the file came from, as shown to the user.
    pub source: String,
}

impl Manifest {
    pub(crate) fn new(name: &str, license: &str, files: Vec<ManifestFile>) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            name: name.to_owned(),
            license: license.to_owned(),
            files,
            pulled_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }

    /// Reads the manifest at `path`; `None` if there is none.
    pub(crate) fn read(path: &Path) -> Result<Option<Manifest>, StoreError> {
        let bytes = match fs_err::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Manifest {
                path: path.to_owned(),
                source,
            })
    }

    /// Writes the manifest to `path` through a `.partial` file and a rename, so
    /// a reader sees either no manifest or a complete one.
    pub(crate) fn write(&self, path: &Path) -> Result<(), StoreError> {
        let mut json = serde_json::to_vec_pretty(self).map_err(|source| StoreError::Manifest {
            path: path.to_owned(),
            source,
        })?;
        json.push(b'\n');
        let partial = crate::store::partial_path(path);
        let mut file = fs_err::File::create(&partial)?;
        file.write_all(&json)?;
        file.sync_all()?;
        drop(file);
        crate::store::persist(&partial, path)?;
        Ok(())
    }
}
