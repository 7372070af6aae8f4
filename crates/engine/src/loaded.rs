//! Opening a model from a path: the weights, the tokenizer and the chat
//! template, ready to run.

use std::path::{Path, PathBuf};

use lucid_gguf::GgufFile;
use lucid_tensor::DType;
use lucid_tokenizer::Tokenizer;

use crate::chat::ChatTemplate;
use crate::embed::{Embedding, EmbeddingConfig};
use crate::error::{EngineError, Result};
use crate::hf::HfCheckpoint;
use crate::model::{ForwardCtx, Model};
use crate::prompt::ModelDefaults;

/// How to load a model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadOptions {
    /// Convert the f32/f16/bf16 matrices to this type while loading
    /// (`Q8_0`, `Q4K`, ...); norms, biases, position embeddings and weights
    /// that are already quantized stay as they are.
    pub quantize: Option<DType>,
}

/// Facts about a model's file that are not part of its computation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelMeta {
    pub path: PathBuf,
    /// `general.name`, or the file name.
    pub name: String,
    /// `general.license`, as the file states it.
    pub license: Option<String>,
    pub file_size: u64,
    /// Stored parameters, counted from the tensors.
    pub n_params: u64,
    /// Bytes of tensor data per element type, largest first.
    pub tensor_types: Vec<(String, usize, u64)>,
    /// The `general.*` keys of a GGUF file, for display.
    pub general: Vec<(String, String)>,
}

/// A cross-encoder's score of one document ([`LoadedModel::rerank`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// The head's first output, before any activation.
    pub score: f32,
    /// Tokens of the joined pair the model read.
    pub n_tokens: usize,
    /// Whether the pair was cut to fit.
    pub truncated: bool,
}

/// A model ready to run: its forward pass, tokenizer and chat template.
pub struct LoadedModel {
    pub model: Box<dyn Model>,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub meta: ModelMeta,
    /// Settings applied where a request gives none (none until whoever
    /// loads the model knows them, e.g. from the catalog); see
    /// [`crate::prompt`].
    pub defaults: ModelDefaults,
    /// How the model turns text into one vector ([`crate::embed`]).
    pub embedding: EmbeddingConfig,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("meta", &self.meta)
            .field("info", self.model.info())
            .finish()
    }
}

impl LoadedModel {
    /// Opens the model at `path`: a GGUF file or a Hugging Face checkpoint
    /// directory (see [`LoadedModel::load_with`]).
    pub fn load(path: &Path) -> Result<LoadedModel> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// Opens the model at `path`, told apart by content: a directory with a
    /// `config.json` (or that file, or one of its `.safetensors` files) is a
    /// Hugging Face checkpoint; anything else must be a GGUF file.
    pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
        if let Some(t) = opts.quantize {
            crate::quantize::check_target(t)?;
        }
        if let Some(dir) = HfCheckpoint::dir_of(path) {
            let ckpt = HfCheckpoint::open(&dir)?;
            crate::memory::check_fits(&ckpt.source_name(), ckpt.meta().file_size)?;
            return Self::from_hf(&ckpt, opts);
        }
        if path.is_dir() {
            return Err(EngineError::Open {
                path: path.display().to_string(),
                message: "is a directory without a config.json: neither a GGUF file nor a Hugging Face checkpoint".into(),
            });
        }
        let file = GgufFile::open(path)?;
        // The weights are read from the mapped file as they are used: all
        // of it must fit in memory (the cache comes on top, per sequence).
        crate::memory::check_fits(&path.display().to_string(), file.file_size())?;
        match opts.quantize {
            None => Self::from_gguf(&file),
            Some(t) => {
                let converted = crate::quantize::quantize_gguf(&file, t)?;
                let mut loaded = Self::from_gguf(&converted)?;
                loaded.meta = ModelMeta {
                    tensor_types: loaded.meta.tensor_types,
                    n_params: loaded.meta.n_params,
                    ..gguf_meta(&file)
                };
                Ok(loaded)
            }
        }
    }

    /// Builds the model from a Hugging Face checkpoint: the family that
    /// `architectures[0]` names, `tokenizer.json` and `tokenizer_config.json`.
    pub fn from_hf(ckpt: &HfCheckpoint, opts: &LoadOptions) -> Result<LoadedModel> {
        let arch = crate::arch::for_hf(ckpt)?;
        let model = arch.load_hf(ckpt, opts)?;
        let mut tokenizer = ckpt.tokenizer()?;
        tokenizer.mark_input_markers(arch.input_markers());
        check_vocab(&ckpt.source_name(), &tokenizer, model.as_ref())?;
        let template = chat_template(&tokenizer)?;
        let embedding = EmbeddingConfig::from_sentence_transformers(ckpt.dir())?
            .unwrap_or_else(|| EmbeddingConfig::default_for(model.role()));
        Ok(LoadedModel {
            meta: ckpt.meta(),
            model,
            tokenizer,
            template,
            defaults: ModelDefaults::default(),
            embedding,
        })
    }

    /// Builds the model from an open GGUF file.
    pub fn from_gguf(file: &GgufFile) -> Result<LoadedModel> {
        let arch = crate::arch::for_gguf(file)?;
        let model = arch.load_gguf(file)?;
        let mut tokenizer = Tokenizer::from_gguf(file.metadata())?;
        tokenizer.mark_input_markers(arch.input_markers());
        let source_name = file
            .path()
            .map_or_else(String::new, |p| p.display().to_string());
        check_vocab(&source_name, &tokenizer, model.as_ref())?;
        let template = chat_template(&tokenizer)?;
        let embedding = EmbeddingConfig::from_gguf(file.metadata())?
            .unwrap_or_else(|| EmbeddingConfig::default_for(model.role()));
        Ok(LoadedModel {
            meta: gguf_meta(file),
            model,
            tokenizer,
            template,
            defaults: ModelDefaults::default(),
            embedding,
        })
    }
}

