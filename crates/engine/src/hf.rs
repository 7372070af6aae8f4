//! Hugging Face checkpoint directories: `config.json`, the weights in
//! safetensors files (one file, or shards listed in
//! `model.safetensors.index.json`) and `tokenizer.json`.
//!
//! The safetensors files are memory-mapped and each tensor is handed out as a
//! [`Bytes`] slice of its map, so f32, f16 and bf16 weights that need no
//! change are used where they lie, as GGUF weights are.
//!
//! lucid runs Hugging Face checkpoints by restating them in GGUF's terms: a
//! family's [`Architecture::convert_hf`](crate::arch::Architecture::convert_hf)
//! turns `config.json` into the metadata keys and the tensors into the names
//! (transposed, split or reordered where needed) that llama.cpp's converter
//! writes, giving a [`Converted`] model. The family then loads that exactly
//! as it loads a GGUF file, so each family has one loading path, and `lucid
//! quantize` writes exactly what lucid would run.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use lucid_gguf::{Array, Bytes, Metadata, Value};
use lucid_tensor::DType;
use lucid_tensor::ops::Activation;
use lucid_tokenizer::Tokenizer;
use serde_json::Value as Json;

use crate::error::{EngineError, Result};
use crate::loaded::ModelMeta;
use crate::weights::{Weight, WeightSource};

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
        Ok(Tokenizer::from_gguf(&tokenizer_metadata(self, None)?)?)
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

fn element_bytes(dtype: DType) -> usize {
    dtype.block_bytes() / dtype.block_len()
}

/// Reads typed values from `config.json`, naming the file and key in errors.
pub struct HfConfig<'a> {
    map: &'a serde_json::Map<String, Json>,
    source_name: String,
}

impl HfConfig<'_> {
    /// The value of `key`, treating `null` as absent.
    pub fn get(&self, key: &str) -> Option<&Json> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A positive integer.
    pub fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| self.invalid(key, "is missing"))
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(0) => Err(self.invalid(key, "must not be zero")),
                Some(n) => Ok(Some(n)),
                None => Err(self.invalid(key, "must be a positive integer")),
            },
        }
    }

    /// A finite number.
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x.is_finite() => Ok(Some(x as f32)),
                _ => Err(self.invalid(key, "must be a finite number")),
            },
        }
    }

    /// A number the maths divides by or takes the root of: above zero.
    pub fn opt_positive_f32(&self, key: &str) -> Result<Option<f32>> {
        let v = self.opt_f32(key)?;
        crate::arch::above_zero(v).map_err(|why| self.invalid(key, &why))
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.invalid(key, "must be true or false")),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.invalid(key, "must be a string")),
        }
    }

    /// The activation function a config names (`activation_function`,
    /// `hidden_act`), `default` when it names none.
    pub fn activation(&self, key: &str, default: Activation) -> Result<Activation> {
        match self.opt_str(key)? {
            None => Ok(default),
            Some(name) => activation_by_name(name).ok_or_else(|| {
                self.invalid(
                    key,
                    &format!(
                        "activation '{name}' is not one lucid runs (gelu, gelu_new, relu, silu)"
                    ),
                )
            }),
        }
    }

    pub fn invalid(&self, key: &str, why: &str) -> EngineError {
        EngineError::Config {
            source_name: self.source_name.clone(),
            message: format!("{key}: {why}"),
        }
    }
}

/// The activation a Hugging Face name stands for. The `gelu_new` family is
/// GELU with the tanh approximation; plain `gelu` is the exact one.
pub fn activation_by_name(name: &str) -> Option<Activation> {
    Some(match name {
        "gelu_new" | "gelu_fast" | "gelu_pytorch_tanh" => Activation::GeluTanh,
        "gelu" => Activation::GeluErf,
        "relu" => Activation::Relu,
        "silu" | "swish" => Activation::Silu,
        _ => return None,
    })
}

/// The Hugging Face name of an activation, the inverse of
/// [`activation_by_name`].
pub fn activation_name(act: Activation) -> &'static str {
    match act {
        Activation::GeluTanh => "gelu_new",
        Activation::GeluErf => "gelu",
        Activation::Relu => "relu",
        Activation::Silu => "silu",
    }
}

