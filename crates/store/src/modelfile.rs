//! A user's own model: a name for a model (a catalog model, a file, or
//! another user model) with its own system message, sampling settings, chat
//! template and license note, as an Ollama Modelfile gives them.
//!
//! `lucid create NAME -f FILE` checks the TOML file and keeps a copy in the
//! store (`$LUCID_HOME/modelfiles/NAME.toml`); `run`, `serve` and `explain`
//! then load `NAME` as the model it is made `from`, with its settings in
//! place of the catalog's defaults.
//!
//! ```toml
//! from = "smollm2"              # a catalog name, a path, or a user model
//! system = "You are a pirate."
//! license_note = "Internal use only: see LICENSE-NOTES.md"
//! # template = "{% for m in messages %}…"   (a Jinja chat template)
//!
//! [parameters]
//! temperature = 0.7
//! top_p = 0.9
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::looks_like_path;
use crate::{Store, StoreError};

/// How deep `from` may chain through other user models.
pub const MAX_CHAIN: usize = 8;

/// The directory under the store's home that holds user model files.
pub(crate) const MODELFILES: &str = "modelfiles";

/// A user's model, as its model file says it, written and kept.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserModel {
    /// The model it is made from: a catalog name or alias, a path to a
    /// model file or checkpoint, or another user model.
    pub from: String,
    /// The system message when a conversation has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// A chat template (Jinja) in place of the model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// A note on the terms the model is used under, shown by `lucid show`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_note: Option<String>,
    #[serde(default, skip_serializing_if = "Parameters::is_empty")]
    pub parameters: Parameters,
}

/// Sampling settings used where a request gives none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
}

impl Parameters {
    fn is_empty(&self) -> bool {
        self == &Parameters::default()
    }
}

impl UserModel {
    /// Reads and checks the TOML model file at `path`. A relative `from`
    /// path is made absolute against the file's directory, so the copy in
    /// the store still points at it.
    pub fn read(path: &Path) -> Result<UserModel, StoreError> {
        let text = fs_err::read_to_string(path)?;
        let mut file = UserModel::parse(&text).map_err(|message| StoreError::ModelFile {
            path: path.to_owned(),
            message,
        })?;
        let from = Path::new(&file.from);
        if looks_like_path(&file.from) && from.is_relative() {
            let dir = path.parent().unwrap_or(Path::new("."));
            let absolute = std::path::absolute(dir.join(from))?;
            file.from = absolute.display().to_string();
        }
        Ok(file)
    }

    /// Parses a model file, checking what can be checked without the
    /// model; the error says what is wrong.
    pub fn parse(text: &str) -> Result<UserModel, String> {
        let file: UserModel = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.from.trim().is_empty() {
            return Err("`from` names no model".into());
        }
        if let Some(t) = file.parameters.temperature
            && !(t >= 0.0 && t.is_finite())
        {
            return Err(format!("temperature must be a number >= 0, not {t}"));
        }
        if let Some(p) = file.parameters.top_p
            && !(0.0..=1.0).contains(&p)
        {
            return Err(format!("top_p must be between 0 and 1, not {p}"));
        }
        Ok(file)
    }

    /// The file as TOML.
    pub fn to_toml(&self) -> String {
        // Plain strings, numbers and one table: serializing cannot fail.
        toml::to_string(self).unwrap_or_default()
    }
}