/// A tokenizer with more tokens than the model has embeddings would hand the
/// model ids it cannot look up.
fn check_vocab(source_name: &str, tokenizer: &Tokenizer, model: &dyn Model) -> Result<()> {
    if tokenizer.vocab_size() > model.info().vocab_size {
        return Err(EngineError::Config {
            source_name: source_name.to_string(),
            message: format!(
                "the tokenizer has {} tokens but the model only {} embeddings",
                tokenizer.vocab_size(),
                model.info().vocab_size
            ),
        });
    }
    Ok(())
}

impl LoadedModel {
    /// One vector per text, as the model's embedding configuration says
    /// ([`crate::embed`]): each text tokenized with special tokens, cut to
    /// the configured length, the texts sharing forward passes.
    pub fn embed(&self, ctx: &mut ForwardCtx, texts: &[&str]) -> Result<Vec<Embedding>> {
        let tokenized = texts
            .iter()
            .map(|t| {
                crate::embed::tokenize(&self.tokenizer, self.model.as_ref(), &self.embedding, t)
            })
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<&[u32]> = tokenized.iter().map(|t| t.ids.as_slice()).collect();
        let vectors = crate::embed::embed_ids(self.model.as_ref(), ctx, &self.embedding, &ids)?;
        Ok(vectors
            .into_iter()
            .zip(&tokenized)
            .map(|(vector, t)| Embedding {
                vector,
                n_tokens: t.ids.len(),
                truncated: t.truncated,
            })
            .collect())
    }

    /// A cross-encoder's relevance score of each document for `query`: the
    /// classification head's first output on the `[CLS]` row of the joined
    /// pair, before any activation (as llama-server's `/v1/rerank` reports
    /// it). Pairs are cut to the configured length, longest text first.
    pub fn rerank(
        &self,
        ctx: &mut ForwardCtx,
        query: &str,
        documents: &[&str],
    ) -> Result<Vec<Score>> {
        if self.model.n_labels().is_none() {
            return Err(EngineError::NotAClassifier {
                arch: self.model.info().architecture,
            });
        }
        let limit = crate::embed::max_tokens(self.model.as_ref(), &self.embedding);
        let pairs = documents
            .iter()
            .map(|d| Ok(self.tokenizer.encode_pair(query, d, limit)?))
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<&[u32]> = pairs.iter().map(|p| p.ids.as_slice()).collect();
        let types: Vec<&[u32]> = pairs.iter().map(|p| p.types.as_slice()).collect();
        let d = self.model.info().d_model;
        let mut cls = Vec::with_capacity(documents.len() * d);
        crate::embed::hidden_states(self.model.as_ref(), ctx, &ids, &types, |_, rows, d| {
            cls.extend_from_slice(&rows[..d]);
        })?;
        let mut logits = Vec::new();
        self.model.classify(ctx, &cls, &mut logits)?;
        let labels = logits.len() / documents.len().max(1);
        Ok(pairs
            .iter()
            .enumerate()
            .map(|(i, p)| Score {
                score: logits[i * labels],
                n_tokens: p.ids.len(),
                truncated: p.truncated,
            })
            .collect())
    }

    /// Replaces the chat template with `source` (a user's model file gives
    /// one), checked as a model file's own template is.
    pub fn set_chat_template(&mut self, source: &str) -> Result<()> {
        let token = |id: Option<u32>| {
            id.and_then(|i| self.tokenizer.token_text(i))
                .unwrap_or("")
                .to_string()
        };
        self.template = ChatTemplate::new(
            Some(source),
            &token(self.tokenizer.bos()),
            &token(self.tokenizer.eos()),
        )?;
        Ok(())
    }
}

fn chat_template(tokenizer: &Tokenizer) -> Result<ChatTemplate> {
    let token = |id: Option<u32>| {
        id.and_then(|i| tokenizer.token_text(i))
            .unwrap_or("")
            .to_string()
    };
    let fallback = crate::chat::fallback_template(|t| tokenizer.token_id(t).is_some());
    ChatTemplate::with_fallback(
        tokenizer.chat_template(),
        fallback,
        &token(tokenizer.bos()),
        &token(tokenizer.eos()),
    )
}

fn gguf_meta(file: &GgufFile) -> ModelMeta {
    let path = file.path().map(Path::to_path_buf).unwrap_or_default();
    let g = file.general();
    let name = g
        .name
        .map(str::to_string)
        .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut types: Vec<(String, usize, u64)> = Vec::new();
    let mut n_params = 0u64;
    for t in file.tensors() {
        n_params += t.n_elements() as u64;
        let name = t.dtype.name().to_string();
        match types.iter_mut().find(|(n, _, _)| *n == name) {
            Some(e) => {
                e.1 += 1;
                e.2 += t.n_bytes as u64;
            }
            None => types.push((name, 1, t.n_bytes as u64)),
        }
    }
    types.sort_by_key(|t| std::cmp::Reverse(t.2));
    let general = file
        .metadata()
        .iter()
        .filter(|(k, _)| k.starts_with("general."))
        .map(|(k, v)| {
            let shown = match v.as_str() {
                Some(s) => s.to_string(),
                None => match v.as_integer() {
                    Some(i) => i.to_string(),
                    None => v.type_name().to_string(),
                },
            };
            (k.to_string(), shown)
        })
        .collect();
    ModelMeta {
        path,
        name,
        license: g.license.map(str::to_string),
        file_size: file.file_size(),
        n_params,
        tensor_types: types,
        general,
    }
}
