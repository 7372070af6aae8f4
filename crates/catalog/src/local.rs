//! Describing a model file or directory that is on this machine, from its own
//! metadata: a GGUF file's `general.*` keys, or a Hugging Face directory's
//! `config.json` and the `license:` in its README's model-card front matter.
//!
//! A file that is a catalog model (same file name and size as a catalog file,
//! or a name the catalog answers to) is matched to its entry, so that the
//! curated license and provenance apply; anything else is described from its
//! metadata alone, and its license id is whatever the metadata says, to be
//! looked up in the knowledge base like any other.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use lucid_gguf::GgufFile;
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::entry::{Format, ModelEntry};
use crate::error::DescribeError;

/// What a local model says about itself.
#[derive(Debug, Clone, Default)]
pub struct LocalDescription {
    /// The path described (a file, or a directory).
    pub path: PathBuf,
    pub format: Option<Format>,
    /// The model's name as its metadata gives it (`general.name`, or the
    /// directory's `_name_or_path`).
    pub name: Option<String>,
    /// `general.architecture`, or `model_type` in `config.json`.
    pub architecture: Option<String>,
    /// `general.basename`: the family name without size or fine-tune
    /// (`gemma-3`).
    pub basename: Option<String>,
    /// `general.organization` or `general.author`.
    pub organization: Option<String>,
    /// `general.size_label`.
    pub size_label: Option<String>,
    /// The quantization, from `general.file_type`.
    pub quantization: Option<String>,
    /// `<arch>.context_length`, or `max_position_embeddings`.
    pub context_length: Option<u64>,
    /// The license as the metadata writes it.
    pub license: Option<String>,
    /// Where `license` was read (`general.license`, `README.md front matter`).
    pub license_source: Option<&'static str>,
    /// The model card's `base_model`, if any.
    pub base_model: Option<String>,
    /// The files that make up the model, with their sizes.
    pub files: Vec<LocalFile>,
    /// The catalog entry this is a copy of, if any.
    pub entry: Option<&'static ModelEntry>,
}

/// One file of a local model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub path: PathBuf,
    pub size: u64,
    /// Filled in by [`LocalDescription::hash_files`].
    pub sha256: Option<String>,
}

impl LocalDescription {
    /// The license id to check the model under: the catalog entry's when the
    /// file is a catalog model, else the metadata's (lowercased; a model card's
    /// `license: other` defers to its `license_name`).
    pub fn license_id(&self) -> Option<String> {
        match self.entry {
            Some(entry) => Some(entry.license.to_string()),
            None => self.license.as_ref().map(|l| l.trim().to_ascii_lowercase()),
        }
    }

    /// The total size of the model's files, in bytes.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Computes the SHA-256 of every file (reading all of them).
    pub fn hash_files(&mut self) -> Result<(), DescribeError> {
        for file in &mut self.files {
            file.sha256 = Some(sha256_file(&file.path)?);
        }
        Ok(())
    }
}

/// Describes the model at `path`, matching it against the built-in catalog.
pub fn describe_local(path: impl AsRef<Path>) -> Result<LocalDescription, DescribeError> {
    describe_local_with(Catalog::builtin(), path)
}

/// Describes the model at `path`, matching it against `catalog`.
pub fn describe_local_with(
    catalog: &'static Catalog,
    path: impl AsRef<Path>,
) -> Result<LocalDescription, DescribeError> {
    let path = path.as_ref();
    let meta = fs_metadata(path)?;
    let mut description = if meta.is_dir() {
        describe_dir(path, path)?
    } else if is_gguf(path)? {
        describe_gguf(path, meta.len())?
    } else if path.extension().is_some_and(|e| e == "safetensors") {
        // A single safetensors file: its config and card are beside it.
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut d = describe_dir(dir, path)?;
        d.files = vec![LocalFile {
            path: path.to_owned(),
            size: meta.len(),
            sha256: None,
        }];
        d
    } else {
        return Err(DescribeError::NotAModel {
            path: path.to_owned(),
        });
    };
    description.entry = match_entry(catalog, &description);
    Ok(description)
}

fn fs_metadata(path: &Path) -> Result<std::fs::Metadata, DescribeError> {
    std::fs::metadata(path).map_err(|source| DescribeError::Io {
        path: path.to_owned(),
        source,
    })
}

fn is_gguf(path: &Path) -> Result<bool, DescribeError> {
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|source| DescribeError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(file.read_exact(&mut magic).is_ok() && &magic == b"GGUF")
}

fn describe_gguf(path: &Path, size: u64) -> Result<LocalDescription, DescribeError> {
    let file = GgufFile::open(path)?;
    let general = file.general();
    let context_length = general.architecture.and_then(|arch| {
        file.metadata()
            .opt_u64(&format!("{arch}.context_length"))
            .ok()
            .flatten()
    });
    Ok(LocalDescription {
        path: path.to_owned(),
        format: Some(Format::Gguf),
        name: general.name.map(str::to_owned),
        architecture: general.architecture.map(str::to_owned),
        basename: general.basename.map(str::to_owned),
        organization: general.organization.or(general.author).map(str::to_owned),
        size_label: general.size_label.map(str::to_owned),
        quantization: general
            .file_type
            .and_then(file_type_name)
            .map(str::to_owned),
        context_length,
        license: general.license.map(str::to_owned),
        license_source: general.license.map(|_| "general.license"),
        base_model: None,
        files: vec![LocalFile {
            path: path.to_owned(),
            size,
            sha256: None,
        }],
        entry: None,
    })
}

