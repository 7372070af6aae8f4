//! Finding a checkpoint's files and mapping its safetensors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lucid_gguf::{Bytes, Metadata};
use lucid_tensor::DType;
use lucid_tokenizer::Tokenizer;
use serde_json::Value as Json;

use super::config::HfConfig;
use crate::error::{EngineError, Result};
use crate::loaded::ModelMeta;
use crate::weights::Weight;

/// An open Hugging Face checkpoint directory.
pub struct HfCheckpoint {
    dir: PathBuf,
    config: serde_json::Map<String, Json>,
    tensors: BTreeMap<String, Stored>,
    /// The safetensors files and their sizes.
    files: Vec<(PathBuf, u64)>,
}

impl std::fmt::Debug for HfCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfCheckpoint")
            .field("dir", &self.dir)
            .field("tensors", &self.tensors.len())
            .field("files", &self.files.len())
            .finish()
    }
}

/// One tensor as a safetensors file stores it.
struct Stored {
    /// The element type, or the safetensors name of one lucid cannot use.
    dtype: std::result::Result<DType, String>,
    /// In PyTorch order: the last dimension is the row length.
    shape: Vec<usize>,
    data: Bytes,
}

impl HfCheckpoint {
    /// The checkpoint directory that `path` is or is part of: a directory
    /// holding `config.json`, or its `config.json` or a `.safetensors` file
    /// in it. `None` when `path` is none of these (a GGUF file, say).
    pub fn dir_of(path: &Path) -> Option<PathBuf> {
        if path.is_dir() {
            return path
                .join("config.json")
                .is_file()
                .then(|| path.to_path_buf());
        }
        let parent = path.parent()?;
        let name = path.file_name()?.to_str()?;
        let in_checkpoint = name == "config.json"
            || (name.ends_with(".safetensors") && parent.join("config.json").is_file());
        in_checkpoint.then(|| {
            if parent.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                parent.to_path_buf()
            }
        })
    }

    /// Opens the checkpoint in `dir`: reads `config.json` and maps every
    /// safetensors file, checking each header.
    pub fn open(dir: &Path) -> Result<HfCheckpoint> {
        let config_path = dir.join("config.json");
        let config = match read_json(&config_path)? {
            Json::Object(map) => map,
            _ => return Err(open_error(&config_path, "is not a JSON object")),
        };
        let mut ckpt = HfCheckpoint {
            dir: dir.to_path_buf(),
            config,
            tensors: BTreeMap::new(),
            files: Vec::new(),
        };
        for file in safetensors_files(dir)? {
            ckpt.map_file(&file)?;
        }
        Ok(ckpt)
    }

    fn map_file(&mut self, path: &Path) -> Result<()> {
        let file = std::fs::File::open(path).map_err(|e| open_error(path, &e.to_string()))?;
        // SAFETY: the map is only ever read. As for GGUF files (and in every
        // mmap-based loader), a checkpoint must not be modified while it is
        // in use; if it is, reads may see new bytes or fault.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| open_error(path, &format!("cannot memory-map: {e}")))?;
        let bytes = Bytes::from_owner(map);
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| open_error(path, &format!("not a valid safetensors file: {e}")))?;
        let data_start = 8 + header_len;
        for (name, info) in meta.tensors() {
            let (start, end) = info.data_offsets;
            let dtype = match info.dtype {
                safetensors::Dtype::F32 => Ok(DType::F32),
                safetensors::Dtype::F16 => Ok(DType::F16),
                safetensors::Dtype::BF16 => Ok(DType::BF16),
                other => Err(format!("{other:?}")),
            };
            if self.tensors.contains_key(&name) {
                return Err(open_error(
                    path,
                    &format!("tensor '{name}' is also in another file of the checkpoint"),
                ));
            }
            let stored = Stored {
                dtype,
                shape: info.shape.clone(),
                data: bytes.slice(data_start + start..data_start + end),
            };
            self.tensors.insert(name, stored);
        }
        self.files.push((path.to_path_buf(), bytes.len() as u64));
        Ok(())
    }

    /// The checkpoint's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A name for error messages: the directory.
    pub fn source_name(&self) -> String {
        self.dir.display().to_string()
    }

    /// `architectures[0]` of `config.json`: the model class that names the
    /// family (`GPT2LMHeadModel`).
    pub fn architecture(&self) -> Result<&str> {
        self.config
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(Json::as_str)
            .ok_or_else(|| EngineError::Config {
                source_name: self.source_name(),
                message: "config.json names no model class in `architectures`".into(),
            })
    }

    /// The typed reader of `config.json`.
    pub fn config(&self) -> HfConfig<'_> {
        HfConfig {
            map: &self.config,
            source_name: self.dir.join("config.json").display().to_string(),
        }
    }

    /// The names of all tensors, sorted.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The tensor `name` with its shape in ggml order (the reverse of
    /// PyTorch's), still in the file's memory map.
    pub fn tensor(&self, name: &str) -> Result<Weight> {
        let s = self
            .tensors
            .get(name)
            .ok_or_else(|| EngineError::MissingTensor {
                source_name: self.source_name(),
                name: name.to_string(),
            })?;
        let dtype = s
            .dtype
            .clone()
            .map_err(|stored| EngineError::UnsupportedTensorType {
                source_name: self.source_name(),
                name: name.to_string(),
                stored,
            })?;
        // The kernels read f32 and f16 rows in place; a file whose offsets
        // leave a tensor misaligned for its element type gets a copy.
        let data = if (s.data.as_ptr() as usize).is_multiple_of(element_bytes(dtype)) {
            s.data.clone()
        } else {
            Bytes::from(s.data.to_vec())
        };
        Ok(Weight {
            name: name.to_string(),
            dtype,
            shape: s.shape.iter().rev().copied().collect(),
            data,
        })
    }

    /// The tensor `prefix + name`, or `name` when the checkpoint leaves out
    /// the base model's prefix (`transformer.`), as some older uploads do.
    pub fn tensor_in(&self, prefix: &str, name: &str) -> Result<Weight> {
        let full = format!("{prefix}{name}");
        if self.has_tensor(&full) || !self.has_tensor(name) {
            self.tensor(&full)
        } else {
            self.tensor(name)
        }
    }

    /// Like [`HfCheckpoint::tensor_in`], for a tensor a checkpoint may leave out.
    pub fn opt_tensor_in(&self, prefix: &str, name: &str) -> Result<Option<Weight>> {
        if self.has_tensor(&format!("{prefix}{name}")) || self.has_tensor(name) {
            self.tensor_in(prefix, name).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The checkpoint's tokenizer: `tokenizer.json` (with
    /// `tokenizer_config.json`) through the `tokenizers` crate; for older
    /// GPT-2-style uploads that have only `vocab.json` and `merges.txt`,
    /// those, read as llama.cpp reads them once converted.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let json = self.dir.join("tokenizer.json");
        if json.is_file() {
            let config = self.dir.join("tokenizer_config.json");
            let config = config.is_file().then_some(config);
            return Ok(Tokenizer::from_hf_file(&json, config.as_deref())?);
        }
        Ok(Tokenizer::from_gguf(&self.tokenizer_metadata(None)?)?)
    }

    /// The tokenizer as GGUF's `tokenizer.ggml.*` keys, padded to `n_vocab`
    /// tokens when given ([`lucid_tokenizer::to_gguf::metadata`]).
    pub fn tokenizer_metadata(&self, n_vocab: Option<usize>) -> Result<Metadata> {
        let cfg = self.config();
        let id = |key: &str| cfg.get(key).and_then(Json::as_u64);
        let ids = lucid_tokenizer::to_gguf::ModelIds {
            bos: id("bos_token_id"),
            eos: id("eos_token_id"),
        };
        Ok(lucid_tokenizer::to_gguf::metadata(&self.dir, n_vocab, ids)?)
    }

    /// What `lucid show` says about the checkpoint.
    pub fn meta(&self) -> ModelMeta {
        let mut types: Vec<(String, usize, u64)> = Vec::new();
        let mut n_params = 0u64;
        for s in self.tensors.values() {
            n_params += s.shape.iter().product::<usize>() as u64;
            let name = match &s.dtype {
                Ok(t) => t.name().to_string(),
                Err(stored) => stored.clone(),
            };
            match types.iter_mut().find(|(n, _, _)| *n == name) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += s.data.len() as u64;
                }
                None => types.push((name, 1, s.data.len() as u64)),
            }
        }
        types.sort_by_key(|t| std::cmp::Reverse(t.2));
        let name = self
            .config
            .get("_name_or_path")
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| {
                self.dir
                    .canonicalize()
                    .ok()
                    .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            })
            .unwrap_or_default();
        let mut general = vec![("format".to_string(), "Hugging Face safetensors".to_string())];
        if let Ok(arch) = self.architecture() {
            general.push(("architecture".to_string(), arch.to_string()));
        }
        ModelMeta {
            path: self.dir.clone(),
            name,
            license: None,
            file_size: self.files.iter().map(|(_, n)| n).sum(),
            n_params,
            tensor_types: types,
            general,
        }
    }
}