/// A model restated in GGUF's terms: metadata under GGUF's keys and tensors
/// under GGUF's names, some still in a checkpoint's memory map, some
/// converted. Families load it as they load a GGUF file; `lucid quantize`
/// writes it to one.
#[derive(Debug)]
pub struct Converted {
    source_name: String,
    arch: String,
    pub metadata: Metadata,
    tensors: Vec<Weight>,
    by_name: HashMap<String, usize>,
}

impl Converted {
    /// An empty model of GGUF architecture `arch` (`gpt2`).
    pub fn new(source_name: impl Into<String>, arch: &str) -> Converted {
        let mut metadata = Metadata::new();
        metadata.insert("general.architecture", Value::String(arch.to_string()));
        Converted {
            source_name: source_name.into(),
            arch: arch.to_string(),
            metadata,
            tensors: Vec::new(),
            by_name: HashMap::new(),
        }
    }

    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Sets `{arch}.{key}`.
    pub fn set(&mut self, key: &str, value: Value) {
        self.metadata.insert(format!("{}.{key}", self.arch), value);
    }

    /// Sets `{arch}.{key}` to an integer, as llama.cpp writes them (u32).
    pub fn set_u32(&mut self, key: &str, value: usize) -> Result<()> {
        let v = u32::try_from(value).map_err(|_| EngineError::Config {
            source_name: self.source_name.clone(),
            message: format!("{key} = {value} does not fit in GGUF's u32"),
        })?;
        self.set(key, Value::U32(v));
        Ok(())
    }

    /// Records the MLP's activation when it is not the family's usual one
    /// (see [`Hparams::activation`](crate::arch::Hparams::activation)).
    pub fn set_activation(&mut self, act: Activation, family_default: Activation) {
        if act != family_default {
            self.set(
                crate::arch::ACTIVATION_KEY,
                Value::String(activation_name(act).to_string()),
            );
        }
    }

    /// Adds `w` under the GGUF name `name`, replacing a tensor of that name.
    pub fn push(&mut self, name: impl Into<String>, mut w: Weight) {
        w.name = name.into();
        match self.by_name.get(&w.name) {
            Some(&i) => self.tensors[i] = w,
            None => {
                self.by_name.insert(w.name.clone(), self.tensors.len());
                self.tensors.push(w);
            }
        }
    }

    /// Adds `w` under `name` when there is one.
    pub fn push_opt(&mut self, name: impl Into<String>, w: Option<Weight>) {
        if let Some(w) = w {
            self.push(name, w);
        }
    }

    pub fn tensors(&self) -> &[Weight] {
        &self.tensors
    }

    pub fn tensors_mut(&mut self) -> &mut [Weight] {
        &mut self.tensors
    }

    pub fn get(&self, name: &str) -> Option<&Weight> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }
}

impl WeightSource for Converted {
    fn source_name(&self) -> String {
        self.source_name.clone()
    }

    fn weight(&self, name: &str) -> Option<Weight> {
        self.get(name).cloned()
    }
}

/// The transpose of a float matrix: PyTorch's `Conv1D` layers (GPT-2) store
/// `[in, out]` where every other layer stores `[out, in]`.
pub fn transpose(w: &Weight) -> Result<Weight> {
    let &[cols, rows] = w.shape.as_slice() else {
        return Err(not_a_matrix(w));
    };
    if w.dtype.is_quantized() {
        return Err(not_a_matrix(w));
    }
    let e = element_bytes(w.dtype);
    let mut out = vec![0u8; w.data.len()];
    for r in 0..rows {
        for c in 0..cols {
            let src = (r * cols + c) * e;
            let dst = (c * rows + r) * e;
            out[dst..dst + e].copy_from_slice(&w.data[src..src + e]);
        }
    }
    Ok(Weight {
        name: w.name.clone(),
        dtype: w.dtype,
        shape: vec![rows, cols],
        data: Bytes::from(out),
    })
}

