//! The `general.*` metadata keys that describe any model, whatever its
//! architecture, as typed fields.

use crate::metadata::Metadata;

/// The `general.*` keys of a file. A field is `None` when the key is absent
/// or holds a value of the wrong type; use [`Metadata`]'s getters where a
/// wrong type must be an error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct General<'a> {
    /// `general.architecture`: the model family, "llama", "gemma3", ...;
    /// the prefix of the family's own keys.
    pub architecture: Option<&'a str>,
    /// `general.type`: "model" or "adapter".
    pub kind: Option<&'a str>,
    pub name: Option<&'a str>,
    pub author: Option<&'a str>,
    pub version: Option<&'a str>,
    pub organization: Option<&'a str>,
    pub basename: Option<&'a str>,
    pub finetune: Option<&'a str>,
    pub description: Option<&'a str>,
    pub quantized_by: Option<&'a str>,
    /// `general.size_label`: "135M", "8x7B", ...
    pub size_label: Option<&'a str>,
    pub license: Option<&'a str>,
    pub url: Option<&'a str>,
    pub repo_url: Option<&'a str>,
    /// `general.quantization_version`: the revision of the quantized block
    /// formats (2 since ggml's 2023 change of the Q4/Q5/Q8 layouts).
    pub quantization_version: Option<u32>,
    /// `general.file_type`: llama.cpp's `llama_ftype`, the dominant tensor type.
    pub file_type: Option<u32>,
}

impl<'a> General<'a> {
    pub fn from_metadata(m: &'a Metadata) -> General<'a> {
        let s = |key: &str| m.opt_str(key).ok().flatten();
        let n = |key: &str| m.opt_u32(key).ok().flatten();
        General {
            architecture: s("general.architecture"),
            kind: s("general.type"),
            name: s("general.name"),
            author: s("general.author"),
            version: s("general.version"),
            organization: s("general.organization"),
            basename: s("general.basename"),
            finetune: s("general.finetune"),
            description: s("general.description"),
            quantized_by: s("general.quantized_by"),
            size_label: s("general.size_label"),
            license: s("general.license"),
            url: s("general.url"),
            repo_url: s("general.repo_url"),
            quantization_version: n("general.quantization_version"),
            file_type: n("general.file_type"),
        }
    }
}