impl Store {
    /// Keeps `model` in the store as `name`, replacing a user model of
    /// that name. `name` must not be a catalog model's name or alias or
    /// look like a path, and `from` must name something lucid can find
    /// (it is not pulled here).
    pub fn create(&self, name: &str, model: &UserModel) -> Result<PathBuf, StoreError> {
        let refuse = |reason: String| StoreError::CannotCreate {
            name: name.to_owned(),
            reason,
        };
        if !is_user_model_name(name) {
            return Err(refuse(
                "a model name is a word without `/`, `\\`, `:` or a leading `.`".into(),
            ));
        }
        if let Some(entry) = self.catalog().find(name) {
            return Err(refuse(format!(
                "the catalog has a model of that name (`{}`); choose another",
                entry.name
            )));
        }
        let mut from = model.from.clone();
        for _ in 0..MAX_CHAIN {
            if from == name {
                return Err(refuse(format!(
                    "it is made from itself (`from = \"{from}\"`)"
                )));
            }
            match self.user_model(&from)? {
                Some(inner) => from = inner.from,
                None => break,
            }
        }
        if self.user_model(&from)?.is_some() {
            return Err(refuse(format!(
                "`from` chains through more than {MAX_CHAIN} user models"
            )));
        }
        match self.resolve(&from) {
            Ok(_) | Err(StoreError::NotPulled { .. }) => {}
            Err(e) => return Err(refuse(format!("`from = \"{}\"`: {e}", model.from))),
        }
        let path = path_in(self.home(), name);
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        let partial = crate::store::partial_path(&path);
        fs_err::write(&partial, model.to_toml())?;
        fs_err::rename(&partial, &path)?;
        Ok(path)
    }

    /// The user model called `name`, if the store has one.
    pub fn user_model(&self, name: &str) -> Result<Option<UserModel>, StoreError> {
        if !is_user_model_name(name) {
            return Ok(None);
        }
        let path = path_in(self.home(), name);
        if !path.is_file() {
            return Ok(None);
        }
        UserModel::read(&path).map(Some)
    }

    /// The user models in the store, by name.
    pub fn user_models(&self) -> Result<Vec<(String, UserModel)>, StoreError> {
        let dir = self.home().join(MODELFILES);
        let mut models = Vec::new();
        if !dir.is_dir() {
            return Ok(models);
        }
        for file in fs_err::read_dir(&dir)? {
            let path = file?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".toml"))
            else {
                continue;
            };
            match UserModel::read(&path) {
                Ok(model) => models.push((name.to_owned(), model)),
                Err(e) => tracing::warn!("skipping {}: {e}", path.display()),
            }
        }
        models.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(models)
    }

    /// Removes the user model `name`; whether there was one.
    pub(crate) fn remove_user_model(&self, name: &str) -> Result<bool, StoreError> {
        if self.user_model(name)?.is_none() {
            return Ok(false);
        }
        fs_err::remove_file(path_in(self.home(), name))?;
        Ok(true)
    }
}

/// Whether `name` can name a user model: one word that is a file name
/// on every platform, never a path.
fn is_user_model_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0', ':'])
}

/// Where the model file of `name` is kept under `home`.
pub(crate) fn path_in(home: &Path, name: &str) -> PathBuf {
    home.join(MODELFILES).join(format!("{name}.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_with_reasons() {
        let file = UserModel::parse(
            "from = \"smollm2\"\nsystem = \"Be brief.\"\n[parameters]\ntemperature = 0.5\n",
        )
        .unwrap();
        assert_eq!(file.from, "smollm2");
        assert_eq!(file.system.as_deref(), Some("Be brief."));
        assert_eq!(file.parameters.temperature, Some(0.5));
        assert_eq!(UserModel::parse(&file.to_toml()).unwrap(), file);

        let err = UserModel::parse("from = \"smollm2\"\nsytem = \"x\"\n").unwrap_err();
        assert!(err.contains("unknown field `sytem`"), "{err}");
        let err = UserModel::parse("system = \"x\"\n").unwrap_err();
        assert!(err.contains("missing field `from`"), "{err}");
        let err =
            UserModel::parse("from = \"smollm2\"\n[parameters]\ntemperature = -1\n").unwrap_err();
        assert_eq!(err, "temperature must be a number >= 0, not -1");
        let err = UserModel::parse("from = \" \"\n").unwrap_err();
        assert_eq!(err, "`from` names no model");
    }
}