/// A Hugging Face style directory: `config.json`, `README.md`, weights.
fn describe_dir(dir: &Path, path: &Path) -> Result<LocalDescription, DescribeError> {
    let config_path = dir.join("config.json");
    let readme_path = dir.join("README.md");
    let config: Option<serde_json::Value> = match std::fs::read_to_string(&config_path) {
        Ok(text) => Some(
            serde_json::from_str(&text).map_err(|source| DescribeError::Json {
                path: config_path.clone(),
                source,
            })?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(DescribeError::Io {
                path: config_path,
                source,
            });
        }
    };
    let card = match std::fs::read_to_string(&readme_path) {
        Ok(text) => front_matter(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
        Err(source) => {
            return Err(DescribeError::Io {
                path: readme_path,
                source,
            });
        }
    };
    if config.is_none() && card.is_empty() {
        return Err(DescribeError::NotAModel {
            path: path.to_owned(),
        });
    }
    let config_str = |key: &str| {
        config
            .as_ref()
            .and_then(|c| c.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let card_first = |key: &str| card.get(key).and_then(|v| v.first()).cloned();
    // `license: other` points at a named license (`license_name: qwen-research`).
    let license = match card_first("license") {
        Some(l) if l.eq_ignore_ascii_case("other") => card_first("license_name").or(Some(l)),
        other => other,
    };
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|source| DescribeError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut has_safetensors = false;
    for entry in entries.flatten() {
        let p = entry.path();
        if let Ok(m) = entry.metadata()
            && m.is_file()
        {
            has_safetensors |= p.extension().is_some_and(|e| e == "safetensors");
            files.push(LocalFile {
                path: p,
                size: m.len(),
                sha256: None,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(LocalDescription {
        path: path.to_owned(),
        format: has_safetensors.then_some(Format::Safetensors),
        name: config_str("_name_or_path").filter(|n| !n.is_empty()),
        architecture: config_str("model_type"),
        basename: None,
        organization: None,
        size_label: None,
        quantization: None,
        context_length: config
            .as_ref()
            .and_then(|c| c.get("max_position_embeddings"))
            .and_then(serde_json::Value::as_u64),
        license_source: license.as_ref().map(|_| "README.md front matter"),
        license,
        base_model: card_first("base_model"),
        files,
        entry: None,
    })
}

/// The catalog entry a local model is a copy of: one of its weight files has
/// the same name and size as a catalog file, or a name in its metadata is one
/// the catalog answers to. Only weight files count: a checkpoint's
/// `config.json` or `tokenizer_config.json` of a few hundred bytes can have
/// the size of another model's by chance.
fn match_entry(catalog: &'static Catalog, d: &LocalDescription) -> Option<&'static ModelEntry> {
    let by_file = catalog.models().iter().find(|entry| {
        d.files.iter().any(|local| {
            let name = local.path.file_name().and_then(|n| n.to_str());
            entry.files.iter().any(|f| {
                is_weights(&f.name) && Some(f.name.as_str()) == name && f.size == local.size
            })
        })
    });
    if by_file.is_some() {
        return by_file;
    }
    let mut names: Vec<String> = Vec::new();
    if let Some(name) = &d.name {
        names.push(name.clone());
        // `_name_or_path` is often a hub repo id (`Qwen/Qwen2.5-0.5B-Instruct`).
        if let Some(entry) = catalog.find_by_repo(name) {
            return Some(entry);
        }
        if let Some((_, last)) = name.rsplit_once('/') {
            names.push(last.to_owned());
        }
    }
    // GGUF files name a model `<basename>-<size_label>` (`gemma-3-270M`).
    if let (Some(base), Some(size)) = (&d.basename, &d.size_label) {
        names.push(format!("{base}-{size}"));
    }
    // A Hugging Face snapshot is often in a directory named after the repo.
    if d.format != Some(Format::Gguf)
        && let Some(dir) = d.path.file_name().and_then(|n| n.to_str())
    {
        names.push(dir.to_owned());
    }
    names.iter().find_map(|n| catalog.find(n))
}

/// Whether a catalog file holds weights (a GGUF or safetensors file).
fn is_weights(name: &str) -> bool {
    name.ends_with(".gguf") || name.ends_with(".safetensors")
}

/// The scalar and list values of the YAML front matter of a model card (the
/// block between the first two `---` lines). Only top-level `key: value` and
/// `key:` followed by `- item` lines are read, which is all that model cards
/// use for `license`, `license_name` and `base_model`.
pub fn front_matter(text: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some("---") {
        return out;
    }
    let mut current: Option<String> = None;
    for line in lines {
        if line.trim_end() == "---" {
            break;
        }
        let trimmed = line.trim_start();
        if let Some(item) = trimmed.strip_prefix("- ") {
            if let Some(key) = &current {
                out.entry(key.clone()).or_default().push(unquote(item));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        current = None;
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim().to_owned();
        let value = value.trim();
        if value.is_empty() {
            current = Some(key);
        } else if let Some(list) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            out.insert(
                key,
                list.split(',')
                    .map(unquote)
                    .filter(|s| !s.is_empty())
                    .collect(),
            );
        } else {
            out.insert(key, vec![unquote(value)]);
        }
    }
    out
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(s)
        .to_owned()
}

/// llama.cpp's name for a `general.file_type` (`llama_ftype`).
pub fn file_type_name(file_type: u32) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}

/// The SHA-256 of a file, as 64 lowercase hex digits.
pub fn sha256_file(path: &Path) -> Result<String, DescribeError> {
    let io = |source| DescribeError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