/// Reorders `w`'s data in chunks of `chunk` values: chunk `order[i]` of the
/// input becomes chunk `i` of the output. For a matrix a chunk is a whole
/// number of rows. Used to regroup fused projections that interleave heads
/// (GPT-NeoX's `query_key_value`, `[q, k, v]` per head) into llama.cpp's
/// layout (all queries, then all keys, then all values).
pub fn reorder_chunks(w: &Weight, chunk: usize, order: &[usize]) -> Result<Weight> {
    let e = element_bytes(w.dtype);
    let n = w.n_elements();
    if w.dtype.is_quantized() || chunk == 0 || chunk * order.len() != n {
        return Err(EngineError::Config {
            source_name: w.name.clone(),
            message: format!(
                "cannot regroup a {} tensor of shape {:?} into {} chunks of {chunk}",
                w.dtype,
                w.shape,
                order.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(w.data.len());
    for &i in order {
        let Some(src) = w.data.get(i * chunk * e..(i + 1) * chunk * e) else {
            return Err(not_a_matrix(w));
        };
        out.extend_from_slice(src);
    }
    Ok(Weight {
        name: w.name.clone(),
        dtype: w.dtype,
        shape: w.shape.clone(),
        data: Bytes::from(out),
    })
}

fn not_a_matrix(w: &Weight) -> EngineError {
    EngineError::Config {
        source_name: w.name.clone(),
        message: format!(
            "expected a float matrix, found {} of shape {:?}",
            w.dtype, w.shape
        ),
    }
}

/// GGUF's `tokenizer.ggml.*` keys for a checkpoint's byte-level BPE
/// tokenizer, as llama.cpp's converter writes them: tokens by id (padded
/// with `[PAD{i}]` up to `n_vocab`, the rows of the embedding, when given),
/// their types (added special tokens are control tokens, other added tokens
/// user-defined), merges, BOS/EOS and whether to add BOS.
///
/// The tokenizer is `tokenizer.json`, or `vocab.json` and `merges.txt`. Its
/// pre-tokenizer must be GPT-2's (a `ByteLevel` step with its regex), the
/// one `tokenizer.ggml.pre = gpt-2` names; anything else is an error rather
/// than a file that would tokenize differently.
pub fn tokenizer_metadata(ckpt: &HfCheckpoint, n_vocab: Option<usize>) -> Result<Metadata> {
    let specials = SpecialTokens::read(ckpt.dir())?;
    let json_path = ckpt.dir().join("tokenizer.json");
    let bpe = if json_path.is_file() {
        BpeVocab::from_tokenizer_json(&json_path)?
    } else {
        BpeVocab::from_vocab_files(ckpt.dir(), &specials)?
    };
    let n_vocab = n_vocab.unwrap_or(bpe.tokens.len());
    if bpe.tokens.len() > n_vocab {
        return Err(open_error(
            &bpe.source,
            &format!(
                "has {} tokens but the model only {n_vocab} embeddings",
                bpe.tokens.len()
            ),
        ));
    }
    // Ids the tokenizer leaves out, and the embedding rows past its last
    // token, become unused padding tokens, as llama.cpp's converter makes them.
    let mut texts = Vec::with_capacity(n_vocab);
    let mut kinds = Vec::with_capacity(n_vocab);
    for i in 0..n_vocab {
        match bpe.tokens.get(i).cloned().flatten() {
            Some(t) => {
                texts.push(t);
                kinds.push(bpe.types[i]);
            }
            None => {
                texts.push(format!("[PAD{i}]"));
                kinds.push(TOKEN_UNUSED);
            }
        }
    }
    let by_text: HashMap<&str, usize> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let id_of = |key: &str| {
        specials
            .text(key)
            .and_then(|t| by_text.get(t.as_str()).copied())
    };
    let cfg = ckpt.config();
    let config_id = |key: &str| {
        cfg.get(key)
            .and_then(Json::as_u64)
            .and_then(|id| usize::try_from(id).ok())
            .filter(|&id| id < n_vocab)
    };
    let ids = [
        (
            "tokenizer.ggml.bos_token_id",
            id_of("bos_token").or_else(|| config_id("bos_token_id")),
        ),
        (
            "tokenizer.ggml.eos_token_id",
            id_of("eos_token").or_else(|| config_id("eos_token_id")),
        ),
        ("tokenizer.ggml.unknown_token_id", id_of("unk_token")),
        ("tokenizer.ggml.padding_token_id", id_of("pad_token")),
    ];

    let mut meta = Metadata::new();
    meta.insert("tokenizer.ggml.model", Value::String("gpt2".into()));
    meta.insert("tokenizer.ggml.pre", Value::String("gpt-2".into()));
    meta.insert("tokenizer.ggml.tokens", Value::from(texts.clone()));
    meta.insert("tokenizer.ggml.token_type", Value::Array(Array::I32(kinds)));
    meta.insert("tokenizer.ggml.merges", Value::from(bpe.merges));
    for (key, id) in ids {
        if let Some(id) = id.and_then(|i| u32::try_from(i).ok()) {
            meta.insert(key, Value::U32(id));
        }
    }
    let add_bos = specials.flag("add_bos_token").unwrap_or(false);
    meta.insert("tokenizer.ggml.add_bos_token", Value::Bool(add_bos));
    if let Some(add_eos) = specials.flag("add_eos_token") {
        meta.insert("tokenizer.ggml.add_eos_token", Value::Bool(add_eos));
    }
    if let Some(t) = specials.config.get("chat_template").and_then(Json::as_str) {
        meta.insert("tokenizer.chat_template", Value::String(t.to_string()));
    }
    Ok(meta)
}

// llama.cpp's token types.
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;
const TOKEN_UNUSED: i32 = 5;

/// `tokenizer_config.json`, with `special_tokens_map.json` (older uploads)
/// for the special tokens it does not name.
struct SpecialTokens {
    config: Json,
    map: Json,
}

impl SpecialTokens {
    fn read(dir: &Path) -> Result<SpecialTokens> {
        let read = |name: &str| {
            let p = dir.join(name);
            if p.is_file() {
                read_json(&p)
            } else {
                Ok(Json::Null)
            }
        };
        Ok(SpecialTokens {
            config: read("tokenizer_config.json")?,
            map: read("special_tokens_map.json")?,
        })
    }

    /// The text of `bos_token`, `eos_token`, ...: a string or an added-token
    /// object with `content`.
    fn text(&self, key: &str) -> Option<String> {
        [&self.config, &self.map]
            .into_iter()
            .find_map(|j| match j.get(key)? {
                Json::String(s) => Some(s.clone()),
                obj => obj.get("content")?.as_str().map(str::to_string),
            })
    }

    fn flag(&self, key: &str) -> Option<bool> {
        self.config.get(key).and_then(Json::as_bool)
    }
}

/// A byte-level BPE vocabulary: tokens by id with llama.cpp's token types,
/// and merges as `"a b"`.
struct BpeVocab {
    source: PathBuf,
    tokens: Vec<Option<String>>,
    types: Vec<i32>,
    merges: Vec<String>,
}

impl BpeVocab {
    fn empty(source: &Path) -> BpeVocab {
        BpeVocab {
            source: source.to_path_buf(),
            tokens: Vec::new(),
            types: Vec::new(),
            merges: Vec::new(),
        }
    }

    fn place(&mut self, id: Option<u64>, text: &str, ty: i32) -> Result<()> {
        let id = id
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < 1 << 24)
            .ok_or_else(|| open_error(&self.source, &format!("token {text:?} has a bad id")))?;
        if self.tokens.len() <= id {
            self.tokens.resize(id + 1, None);
            self.types.resize(id + 1, 0);
        }
        self.tokens[id] = Some(text.to_string());
        self.types[id] = ty;
        Ok(())
    }

    fn from_tokenizer_json(path: &Path) -> Result<BpeVocab> {
        let tok = read_json(path)?;
        let bad = |why: &str| open_error(path, why);
        let model = tok.get("model").ok_or_else(|| bad("has no `model`"))?;
        if model.get("type").and_then(Json::as_str) != Some("BPE") {
            return Err(bad(
                "is not a BPE tokenizer; lucid writes GGUF only for byte-level BPE",
            ));
        }
        check_gpt2_pre_tokenizer(&tok).map_err(|why| bad(&why))?;
        let mut v = BpeVocab::empty(path);
        let vocab = model
            .get("vocab")
            .and_then(Json::as_object)
            .ok_or_else(|| bad("model.vocab is not an object"))?;
        for (text, id) in vocab {
            v.place(id.as_u64(), text, TOKEN_NORMAL)?;
        }
        for a in tok
            .get("added_tokens")
            .and_then(Json::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            let content = a
                .get("content")
                .and_then(Json::as_str)
                .ok_or_else(|| bad("an added token has no content"))?;
            let special = a.get("special").and_then(Json::as_bool).unwrap_or(false);
            let ty = if special {
                TOKEN_CONTROL
            } else {
                TOKEN_USER_DEFINED
            };
            v.place(a.get("id").and_then(Json::as_u64), content, ty)?;
        }
        v.merges = model
            .get("merges")
            .and_then(Json::as_array)
            .ok_or_else(|| bad("model.merges is not an array"))?
            .iter()
            .map(|m| match m {
                Json::String(s) => Some(s.clone()),
                Json::Array(pair) => match pair.as_slice() {
                    [Json::String(a), Json::String(b)] => Some(format!("{a} {b}")),
                    _ => None,
                },
                _ => None,
            })
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| bad("model.merges entries must be \"a b\" or [\"a\", \"b\"]"))?;
        Ok(v)
    }

    /// GPT-2's original files: `vocab.json` (text to id) and `merges.txt`
    /// (a `#version` line, then one merge per line). The special tokens the
    /// configs name, and `added_tokens_decoder`'s, are control tokens.
    fn from_vocab_files(dir: &Path, specials: &SpecialTokens) -> Result<BpeVocab> {
        let vocab_path = dir.join("vocab.json");
        let merges_path = dir.join("merges.txt");
        if !vocab_path.is_file() || !merges_path.is_file() {
            return Err(open_error(
                &dir.join("tokenizer.json"),
                "is missing, and so are vocab.json and merges.txt: the checkpoint has no tokenizer lucid reads",
            ));
        }
        let mut v = BpeVocab::empty(&vocab_path);
        let vocab = read_json(&vocab_path)?;
        let vocab = vocab
            .as_object()
            .ok_or_else(|| open_error(&vocab_path, "is not a JSON object"))?;
        let special_texts: Vec<String> = ["bos_token", "eos_token", "unk_token", "pad_token"]
            .iter()
            .filter_map(|k| specials.text(k))
            .collect();
        for (text, id) in vocab {
            let ty = if special_texts.contains(text) {
                TOKEN_CONTROL
            } else {
                TOKEN_NORMAL
            };
            v.place(id.as_u64(), text, ty)?;
        }
        if let Some(added) = specials
            .config
            .get("added_tokens_decoder")
            .and_then(Json::as_object)
        {
            for (id, a) in added {
                let Some(content) = a.get("content").and_then(Json::as_str) else {
                    continue;
                };
                let special = a.get("special").and_then(Json::as_bool).unwrap_or(false);
                let ty = if special {
                    TOKEN_CONTROL
                } else {
                    TOKEN_USER_DEFINED
                };
                v.place(id.parse().ok(), content, ty)?;
            }
        }
        let text = std::fs::read_to_string(&merges_path)
            .map_err(|e| open_error(&merges_path, &e.to_string()))?;
        v.merges = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with("#version"))
            .map(str::to_string)
            .collect();
        Ok(v)
    }
}

/// Whether `tokenizer.json` splits text as GPT-2 does: a `ByteLevel`
/// pre-tokenizer using its regex, without a prefix space, and no normalizer
/// beyond NFC (which llama.cpp, like GPT-NeoX's own tokenizer, leaves out).
fn check_gpt2_pre_tokenizer(tok: &Json) -> std::result::Result<(), String> {
    let pre = tok.get("pre_tokenizer").unwrap_or(&Json::Null);
    let byte_level = match pre.get("type").and_then(Json::as_str) {
        Some("ByteLevel") => pre,
        _ => return Err("has a pre-tokenizer other than GPT-2's ByteLevel one".into()),
    };
    if byte_level.get("use_regex").and_then(Json::as_bool) == Some(false) {
        return Err("has a ByteLevel pre-tokenizer without GPT-2's regex".into());
    }
    if byte_level.get("add_prefix_space").and_then(Json::as_bool) == Some(true) {
        return Err("adds a prefix space, which GGUF's gpt-2 pre-tokenizer does not".into());
    }
    match tok.get("normalizer") {
        None | Some(Json::Null) => Ok(()),
        Some(n) if n.get("type").and_then(Json::as_str) == Some("NFC") => Ok(()),
        Some(_) => Err("has a normalizer, which GGUF's gpt-2 tokenizer cannot express".into()),
    }
}