/// The safetensors files of a checkpoint: the shards the index lists, or
/// `model.safetensors`, or every `.safetensors` file in the directory.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let json = read_json(&index)?;
        let map = json
            .get("weight_map")
            .and_then(Json::as_object)
            .ok_or_else(|| open_error(&index, "has no `weight_map` object"))?;
        let mut files: Vec<&str> = Vec::new();
        for v in map.values() {
            let f = v
                .as_str()
                .ok_or_else(|| open_error(&index, "`weight_map` values must be file names"))?;
            // Shards are named relative to the directory; anything else
            // (a path, `..`) is not a shard of this checkpoint.
            if f.contains('/') || f.contains('\\') || f == ".." {
                return Err(open_error(
                    &index,
                    &format!("shard '{f}' is not a file name"),
                ));
            }
            if !files.contains(&f) {
                files.push(f);
            }
        }
        files.sort_unstable();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| open_error(dir, &e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(open_error(
            dir,
            "has no .safetensors files (lucid does not read PyTorch .bin checkpoints)",
        ));
    }
    Ok(files)
}

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).map_err(|e| open_error(path, &e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| open_error(path, &format!("invalid JSON: {e}")))
}

fn open_error(path: &Path, message: &str) -> EngineError {
    EngineError::Open {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

pub(super) fn element_bytes(dtype: DType) -> usize {
    dtype.block_bytes() / dtype.block_len()
}
