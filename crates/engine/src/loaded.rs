//! Opening a model from a path: the weights, the tokenizer and the chat
//! template, ready to run.

use std::path::{Path, PathBuf};

use lucid_gguf::GgufFile;
use lucid_tokenizer::Tokenizer;

use crate::chat::ChatTemplate;
use crate::error::{EngineError, Result};
use crate::model::Model;

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

/// A model ready to run: its forward pass, tokenizer and chat template.
pub struct LoadedModel {
    pub model: Box<dyn Model>,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub meta: ModelMeta,
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
    /// Opens the model at `path`: a GGUF file.
    pub fn load(path: &Path) -> Result<LoadedModel> {
        if path.is_dir() {
            return Err(EngineError::Open {
                path: path.display().to_string(),
                message: "is a directory, and lucid reads models from GGUF files".into(),
            });
        }
        let file = GgufFile::open(path)?;
        Self::from_gguf(&file)
    }

    /// Builds the model from an open GGUF file.
    pub fn from_gguf(file: &GgufFile) -> Result<LoadedModel> {
        let model = crate::arch::load_gguf(file)?;
        let tokenizer = Tokenizer::from_gguf(file.metadata())?;
        if tokenizer.vocab_size() > model.info().vocab_size {
            return Err(EngineError::Config {
                source_name: file
                    .path()
                    .map_or_else(String::new, |p| p.display().to_string()),
                message: format!(
                    "the tokenizer has {} tokens but the model only {} embeddings",
                    tokenizer.vocab_size(),
                    model.info().vocab_size
                ),
            });
        }
        let token = |id: Option<u32>| {
            id.and_then(|i| tokenizer.token_text(i))
                .unwrap_or("")
                .to_string()
        };
        let template = ChatTemplate::new(
            tokenizer.chat_template(),
            &token(tokenizer.bos()),
            &token(tokenizer.eos()),
        )?;
        Ok(LoadedModel {
            meta: gguf_meta(file),
            model,
            tokenizer,
            template,
        })
    }
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
